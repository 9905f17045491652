//! Encode-once fan-out with the slow-consumer policy, shared by every room,
//! service and listing.
//!
//! A broadcast is one [`Frames`] value encoded by the sender; each member gets
//! a reference-counted clone through `try_send` into its bounded mailbox, so
//! no recipient costs a serialisation and no slow recipient can make the
//! sender wait or grow memory without bound. A full mailbox counts a drop
//! (`reason="slow"`); a member that drops `evict_after` messages in a row is
//! removed and told to close.

use std::collections::HashMap;

use crate::connection::{ConnId, Deliver, Disconnect, Frames, MemberHandle};
use crate::metrics::{metrics, ProtocolMetrics};
use crate::Protocol;
use actix::prelude::SendError;

/// The members of one room, service or feed.
pub struct FanOut {
    protocol: Protocol,
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
        FanOut {
            protocol,
            metrics: metrics().protocol(protocol),
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
        self.metrics.fanout_size.observe(self.members.len() as f64);
        let mut removed = Vec::new();
        for (id, member) in &mut self.members {
            if !Self::offer(self.protocol, self.metrics, self.evict_after, member, frame) {
                removed.push(*id);
            }
        }
        for id in &removed {
            self.members.remove(id);
        }
        removed
    }

    /// Sends `frame` to one member.
    pub fn send_to(&mut self, id: ConnId, frame: &Frames) -> Delivery {
        let Some(member) = self.members.get_mut(&id) else {
            return Delivery::NotMember;
        };
        let drops_before = member.drops_in_a_row;
        if Self::offer(self.protocol, self.metrics, self.evict_after, member, frame) {
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
        protocol: Protocol,
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
                    "{protocol} connection {} removed as a slow consumer after {} dropped messages",
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
