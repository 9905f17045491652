//! A connection's bounded outbound queue, drained in batches.
//!
//! Fan-out hands every recipient the same encoded frames. Sending each as
//! its own actor message costs an envelope allocation, a mailbox push and a
//! wake-up per recipient per broadcast, which measured as a quarter of the
//! broker's CPU at full fan-out. Instead, frames are pushed onto the
//! recipient's [`Outbox`] and the recipient is rung (one [`Flush`] message)
//! only when its outbox goes from empty to non-empty; it then takes
//! everything queued at once and writes it in one go.
//!
//! The queue is bounded twice: in deliveries (`limits.outbound_queue`) and
//! in bytes (`limits.outbound_queue_bytes`). The count alone let a client
//! that stopped reading pin `outbound_queue` large frames (a thousand
//! 64 KiB frames is 64 MiB per connection); the byte bound refuses them as
//! soon as that much text is waiting, like Centrifugo's 1 MiB client queue.
//! A shared batch counts its full length for every recipient that queues
//! it: that is what its socket will have to write.
//!
//! Ordering is that of a single mailbox: the doorbell sits in the mailbox
//! where the first queued frame would have been, so a [`Disconnect`] (or
//! any other message) sent after a frame is handled after that frame.
//!
//! [`Disconnect`]: crate::connection::Disconnect

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;

use crate::connection::{Deliver, Frames};

/// Rings a connection: its outbox has frames to write.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Flush;

/// The sending side of one connection's outbound queue. Cloning is cheap
/// (a reference count); every clone feeds the same queue.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    capacity: usize,
    max_bytes: usize,
    doorbell: Recipient<Flush>,
}

struct Queue {
    frames: VecDeque<Frames>,
    /// Text bytes in `frames`.
    bytes: usize,
    /// A [`Flush`] is on its way and has not taken the queue yet.
    rung: bool,
    /// The connection is gone: nothing more is accepted.
    closed: bool,
}

/// Spare queues larger than this are freed rather than kept for reuse, so
/// a burst does not leave every idle connection holding a large buffer.
const KEEP_CAPACITY: usize = 64;

impl Outbox {
    /// A queue holding at most `capacity` deliveries (of any size),
    /// ringing `doorbell`.
    pub fn new(capacity: usize, doorbell: Recipient<Flush>) -> Outbox {
        Outbox::bounded(capacity, usize::MAX, doorbell)
    }

