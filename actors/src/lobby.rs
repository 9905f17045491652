//! The Lobby: a protocol's fan-out to every one of its connected clients.
//!
//! News for everyone (a concierge client joined or left, a service or chat
//! room was created, a concierge `ALL` message) goes through the protocol's
//! lobby, encoded once by its sender. Whoever adds and removes members
//! decides what a member hears of its own arrival: the concierge registry
//! adds a client after announcing it, so a client never hears of itself.

use actix::prelude::*;

use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::{Delivery, FanOut};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::Protocol;

/// Every connected client of one protocol. Runs supervised.
pub struct Lobby {
    everyone: FanOut,
    kind: ActorKind,
    _alive: ActorGauge,
}

impl Lobby {
    /// An empty lobby of `protocol`, counted as an actor of `kind`; members
    /// are evicted after `evict_after` drops in a row.
    pub fn new(protocol: Protocol, kind: ActorKind, evict_after: u32) -> Self {
        Lobby {
            everyone: FanOut::new(protocol, evict_after),
            kind,
            _alive: ActorGauge::new(kind),
        }
    }
}

impl Actor for Lobby {
    type Context = Context<Self>;
}

impl Supervised for Lobby {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("{} restarting", self.kind.as_str());
        metrics().actor_restarted(self.kind);
    }
}

/// Adds a client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JoinLobby(pub MemberHandle);

impl Handler<JoinLobby> for Lobby {
    type Result = ();
    fn handle(&mut self, JoinLobby(member): JoinLobby, _: &mut Self::Context) {
        self.everyone.join(member);
    }
}

/// Removes a client that left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveLobby(pub ConnId);

impl Handler<LeaveLobby> for Lobby {
    type Result = ();
    fn handle(&mut self, LeaveLobby(id): LeaveLobby, _: &mut Self::Context) {
        self.everyone.leave(id);
    }
}

/// Sends frames to one client in the lobby, under the same slow-consumer
/// policy as a broadcast (a full queue counts a drop; a client that keeps
/// dropping is removed and closed). Answers what became of the frames.
#[derive(Message)]
#[rtype(result = "Delivery")]
pub struct SendTo {
    /// The client's connection.
    pub id: ConnId,
    /// The frames, encoded by the sender.
    pub frames: Frames,
}

impl Handler<SendTo> for Lobby {
    type Result = MessageResult<SendTo>;
    fn handle(&mut self, msg: SendTo, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.everyone.send_to(msg.id, &msg.frames))
    }
}

/// Sends frames to every client in the lobby. Answers once every member's
/// copy is queued, so a sender that waits for the answer knows that whatever
/// it sends next arrives after.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Announce(pub Frames);

impl Handler<Announce> for Lobby {
    type Result = ();
    fn handle(&mut self, Announce(frames): Announce, _: &mut Self::Context) {
        self.everyone.broadcast(&frames);
    }
}
