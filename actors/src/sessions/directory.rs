//! The session list's directory: which listings exist, and the full resync
//! that replaces them all under a new epoch. It is its own supervised actor,
//! so the session list's bookkeeping never queues behind another protocol's.
//!
//! A new epoch is acknowledged only after it is committed: the resync
//! writes it to the store first and changes nothing until the store
//! answers; only then are the old listings retired, the new ones started
//! and `reset` broadcast. If the store refuses, nothing changes and the
//! host is told so.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;

use super::feed::{Reset, SessionFeed};
use super::listing::{Retire, SessionListing};
use super::wire::{Epoch, Session};
use super::{SessionsSettings, EPOCH_KEY};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::pool::ArbiterPool;
use crate::store::{SetMeta, StoreHandle};

/// The listings, by session id. Runs supervised; its state survives a
/// restart.
pub struct ListingDirectory {
    listings: BTreeMap<String, Addr<SessionListing>>,
    epoch: Epoch,
    /// The last epoch a resync asked the store to save: resyncs in flight
    /// at once each get their own. The store answers in order, so they
    /// apply in the order they were asked.
    latest_epoch: Epoch,
    settings: SessionsSettings,
    feed: Addr<SessionFeed>,
    pool: Arc<ArbiterPool>,
    store: StoreHandle,
    _alive: ActorGauge,
}

impl ListingDirectory {
    /// An empty directory at `epoch`.
    pub(crate) fn new(
        epoch: Epoch,
        settings: SessionsSettings,
        feed: Addr<SessionFeed>,
        pool: Arc<ArbiterPool>,
        store: StoreHandle,
    ) -> Self {
        ListingDirectory {
            listings: BTreeMap::new(),
            epoch,
            latest_epoch: epoch,
            settings,
            feed,
            pool,
            store,
            _alive: ActorGauge::new(ActorKind::ListingDirectory),
        }
    }

    /// Starts a supervised listing actor on the pool.
    fn spawn(&self, session: Session, directory: Addr<ListingDirectory>) -> Addr<SessionListing> {
        let (epoch, ttl, feed) = (self.epoch, self.settings.ttl, self.feed.clone());
        Supervisor::start_in_arbiter(&self.pool.next(), move |_| {
            SessionListing::new(session, epoch, ttl, feed, directory)
        })
    }

    fn live(&self, session_id: &str) -> Option<&Addr<SessionListing>> {
        self.listings.get(session_id).filter(|a| a.connected())
    }

    fn count(&self) {
        metrics().listed_sessions.set(self.listings.len() as i64);
    }
}

impl Actor for ListingDirectory {
    type Context = Context<Self>;
}

impl Supervised for ListingDirectory {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("session list directory restarting");
        metrics().actor_restarted(ActorKind::ListingDirectory);
    }
}

/// The result of [`UpsertListing`].
pub enum Upsert {
    /// A new listing was created from the session (its `add` is broadcast).
    Created(Session),
    /// A listing exists; send it the update.
    Existing(Addr<SessionListing>),
}

/// Creates the listing of `session` unless one exists.
#[derive(Message)]
#[rtype(result = "Upsert")]
pub struct UpsertListing(pub Session);

impl Handler<UpsertListing> for ListingDirectory {
    type Result = MessageResult<UpsertListing>;
    fn handle(
        &mut self,
        UpsertListing(session): UpsertListing,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        if let Some(addr) = self.live(&session.session_id) {
            return MessageResult(Upsert::Existing(addr.clone()));
        }
        // Announced here, before the host hears 201: a watcher that connects
        // on that answer finds the session in its snapshot.
        self.feed
            .do_send(SessionListing::announcement(self.epoch, &session));
        let addr = self.spawn(session.clone(), ctx.address());
        self.listings.insert(session.session_id.clone(), addr);
        self.count();
        MessageResult(Upsert::Created(session))
    }
}

