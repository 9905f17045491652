//! The Registry actor: the directory of connections, rooms, services and
//! listings.
//!
//! Creating, finding and removing things goes through it; it hands back the
//! address of the target so the hot path (a message to a room, a broadcast)
//! goes straight there. It also knows every open connection, which is how
//! the broker closes them all with 1001 at shutdown. Each protocol adds its
//! part of the directory in its own folder (`sessions::directory`,
//! `concierge::directory`, `chat::directory`, `rooms::directory`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::chat::ChatDirectory;
use crate::concierge::ConciergeDirectory;
use crate::connection::{ConnId, ConnectionStats, Disconnect};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::outbox::Outbox;
use crate::rooms::RoomsDirectory;
use crate::sessions::ListingDirectory;
use crate::Protocol;

/// The directory actor. Runs supervised; its state survives a restart.
pub struct Registry {
    /// Open connections in id order (the admin API pages through them so).
    pub(crate) connections: BTreeMap<ConnId, ConnectionEntry>,
    pub(crate) listings: ListingDirectory,
    pub(crate) concierge: ConciergeDirectory,
    pub(crate) chat: ChatDirectory,
    pub(crate) rooms: RoomsDirectory,
    _alive: ActorGauge,
}

/// What the registry knows of one open connection.
pub(crate) struct ConnectionEntry {
    pub(crate) protocol: Protocol,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) since: DateTime<Utc>,
    pub(crate) disconnect: Recipient<Disconnect>,
    /// Its outbound queue, read for the queue depth.
    pub(crate) outbox: Outbox,
    pub(crate) stats: Arc<ConnectionStats>,
}

impl Registry {
    /// A registry made of each protocol's part of the directory.
    pub(crate) fn new(
        listings: ListingDirectory,
        concierge: ConciergeDirectory,
        chat: ChatDirectory,
        rooms: RoomsDirectory,
    ) -> Self {
        Registry {
            connections: BTreeMap::new(),
            listings,
            concierge,
            chat,
            rooms,
            _alive: ActorGauge::new(ActorKind::Registry),
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Supervised for Registry {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("registry restarting");
        metrics().actor_restarted(ActorKind::Registry);
        self.chat.forget_pending();
    }
}

/// A connection was accepted (sent by the connection itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connected {
    /// The connection's id.
    pub id: ConnId,
    /// Its protocol.
    pub protocol: Protocol,
    /// The peer address, when known.
    pub peer: Option<SocketAddr>,
    /// How to close it.
    pub disconnect: Recipient<Disconnect>,
    /// Its outbound queue (for the admin API's queue depth).
    pub outbox: Outbox,
    /// Its counters and identity, written by the connection.
    pub stats: Arc<ConnectionStats>,
}

impl Handler<Connected> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Connected, _: &mut Self::Context) {
        log::debug!(
            "{} connection {} from {:?} opened",
            msg.protocol,
            msg.id,
            msg.peer
        );
        self.connections.insert(
            msg.id,
            ConnectionEntry {
                protocol: msg.protocol,
                peer: msg.peer,
                since: Utc::now(),
                disconnect: msg.disconnect,
                outbox: msg.outbox,
                stats: msg.stats,
            },
        );
    }
}

/// A connection ended (sent by the connection itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnected {
    /// The connection's id.
    pub id: ConnId,
}

impl Handler<Disconnected> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Disconnected, _: &mut Self::Context) {
        if let Some(entry) = self.connections.remove(&msg.id) {
            log::debug!(
                "{} connection {} from {:?} closed after {}s",
                entry.protocol,
                msg.id,
                entry.peer,
                (Utc::now() - entry.since).num_seconds()
            );
        }
    }
}

/// Closes every open connection with the given close frame; answers how
/// many were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DisconnectAll(pub Disconnect);

impl Handler<DisconnectAll> for Registry {
    type Result = usize;
    fn handle(&mut self, msg: DisconnectAll, _: &mut Self::Context) -> usize {
        for entry in self.connections.values() {
            entry.disconnect.do_send(msg.0.clone());
        }
        self.connections.len()
    }
}

/// Readiness probe: answers with the number of open connections the
/// registry knows.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Ping;

impl Handler<Ping> for Registry {
    type Result = usize;
    fn handle(&mut self, _: Ping, _: &mut Self::Context) -> usize {
        self.connections.len()
    }
}
