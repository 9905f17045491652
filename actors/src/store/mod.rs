//! Persistence: one [`Store`] trait, a SQLite implementation, and the
//! [`StoreActor`] that runs it on its own thread.
//!
//! Actors that serve traffic never touch the disk: they send typed messages
//! to the store actor, which lives on a dedicated `SyncArbiter` thread, and
//! continue. Later protocols add their tables as new migrations.

mod sqlite;

use std::sync::Mutex;

use actix::prelude::*;

pub use sqlite::SqliteStore;

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
    /// A stored value did not have the expected form.
    #[error("stored value for `{key}` is corrupt: {value:?}")]
    Corrupt {
        /// The key read.
        key: String,
        /// What was found.
        value: String,
    },
}

/// What the broker keeps on disk.
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

/// Runs a [`Store`] on its own thread so disk I/O never blocks an event loop.
pub struct StoreActor {
    store: Box<dyn Store>,
}

/// The address actors use to reach the store.
pub type StoreHandle = Addr<StoreActor>;

impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}

/// Starts the store actor on one dedicated thread (SQLite has one writer).
pub fn start(store: impl Store) -> StoreHandle {
    let slot = Mutex::new(Some(Box::new(store) as Box<dyn Store>));
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
        let result = self.store.set_meta(msg.key, &msg.value);
        if let Err(e) = &result {
            log::error!("store: writing `{}` failed: {e}", msg.key);
        }
        result
    }
}

/// Flushes the write-ahead log into the database (at shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Flush;

impl Handler<Flush> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        self.store.flush()
    }
}
