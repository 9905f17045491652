//! The Registry actor: every open connection, whatever its protocol.
//!
//! Connections register themselves when they start and leave when they
//! stop; the admin API and the console page through them, and the broker
//! closes them all with 1001 at shutdown through it. Rooms, services and
//! listings are found through each protocol's own directory actor
//! (`sessions::ListingDirectory`, `concierge::ConciergeDirectory`,
//! `chat::ChatDirectory`, `rooms::RoomsDirectory`), supervised beside the
//! registry in the broker's one tree, so one protocol's bookkeeping never
//! queues behind another's and none of it is on the message path: a
//! connection holds the address of the room or service it joined.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::connection::{ClientHeaders, ConnId, ConnectionStats, Disconnect};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::outbox::Outbox;
use crate::Protocol;

/// The connection registry. Runs supervised; its state survives a restart.
pub struct Registry {
    /// Open connections in id order (the admin API pages through them so).
    pub(crate) connections: BTreeMap<ConnId, ConnectionEntry>,
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
    pub(crate) client: ClientHeaders,
}

impl Registry {
    /// A registry that knows no connection yet.
    pub(crate) fn new() -> Self {
        Registry {
            connections: BTreeMap::new(),
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
    /// What the client said of itself in its upgrade request.
    pub client: ClientHeaders,
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
                client: msg.client,
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
