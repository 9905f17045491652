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
    doorbell: Recipient<Flush>,
}

struct Queue {
    frames: VecDeque<Frames>,
    /// A [`Flush`] is on its way and has not taken the queue yet.
    rung: bool,
    /// The connection is gone: nothing more is accepted.
    closed: bool,
}

/// Spare queues larger than this are freed rather than kept for reuse, so
/// a burst does not leave every idle connection holding a large buffer.
const KEEP_CAPACITY: usize = 64;

impl Outbox {
    /// A queue holding at most `capacity` deliveries, ringing `doorbell`.
    pub fn new(capacity: usize, doorbell: Recipient<Flush>) -> Outbox {
        Outbox {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    frames: VecDeque::new(),
                    rung: false,
                    closed: false,
                }),
                capacity: capacity.max(1),
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
    /// `capacity` deliveries behind, `Closed` when it is gone.
    pub fn try_send(&self, msg: Deliver) -> Result<(), SendError<Deliver>> {
        let ring = {
            let mut queue = self.lock();
            if queue.closed {
                return Err(SendError::Closed(msg));
            }
            if queue.frames.len() >= self.shared.capacity {
                return Err(SendError::Full(msg));
            }
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
        queue.rung = false;
    }

    /// Refuses everything from now on (the connection has stopped) and
    /// frees what was queued.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.frames = VecDeque::new();
    }

    /// Deliveries waiting to be written.
    pub fn len(&self) -> usize {
        self.lock().frames.len()
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
}
