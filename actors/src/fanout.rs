//! Encode-once fan-out with the slow-consumer policy, shared by every room,
//! service and listing.
//!
//! A broadcast is one [`Frames`] value encoded by the sender; each member gets
//! a reference-counted clone through `try_send` into its bounded mailbox, so
//! no recipient costs a serialisation and no slow recipient can make the
//! sender wait or grow memory without bound. A full mailbox counts a drop
//! (`reason="slow"`); a member that drops `evict_after` messages in a row is
//! removed and told to close. Each broadcast's recipients and duration are
//! observed (`switchboard_fanout_size`, `switchboard_broadcast_duration_seconds`),
//! so an operator sees fan-out cost grow before deliveries lag.

use std::collections::HashMap;
use std::time::Instant;

use crate::connection::{ConnId, Deliver, Disconnect, Frames, MemberHandle};
use crate::metrics::{metrics, ProtocolMetrics};
use crate::Protocol;
use actix::prelude::SendError;

/// The members of one room, service or feed.
pub struct FanOut {
    /// Who fans out (a protocol's name), for the log.
    label: &'static str,
    metrics: &'static ProtocolMetrics,
    evict_after: u32,
    members: HashMap<ConnId, Member>,
}

struct Member {
    handle: MemberHandle,
    drops_in_a_row: u32,
}

/// What happened to one targeted delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the member.
    Queued,
    /// The member's queue was full; counted as a drop.
    Dropped,
    /// The member was removed (slow consumer, or its connection is gone).
    Removed,
    /// No such member.
    NotMember,
}

impl FanOut {
    /// An empty group; members are removed after `evict_after` consecutive drops.
    pub fn new(protocol: Protocol, evict_after: u32) -> Self {
        Self::metered(protocol.as_str(), metrics().protocol(protocol), evict_after)
    }

    /// An empty group counted in `metrics` and logged as `label` (for a
    /// fan-out that is not a protocol's, such as the console's live feed).
    pub fn metered(
        label: &'static str,
        metrics: &'static ProtocolMetrics,
        evict_after: u32,
    ) -> Self {
        FanOut {
            label,
            metrics,
            evict_after: evict_after.max(1),
            members: HashMap::new(),
        }
    }

    /// Adds (or replaces) a member.
    pub fn join(&mut self, handle: MemberHandle) {
        self.members.insert(
            handle.id,
            Member {
                handle,
                drops_in_a_row: 0,
            },
        );
    }

