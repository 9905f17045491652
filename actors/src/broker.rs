//! Starting the actor system: store thread, arbiter pool, the connection
//! registry, each protocol's directory and the protocols' long-lived actors,
//! wired together. The registry, the directories, the lobbies, the feed and
//! the presence run under a `Supervisor`, and start the rooms, services and
//! listings supervised in turn: the broker's one supervision tree.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::admission::Admission;
use crate::chat::{self, ChatDirectory, ChatSettings};
use crate::concierge::{ConciergeDirectory, ConciergeSettings};
use crate::connection::Disconnect;
use crate::limits::Limits;
use crate::live::Presence;
use crate::lobby::Lobby;
use crate::metrics::ActorKind;
use crate::monitor::Monitor;
use crate::pool::ArbiterPool;
use crate::registry::{DisconnectAll, Registry};
use crate::rooms::store::RoomsStore;
use crate::rooms::{RoomsDirectory, RoomsSettings};
use crate::sessions::{self, ListingDirectory, SessionFeed, SessionsSettings, SharedEpoch};
use crate::store::{self, SqliteStore, StoreError, StoreHandle};
use crate::Protocol;

/// What the broker needs to start its actors.
pub struct BrokerSettings {
    /// Per-connection limits.
    pub limits: Limits,
    /// The session list's settings.
    pub sessions: SessionsSettings,
    /// The concierge's settings.
    pub concierge: ConciergeSettings,
    /// The chat's settings.
    pub chat: ChatSettings,
    /// The permissioned rooms' settings.
    pub rooms: RoomsSettings,
    /// Arbiters for room-like actors (usually the number of cores).
    pub arbiters: usize,
    /// Time between the operator console's samples (`admin.console_interval`).
    pub console_interval: Duration,
}

/// The running actor system, as the HTTP layer sees it.
#[derive(Clone)]
pub struct Broker {
    /// Every open connection.
    pub registry: Addr<Registry>,
    /// The store thread.
    pub store: StoreHandle,
    /// Connection limits, shared by every connection.
    pub limits: Arc<Limits>,
    /// Admission counters for WebSocket upgrades.
    pub admission: Arc<Admission>,
    /// The session list's directory of listings.
    pub listing_directory: Addr<ListingDirectory>,
    /// The session list's feed of watchers.
    pub session_feed: Addr<SessionFeed>,
    /// The session list's current epoch.
    pub session_epoch: SharedEpoch,
    /// The concierge's fan-out to every identified client.
    pub concierge_lobby: Addr<Lobby>,
    /// The concierge's settings.
    pub concierge: Arc<ConciergeSettings>,
    /// The concierge's directory of clients and services: names, keys,
    /// subscriptions, and the service actors it hands out.
    pub concierge_directory: Addr<ConciergeDirectory>,
    /// The chat's settings.
    pub chat: Arc<ChatSettings>,
    /// The chat's directory of users and rooms.
    pub chat_directory: Addr<ChatDirectory>,
    /// Live presence: who is online, playing what.
    pub presence: Addr<Presence>,
    /// The permissioned rooms' settings.
    pub rooms: Arc<RoomsSettings>,
    /// The permissioned rooms' directory: looks rooms up, creates them and
    /// delivers invites.
    pub rooms_directory: Addr<RoomsDirectory>,
    /// Samples the figures the operator console shows.
    pub monitor: Addr<Monitor>,
    pool: Arc<ArbiterPool>,
}

impl Broker {
    /// Starts every long-lived actor. Must run inside an actix `System`.
    pub fn start(settings: BrokerSettings, mut db: SqliteStore) -> Result<Broker, StoreError> {
        let epoch = sessions::next_epoch(&mut db)?;
        let chat_rooms = chat::load_rooms(&mut db, settings.chat.history_limit)?;
        let stored_rooms = db.rooms()?;
        let store = store::start(db);
        let pool = Arc::new(ArbiterPool::new(settings.arbiters));
        let session_epoch = SharedEpoch::new(epoch);

        let shared = session_epoch.clone();
        let version = settings.sessions.expected_client_version.clone();
        let session_feed =
            Supervisor::start_in_arbiter(&pool.next(), move |_| SessionFeed::new(shared, version));

        let listing_directory = ListingDirectory::new(
            epoch,
            settings.sessions,
            session_feed.clone(),
            Arc::clone(&pool),
            store.clone(),
        );
        let listing_directory =
            Supervisor::start_in_arbiter(&pool.next(), move |_| listing_directory);
        let evict_after = settings.limits.slow_consumer_drops;
        let concierge_lobby = Supervisor::start_in_arbiter(&pool.next(), move |_| {
            Lobby::new(Protocol::Concierge, ActorKind::ConciergeLobby, evict_after)
        });
        let concierge_directory = ConciergeDirectory::new(
            concierge_lobby.clone(),
            Arc::clone(&pool),
            evict_after,
            settings.limits.max_rooms_per_client,
            settings.concierge.files_dir.clone(),
            settings.concierge.fs_key,
        );
        let concierge_directory =
            Supervisor::start_in_arbiter(&pool.next(), move |_| concierge_directory);
        let chat_lobby = Supervisor::start_in_arbiter(&pool.next(), move |_| {
            Lobby::new(Protocol::Chat, ActorKind::ChatLobby, evict_after)
        });
        let chat_directory = ChatDirectory::new(
            chat_rooms,
            chat_lobby,
            Arc::clone(&pool),
            store.clone(),
            settings.chat.clone(),
            evict_after,
        );
        let chat_directory = Supervisor::start_in_arbiter(&pool.next(), move |_| chat_directory);
        let rooms_directory =
            RoomsDirectory::new(stored_rooms, Arc::clone(&pool), store.clone(), evict_after);
        let rooms_directory = Supervisor::start_in_arbiter(&pool.next(), move |_| rooms_directory);
        let registry = Supervisor::start_in_arbiter(&pool.next(), move |_| Registry::new());
        let presence =
            Supervisor::start_in_arbiter(&pool.next(), move |_| Presence::new(evict_after));

        let console_interval = settings.console_interval;
        let monitor =
            Monitor::start_in_arbiter(&pool.next(), move |_| Monitor::new(console_interval));

        let limits = Arc::new(settings.limits);
        let admission = Admission::new(limits.max_connections, limits.max_connections_per_ip);
        log::info!("broker started: session list epoch {epoch}");
        Ok(Broker {
            registry,
            store,
            limits,
            admission,
            listing_directory,
            session_feed,
            session_epoch,
            concierge_lobby,
            concierge: Arc::new(settings.concierge),
            concierge_directory,
            chat: Arc::new(settings.chat),
            chat_directory,
            presence,
            rooms: Arc::new(settings.rooms),
            rooms_directory,
            monitor,
            pool,
        })
    }

    /// Tells every open connection to close with 1001; answers how many were told.
    pub async fn disconnect_all(&self) -> usize {
        self.registry
            .send(DisconnectAll(Disconnect::shutdown()))
            .await
            .unwrap_or(0)
    }

    /// Flushes the store and stops the arbiter pool (after the HTTP server stopped).
    pub async fn stop(&self) {
        match self.store.send(store::Checkpoint).await {
            Ok(Ok(())) => log::info!("store flushed"),
            Ok(Err(e)) => log::error!("store flush failed: {e}"),
            Err(e) => log::error!("store unreachable at shutdown: {e}"),
        }
        self.pool.stop();
    }
}