    /// A queue holding at most `capacity` deliveries and at most
    /// `max_bytes` bytes of text, ringing `doorbell`. One delivery larger
    /// than `max_bytes` is still accepted into an empty queue, so a large
    /// snapshot reaches a client that keeps up.
    pub fn bounded(capacity: usize, max_bytes: usize, doorbell: Recipient<Flush>) -> Outbox {
        Outbox {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    frames: VecDeque::new(),
                    bytes: 0,
                    rung: false,
                    closed: false,
                }),
                capacity: capacity.max(1),
                max_bytes: max_bytes.max(1),
                doorbell,
            }),
        }
    }

    /// Starts an actor that owns a new outbox of `capacity` (rung through
    /// its own address) and returns both; for members that are not
    /// WebSocket connections (tests, benchmarks).
    pub fn create<A>(capacity: usize, make: impl FnOnce(Outbox) -> A) -> (Addr<A>, Outbox)
    where
        A: Actor<Context = Context<A>> + Handler<Flush>,
    {
        let mut outbox = None;
        let addr = A::create(|ctx| {
            let o = Outbox::new(capacity, ctx.address().recipient());
            outbox = Some(o.clone());
            make(o)
        });
        (addr, outbox.expect("set while the actor was created"))
    }

    /// Queues `msg` without waiting: `Full` when the connection is
    /// `capacity` deliveries or `max_bytes` bytes behind, `Closed` when it
    /// is gone.
    pub fn try_send(&self, msg: Deliver) -> Result<(), SendError<Deliver>> {
        let size = byte_len(&msg.0);
        let ring = {
            let mut queue = self.lock();
            if queue.closed {
                return Err(SendError::Closed(msg));
            }
            let over_bytes = !queue.frames.is_empty()
                && queue.bytes.saturating_add(size) > self.shared.max_bytes;
            if queue.frames.len() >= self.shared.capacity || over_bytes {
                return Err(SendError::Full(msg));
            }
            queue.bytes += size;
            queue.frames.push_back(msg.0);
            !std::mem::replace(&mut queue.rung, true)
        };
        if ring {
            self.shared.doorbell.do_send(Flush);
        }
        Ok(())
    }

    /// Moves everything queued into `batch` (which must be empty), in order,
    /// and re-arms the doorbell. Called by the connection on [`Flush`].
    pub fn take(&self, batch: &mut VecDeque<Frames>) {
        debug_assert!(batch.is_empty());
        if batch.capacity() > KEEP_CAPACITY {
            *batch = VecDeque::new();
        }
        let mut queue = self.lock();
        std::mem::swap(&mut queue.frames, batch);
        queue.bytes = 0;
        queue.rung = false;
    }

    /// Refuses everything from now on (the connection has stopped) and
    /// frees what was queued.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.frames = VecDeque::new();
        queue.bytes = 0;
    }

    /// Deliveries waiting to be written.
    pub fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Bytes of text waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is plain data, consistent after every statement; a
        // panic elsewhere while it was locked leaves nothing half-done.
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The text bytes `frames` will put on the socket (frame headers aside).
fn byte_len(frames: &Frames) -> usize {
    frames.as_slice().iter().map(|frame| frame.len()).sum()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the doorbells it hears and never drains.
    struct Bell {
        rings: Arc<AtomicUsize>,
    }

    impl Actor for Bell {
        type Context = Context<Self>;
    }

    impl Handler<Flush> for Bell {
        type Result = ();
        fn handle(&mut self, _: Flush, _: &mut Self::Context) {
            self.rings.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(text: &str) -> Deliver {
        Deliver(Frames::One(text.to_owned().into()))
    }

    fn texts(batch: &VecDeque<Frames>) -> Vec<String> {
        batch
            .iter()
            .flat_map(|f| f.as_slice().iter().map(|s| s.to_string()))
            .collect()
    }

    #[actix_rt::test]
    async fn one_doorbell_per_batch_and_frames_come_out_in_order() {
        let rings = Arc::new(AtomicUsize::new(0));
        let bell = Bell {
            rings: rings.clone(),
        }
        .start();
        let outbox = Outbox::new(8, bell.recipient());
        for t in ["a", "b", "c"] {
            outbox.try_send(frame(t)).unwrap();
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(rings.load(Ordering::SeqCst), 1);
        let mut batch = VecDeque::new();
        outbox.take(&mut batch);
        assert_eq!(texts(&batch), ["a", "b", "c"]);
        assert!(outbox.is_empty());

        // Taken: the next frame rings again.
        outbox.try_send(frame("d")).unwrap();
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(rings.load(Ordering::SeqCst), 2);
    }

    #[actix_rt::test]
    async fn a_full_queue_refuses_and_a_closed_one_says_so() {
        let bell = Bell {
            rings: Arc::default(),
        }
        .start();
        let outbox = Outbox::new(2, bell.recipient());
        outbox.try_send(frame("a")).unwrap();
        outbox.try_send(frame("b")).unwrap();
        assert!(matches!(
            outbox.try_send(frame("c")),
            Err(SendError::Full(_))
        ));
        outbox.close();
        assert!(outbox.is_empty());
        assert!(matches!(
            outbox.try_send(frame("d")),
            Err(SendError::Closed(_))
        ));
    }

    #[actix_rt::test]
    async fn the_byte_bound_refuses_before_the_count_does_and_a_take_frees_it() {
        let bell = Bell {
            rings: Arc::default(),
        }
        .start();
        let outbox = Outbox::bounded(100, 10, bell.recipient());
        outbox.try_send(frame("0123")).unwrap();
        outbox.try_send(frame("456789")).unwrap();
        assert_eq!(outbox.queued_bytes(), 10);
        assert!(
            matches!(outbox.try_send(frame("x")), Err(SendError::Full(_))),
            "10 bytes are queued: one more is over the bound"
        );
        let mut batch = VecDeque::new();
        outbox.take(&mut batch);
        assert_eq!(outbox.queued_bytes(), 0);
        outbox.try_send(frame("x")).unwrap();
    }

    #[actix_rt::test]
    async fn a_shared_batch_counts_its_full_length_and_a_large_one_fits_an_empty_queue() {
        let bell = Bell {
            rings: Arc::default(),
        }
        .start();
        let outbox = Outbox::bounded(100, 8, bell.recipient());
        let batch = Deliver(Frames::from(vec!["abcd".into(), "efghij".into()]));
        outbox.try_send(batch.clone()).unwrap();
        assert_eq!(
            outbox.queued_bytes(),
            10,
            "larger than the bound, but the queue was empty"
        );
        assert!(matches!(outbox.try_send(batch), Err(SendError::Full(_))));
        outbox.close();
        assert_eq!(outbox.queued_bytes(), 0);
    }
}
