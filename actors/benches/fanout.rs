//! Fan-out of one chat message to a room of 1000 members.
//!
//! `encode_once` is what the broker does: the event is encoded to one
//! [`Frames`] value and [`FanOut::broadcast`] hands each member a
//! reference-counted clone. `encode_per_recipient` is the anti-pattern it
//! avoids: one serialisation and one [`FanOut::send_to`] per member. The
//! timed region is the encoding plus the 1000 `try_send`s; after each
//! iteration the members drain their mailboxes outside the timer, so no
//! message is ever dropped and every iteration starts from empty queues.
//!
//! Run with `cargo bench -p switchboard-actors --bench fanout`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use switchboard_actors::chat::wire::ServerEvent;
use switchboard_actors::connection::{ConnId, Disconnect, Frames, MemberHandle};
use switchboard_actors::fanout::{Delivery, FanOut};
use switchboard_actors::outbox::{Flush, Outbox};
use switchboard_actors::Protocol;

/// Members in the room.
const MEMBERS: u64 = 1000;

/// A member that only counts the frames it is handed.
struct Sink {
    outbox: Outbox,
    batch: VecDeque<Frames>,
    frames: Arc<AtomicU64>,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Flush> for Sink {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        self.outbox.take(&mut self.batch);
        let n: usize = self.batch.drain(..).map(|d| d.as_slice().len()).sum();
        self.frames.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Handler<Disconnect> for Sink {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        panic!("a bench member was told to close: {msg:?}");
    }
}

fn sink(id: ConnId, frames: Arc<AtomicU64>) -> MemberHandle {
    let (addr, outbox) = Outbox::create(1_000_000, |outbox| Sink {
        outbox,
        batch: VecDeque::new(),
        frames,
    });
    MemberHandle {
        id,
        deliver: outbox,
        disconnect: addr.recipient(),
    }
}

/// Lets the members run until `frames` has counted `expected` deliveries.
async fn drain(frames: &AtomicU64, expected: u64) {
    for _ in 0..1_000_000 {
        if frames.load(Ordering::Relaxed) >= expected {
            assert_eq!(frames.load(Ordering::Relaxed), expected);
            return;
        }
        actix_rt::task::yield_now().await;
    }
    panic!(
        "members stalled at {} of {expected} frames",
        frames.load(Ordering::Relaxed)
    );
}

fn bench_fanout(c: &mut Criterion) {
    let system = System::new();
    let frames = Arc::new(AtomicU64::new(0));
    let ids: Vec<ConnId> = (1..=MEMBERS).collect();
    let mut fan = system.block_on(async {
        let mut fan = FanOut::new(Protocol::Chat, u32::MAX);
        for &id in &ids {
            fan.join(sink(id, frames.clone()));
        }
        fan
    });
    assert_eq!(fan.len() as u64, MEMBERS);

    let body: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(100)
        .collect();
    let event = ServerEvent::Message {
        username: "alice",
        message: &body,
    };
    let encodes = Cell::new(0u64);
    let encode = || {
        encodes.set(encodes.get() + 1);
        Frames::One(ByteString::from(black_box(&event).encode()))
    };

    let mut group = c.benchmark_group("fanout_1000");
    group.throughput(Throughput::Elements(MEMBERS));

    group.bench_function("encode_once", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let encodes_before = encodes.get();
                    let delivered = frames.load(Ordering::Relaxed);
                    let start = Instant::now();
                    let frame = encode();
                    let removed = fan.broadcast(&frame);
                    timed += start.elapsed();
                    assert!(removed.is_empty(), "members removed: {removed:?}");
                    assert_eq!(
                        encodes.get() - encodes_before,
                        1,
                        "one encode per broadcast"
                    );
                    drop(frame);
                    drain(&frames, delivered + MEMBERS).await;
                }
                timed
            })
        })
    });

    group.bench_function("encode_per_recipient", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let encodes_before = encodes.get();
                    let delivered = frames.load(Ordering::Relaxed);
                    let mut queued = 0u64;
                    let start = Instant::now();
                    for &id in &ids {
                        if fan.send_to(id, &encode()) == Delivery::Queued {
                            queued += 1;
                        }
                    }
                    timed += start.elapsed();
                    assert_eq!(queued, MEMBERS, "every member queued its frame");
                    assert_eq!(encodes.get() - encodes_before, MEMBERS);
                    drain(&frames, delivered + MEMBERS).await;
                }
                timed
            })
        })
    });

    group.finish();
}

criterion_group!(benches, bench_fanout);
criterion_main!(benches);