/// The listing of a session id, if listed.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionListing>>")]
pub struct FindListing(pub String);

impl Handler<FindListing> for ListingDirectory {
    type Result = Option<Addr<SessionListing>>;
    fn handle(&mut self, FindListing(id): FindListing, _: &mut Self::Context) -> Self::Result {
        self.live(&id).cloned()
    }
}

/// Every listing, in session id order.
#[derive(Message)]
#[rtype(result = "Vec<Addr<SessionListing>>")]
pub struct AllListings;

impl Handler<AllListings> for ListingDirectory {
    type Result = Vec<Addr<SessionListing>>;
    fn handle(&mut self, _: AllListings, _: &mut Self::Context) -> Self::Result {
        self.listings.values().cloned().collect()
    }
}

/// A listing ended itself (DELETE, TTL, resync); forget it if it is still
/// the one listed under its id.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ListingGone {
    pub session_id: String,
    pub listing: Addr<SessionListing>,
}

impl Handler<ListingGone> for ListingDirectory {
    type Result = ();
    fn handle(&mut self, msg: ListingGone, _: &mut Self::Context) {
        if self.listings.get(&msg.session_id) == Some(&msg.listing) {
            self.listings.remove(&msg.session_id);
            self.count();
        }
    }
}

/// Full resync: replace every listing with `sessions` under a new epoch,
/// once the epoch is committed. Session ids must be unique (the HTTP layer
/// checks). Answers the new epoch, or [`EpochNotSaved`] (nothing changed).
#[derive(Message)]
#[rtype(result = "Result<Epoch, EpochNotSaved>")]
pub struct Resync(pub Vec<Session>);

/// The store refused the new epoch of a resync; the listing is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the new epoch could not be saved, so nothing was changed; try again later")]
pub struct EpochNotSaved;

impl Handler<Resync> for ListingDirectory {
    type Result = ResponseActFuture<Self, Result<Epoch, EpochNotSaved>>;
    fn handle(&mut self, Resync(sessions): Resync, _: &mut Self::Context) -> Self::Result {
        debug_assert_eq!(
            sessions
                .iter()
                .map(|s| &s.session_id)
                .collect::<HashSet<_>>()
                .len(),
            sessions.len()
        );
        self.latest_epoch = self.latest_epoch.wrapping_add(1);
        let epoch = self.latest_epoch;
        let saved = self.store.send(SetMeta {
            key: EPOCH_KEY,
            value: epoch.to_string(),
        });
        Box::pin(
            saved
                .into_actor(self)
                .map(move |saved, directory, ctx| match saved {
                    Ok(Ok(())) => {
                        directory.apply_resync(epoch, sessions, ctx.address());
                        Ok(epoch)
                    }
                    failed => {
                        log::error!(
                            "session list resync refused: saving epoch {epoch} failed: {failed:?}"
                        );
                        Err(EpochNotSaved)
                    }
                }),
        )
    }
}

impl ListingDirectory {
    /// Replaces every listing with `sessions` under the committed `epoch`
    /// and broadcasts `reset`.
    fn apply_resync(&mut self, epoch: Epoch, sessions: Vec<Session>, me: Addr<ListingDirectory>) {
        let dir = self;
        for old in std::mem::take(&mut dir.listings).into_values() {
            old.do_send(Retire);
        }
        dir.epoch = epoch;
        let mut frames = BTreeMap::new();
        for session in sessions {
            let id = session.session_id.clone();
            frames.insert(id.clone(), SessionListing::add_frame(dir.epoch, &session));
            let addr = dir.spawn(session, me.clone());
            dir.listings.insert(id, addr);
        }
        dir.feed.do_send(Reset {
            epoch: dir.epoch,
            listed: frames,
        });
        dir.count();
        log::info!(
            "session list resynced: epoch {}, {} sessions",
            dir.epoch,
            dir.listings.len()
        );
    }
}
