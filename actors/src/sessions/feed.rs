//! The SessionFeed actor: every watcher, and the `add` frame of every listed
//! session.
//!
//! All frames to watchers pass through here, one actor, so every watcher
//! sees the same order; and because the feed keeps each listing's current
//! `add` frame, a new watcher's snapshot (`reset` + `add`s) is a clone of
//! shared bytes sent as one batch, with no listing asked.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use super::wire::{Epoch, ServerMessage};
use super::SharedEpoch;
use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::FanOut;
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::Protocol;

/// A watcher that misses one update holds a wrong listing, so a full queue
/// removes it at once: it reconnects and gets a fresh snapshot.
const EVICT_AFTER_DROPS: u32 = 1;

/// The watchers of the session list and the snapshot they start from.
pub struct SessionFeed {
    epoch: Epoch,
    shared_epoch: SharedEpoch,
    expected_client_version: String,
    reset_frame: ByteString,
    listed: BTreeMap<String, ByteString>,
    watchers: FanOut,
    _alive: ActorGauge,
}

impl SessionFeed {
    /// An empty feed at `epoch`.
    pub fn new(shared_epoch: SharedEpoch, expected_client_version: String) -> Self {
        let epoch = shared_epoch.get();
        SessionFeed {
            epoch,
            reset_frame: reset_frame(epoch, &expected_client_version),
            shared_epoch,
            expected_client_version,
            listed: BTreeMap::new(),
            watchers: FanOut::new(Protocol::Sessions, EVICT_AFTER_DROPS),
            _alive: ActorGauge::new(ActorKind::SessionFeed),
        }
    }

    fn snapshot(&self) -> Frames {
        let frames: Vec<ByteString> = std::iter::once(self.reset_frame.clone())
            .chain(self.listed.values().cloned())
            .collect();
        Frames::Many(Arc::from(frames))
    }
}

fn reset_frame(epoch: Epoch, expected_client_version: &str) -> ByteString {
    ServerMessage::Reset {
        epoch,
        expected_client_version: expected_client_version.to_owned(),
    }
    .encode()
    .into()
}

impl Actor for SessionFeed {
    type Context = Context<Self>;
}

impl Supervised for SessionFeed {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("session feed restarting");
        metrics().actor_restarted(ActorKind::SessionFeed);
    }
}

/// A watcher joins: it gets the snapshot, then every change.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch(pub MemberHandle);

impl Handler<Watch> for SessionFeed {
    type Result = ();
    fn handle(&mut self, Watch(member): Watch, _: &mut Self::Context) {
        let id = member.id;
        self.watchers.join(member);
        self.watchers.send_to(id, &self.snapshot());
    }
}

/// A watcher left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch(pub ConnId);

impl Handler<Unwatch> for SessionFeed {
    type Result = ();
    fn handle(&mut self, Unwatch(id): Unwatch, _: &mut Self::Context) {
        self.watchers.leave(id);
    }
}

/// A listing's state after a change.
#[derive(Debug, Clone)]
pub enum ListingState {
    /// Listed; its current `add` frame.
    Listed(ByteString),
    /// No longer listed.
    Unlisted,
}

/// A listing changed: broadcast `frames`, remember its new state.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Publish {
    /// The epoch the listing belongs to; frames of an older epoch are stale.
    pub epoch: Epoch,
    /// The session's id.
    pub session_id: String,
    /// What to broadcast, in order (may be empty).
    pub frames: Vec<ByteString>,
    /// The listing's state afterwards.
    pub state: ListingState,
}

impl Handler<Publish> for SessionFeed {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Self::Context) {
        if msg.epoch != self.epoch {
            log::debug!(
                "dropping a change of session {} from stale epoch {}",
                msg.session_id,
                msg.epoch
            );
            return;
        }
        match msg.state {
            ListingState::Listed(add) => self.listed.insert(msg.session_id, add),
            ListingState::Unlisted => self.listed.remove(&msg.session_id),
        };
        if !msg.frames.is_empty() {
            self.watchers.broadcast(&Frames::from(msg.frames));
        }
    }
}

/// A full resync: a new epoch whose listings are exactly `listed`
/// (session id -> `add` frame). Every watcher gets `reset` + the `add`s.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reset {
    /// The new epoch.
    pub epoch: Epoch,
    /// The new listings' `add` frames.
    pub listed: BTreeMap<String, ByteString>,
}

impl Handler<Reset> for SessionFeed {
    type Result = ();
    fn handle(&mut self, msg: Reset, _: &mut Self::Context) {
        self.epoch = msg.epoch;
        self.shared_epoch.set(msg.epoch);
        self.reset_frame = reset_frame(msg.epoch, &self.expected_client_version);
        self.listed = msg.listed;
        let snapshot = self.snapshot();
        self.watchers.broadcast(&snapshot);
    }
}