    /// Removes a member; returns whether it was one.
    pub fn leave(&mut self, id: ConnId) -> bool {
        self.members.remove(&id).is_some()
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: ConnId) -> bool {
        self.members.contains_key(&id)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Sends `frame` to every member. Returns the members removed on the way
    /// (slow consumers and closed connections), so the owner can update its
    /// own state.
    pub fn broadcast(&mut self, frame: &Frames) -> Vec<ConnId> {
        self.broadcast_except(frame, None)
    }

    /// Sends `frame` to every member but `except` (a sender that must not
    /// hear its own message). Returns the members removed on the way.
    pub fn broadcast_except(&mut self, frame: &Frames, except: Option<ConnId>) -> Vec<ConnId> {
        let started = Instant::now();
        let recipients =
            self.members.len() - usize::from(except.is_some_and(|id| self.contains(id)));
        self.metrics.fanout_size.observe(recipients as f64);
        let mut removed = Vec::new();
        for (id, member) in &mut self.members {
            if Some(*id) == except {
                continue;
            }
            if !Self::offer(self.label, self.metrics, self.evict_after, member, frame) {
                removed.push(*id);
            }
        }
        for id in &removed {
            self.members.remove(id);
        }
        self.metrics
            .broadcast_seconds
            .observe(started.elapsed().as_secs_f64());
        removed
    }

    /// Sends `frame` to one member.
    pub fn send_to(&mut self, id: ConnId, frame: &Frames) -> Delivery {
        let Some(member) = self.members.get_mut(&id) else {
            return Delivery::NotMember;
        };
        let drops_before = member.drops_in_a_row;
        if Self::offer(self.label, self.metrics, self.evict_after, member, frame) {
            if member.drops_in_a_row > drops_before {
                Delivery::Dropped
            } else {
                Delivery::Queued
            }
        } else {
            self.members.remove(&id);
            Delivery::Removed
        }
    }

    /// Offers one frame to one member; `false` means the member must go.
    fn offer(
        label: &'static str,
        metrics: &ProtocolMetrics,
        evict_after: u32,
        member: &mut Member,
        frame: &Frames,
    ) -> bool {
        match member.handle.deliver.try_send(Deliver(frame.clone())) {
            Ok(()) => {
                member.drops_in_a_row = 0;
                true
            }
            Err(SendError::Full(_)) => {
                metrics.dropped_slow.inc();
                member.drops_in_a_row += 1;
                if member.drops_in_a_row < evict_after {
                    return true;
                }
                metrics.slow_consumers.inc();
                log::warn!(
                    "{label} connection {} removed as a slow consumer after {} dropped messages",
                    member.handle.id,
                    member.drops_in_a_row
                );
                member
                    .handle
                    .disconnect
                    .do_send(Disconnect::slow_consumer());
                false
            }
            Err(SendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix::prelude::*;

    use super::*;
    use crate::outbox::{Flush, Outbox};

    /// A member that records what reaches it; its outbox holds one delivery.
    struct Recorder {
        outbox: Outbox,
        frames: Arc<Mutex<Vec<String>>>,
        closed: Arc<Mutex<Option<Disconnect>>>,
    }

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<Flush> for Recorder {
        type Result = ();
        fn handle(&mut self, _: Flush, _: &mut Self::Context) {
            let mut batch = std::collections::VecDeque::new();
            self.outbox.take(&mut batch);
            let mut frames = self.frames.lock().unwrap();
            for delivery in batch {
                frames.extend(delivery.as_slice().iter().map(|f| f.to_string()));
            }
        }
    }

    impl Handler<Disconnect> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
            *self.closed.lock().unwrap() = Some(msg);
        }
    }

    type Seen = (Arc<Mutex<Vec<String>>>, Arc<Mutex<Option<Disconnect>>>);

    fn member(id: ConnId) -> (MemberHandle, Seen) {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        let (f, c) = (frames.clone(), closed.clone());
        let (addr, outbox) = Outbox::create(1, |outbox| Recorder {
            outbox,
            frames: f,
            closed: c,
        });
        let handle = MemberHandle {
            id,
            deliver: outbox,
            disconnect: addr.recipient(),
        };
        (handle, (frames, closed))
    }

    #[actix_rt::test]
    async fn every_member_gets_the_same_frames_in_order() {
        let mut fan = FanOut::new(Protocol::Sessions, 3);
        let (a, (a_frames, _)) = member(1);
        let (b, (b_frames, _)) = member(2);
        fan.join(a);
        fan.join(b);
        for i in 0..5 {
            let frame = Frames::One(format!("m{i}").into());
            assert!(fan.broadcast(&frame).is_empty());
            actix_rt::task::yield_now().await;
            actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let want: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
        assert_eq!(*a_frames.lock().unwrap(), want);
        assert_eq!(*b_frames.lock().unwrap(), want);
    }

    #[actix_rt::test]
    async fn a_member_whose_queue_stays_full_is_removed_and_told_to_close() {
        // The drop counter is process-wide: this test counts on a protocol
        // no other unit test drops messages for.
        let mut fan = FanOut::new(Protocol::Live, 3);
        let (slow, (frames, closed)) = member(7);
        fan.join(slow);
        let dropped_before = metrics().protocol(Protocol::Live).dropped_slow.get();
        // Nothing yields in between, so the member cannot drain its mailbox.
        let mut removed = Vec::new();
        let mut sent = 0;
        while removed.is_empty() {
            sent += 1;
            assert!(sent < 100, "never removed");
            removed = fan.broadcast(&Frames::One(format!("m{sent}").into()));
        }
        assert_eq!(removed, vec![7]);
        assert!(fan.is_empty());
        let dropped = metrics().protocol(Protocol::Live).dropped_slow.get() - dropped_before;
        assert!(
            dropped >= 3,
            "three drops in a row before removal, counted: {dropped}"
        );
        assert_eq!(
            fan.send_to(7, &Frames::One("late".into())),
            Delivery::NotMember
        );

        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(*closed.lock().unwrap(), Some(Disconnect::slow_consumer()));
        let got = frames.lock().unwrap().len();
        assert_eq!(
            got as u64 + dropped,
            sent as u64,
            "every frame was queued or counted"
        );
    }

    #[actix_rt::test]
    async fn a_member_that_catches_up_starts_counting_again() {
        let mut fan = FanOut::new(Protocol::Sessions, 3);
        let (m, (frames, closed)) = member(9);
        fan.join(m);
        for round in 0..4 {
            // Fill the queue and overflow it twice (below the limit of 3)...
            let mut drops = 0;
            let mut i = 0;
            while drops < 2 {
                i += 1;
                if fan.send_to(9, &Frames::One(format!("r{round}-{i}").into())) == Delivery::Dropped
                {
                    drops += 1;
                }
            }
            // ...then let it drain: the next delivery resets the count.
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            assert_eq!(fan.send_to(9, &Frames::One("ok".into())), Delivery::Queued);
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(fan.contains(9));
        assert!(closed.lock().unwrap().is_none());
        assert!(!frames.lock().unwrap().is_empty());
    }
}
