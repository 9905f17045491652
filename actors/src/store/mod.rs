//! Persistence: the SQLite database, the [`StoreActor`] that runs it on
//! its own thread, and what every protocol's storage shares.
//!
//! Actors that serve traffic never touch the disk: they send typed messages
//! to the store actor, which lives on a dedicated `SyncArbiter` thread, and
//! answers each one once its transaction has committed. Each protocol keeps
//! its operations, its SQL and its messages in its own folder
//! (`chat::store`, `live::store`, `rooms::store`); this module knows none
//! of them. Tables are added as new migrations (`sqlite.rs`).
//!
//! Acknowledge only after commit: a write whose effect a client is told
//! about (a chat message's broadcast, a friendship's `success`, a ban's
//! `kick`) is awaited, and the acknowledgement goes out only once the
//! answer is `Ok`; events that depend on it wait in order behind it (a chat
//! room batches what arrives meanwhile into its next commit). The store
//! handles its messages one at a time in the order they were sent, so an
//! acknowledged write also implies every write queued before it (e.g. the
//! chat room a message belongs to). Its queue is bounded by its senders:
//! a chat room has at most one commit in flight. What a commit guarantees,
//! and why, is documented in `sqlite.rs` (the durability settings).

mod sqlite;

use std::sync::Mutex;

use actix::prelude::*;

pub(crate) use sqlite::{parse_time, rfc3339};
pub use sqlite::{SqliteStore, Synchronous};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database folder could not be created.
    #[error("cannot create {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A write refused by fault injection (test builds only).
    #[cfg(feature = "fault-injection")]
    #[error("store writes are failing (fault injected)")]
    Injected,
    /// A stored value did not have the expected form.
    #[error("stored value for `{key}` is corrupt: {value:?}")]
    Corrupt {
        /// The key read.
        key: String,
        /// What was found.
        value: String,
    },
}

/// What every protocol's storage shares: broker-wide values, a liveness
/// probe and the final flush. Each protocol declares its own operations in
/// its folder (`chat::store`, `live::store`, `rooms::store`), implemented
/// for [`SqliteStore`] there, so this module knows no protocol.
pub trait Store: Send + 'static {
    /// Proves the store answers (a trivial query).
    fn ping(&mut self) -> Result<(), StoreError>;
    /// Reads a broker-wide value.
    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes a broker-wide value durably.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Moves everything written so far into the main database file.
    fn flush(&mut self) -> Result<(), StoreError>;
}

/// Runs the database on its own thread so disk I/O never blocks an event
/// loop. Each protocol's `store` module adds the messages it handles.
pub struct StoreActor {
    pub(crate) store: SqliteStore,
}

/// The address actors use to reach the store.
pub type StoreHandle = Addr<StoreActor>;

impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}

/// Starts the store actor on one dedicated thread (SQLite has one writer).
pub fn start(store: SqliteStore) -> StoreHandle {
    let slot = Mutex::new(Some(store));
    SyncArbiter::start(1, move || StoreActor {
        store: slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("the store actor is started on exactly one thread, once"),
    })
}

/// Readiness probe: answers when the store does.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Ping;

impl Handler<Ping> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: Ping, _: &mut Self::Context) -> Self::Result {
        self.store.ping()
    }
}

/// Writes a broker-wide value.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SetMeta {
    /// The key.
    pub key: &'static str,
    /// The value.
    pub value: String,
}

impl Handler<SetMeta> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SetMeta, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, &format!("writing `{}`", msg.key), |s| {
            s.set_meta(msg.key, &msg.value)
        })
    }
}

/// Flushes the write-ahead log into the database (at shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Checkpoint;

impl Handler<Checkpoint> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: Checkpoint, _: &mut Self::Context) -> Self::Result {
        self.store.flush()
    }
}

/// Logs a failed write. The actor that asked gets the error too: an awaited
/// write is then refused to its client; a fire-and-forget one is lost from
/// the store and the broker keeps serving it from memory.
pub(crate) fn logged<T>(what: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &result {
        log::error!("store: {what} failed: {e}");
    }
    result
}

/// Runs one write, unless the tests made store writes fail (or slow: the
/// store has its own thread, so the wait stalls only the store).
pub(crate) fn write<T>(
    store: &mut SqliteStore,
    what: &str,
    op: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    #[cfg(feature = "fault-injection")]
    std::thread::sleep(crate::fault::store_write_delay());
    #[cfg(feature = "fault-injection")]
    if crate::fault::store_writes_fail() {
        return logged(what, Err(StoreError::Injected));
    }
    logged(what, op(store))
}
