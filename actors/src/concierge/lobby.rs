//! The Lobby: the concierge's fan-out to every identified client.
//!
//! Joins, leaves, service creation and deletion, and `ALL` messages reach
//! everyone through here, encoded once by their sender. The registry adds a
//! client after announcing its CLIENT_JOINED (a client never hears of its own
//! arrival) and removes it before announcing its CLIENT_LEFT.

use actix::prelude::*;

use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::FanOut;
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::Protocol;

/// Every identified concierge client. Runs supervised.
pub struct Lobby {
    everyone: FanOut,
    _alive: ActorGauge,
}

impl Lobby {
    /// An empty lobby; members are evicted after `evict_after` drops in a row.
    pub fn new(evict_after: u32) -> Self {
        Lobby {
            everyone: FanOut::new(Protocol::Concierge, evict_after),
            _alive: ActorGauge::new(ActorKind::ConciergeLobby),
        }
    }
}

impl Actor for Lobby {
    type Context = Context<Self>;
}

impl Supervised for Lobby {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("concierge lobby restarting");
        metrics().actor_restarted(ActorKind::ConciergeLobby);
    }
}

/// Adds an identified client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enter(pub MemberHandle);

impl Handler<Enter> for Lobby {
    type Result = ();
    fn handle(&mut self, Enter(member): Enter, _: &mut Self::Context) {
        self.everyone.join(member);
    }
}

/// Removes a client that left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Exit(pub ConnId);

impl Handler<Exit> for Lobby {
    type Result = ();
    fn handle(&mut self, Exit(id): Exit, _: &mut Self::Context) {
        self.everyone.leave(id);
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
