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
//!
//! What an operator alerts on is measured here: every write's duration
//! (`switchboard_store_commit_duration_seconds`), every failure by kind
//! (`switchboard_store_errors_total`) and the messages waiting for the
//! store's thread (`switchboard_store_queue_depth`, kept by [`StoreHandle`]).

mod sqlite;

use std::any::Any;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use actix::prelude::*;

use crate::metrics::{metrics, StoreErrorKind};

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
    /// The thread that checkpoints the database could not start.
    #[error("cannot start the checkpoint thread: {0}")]
    Checkpointer(std::io::Error),
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

/// The address actors use to reach the store. It sends like an [`Addr`]
/// and counts each message in `switchboard_store_queue_depth` until the
/// store's thread takes it up: actix does not expose a `SyncArbiter`'s
/// queue, and a growing queue is how a slow disk shows before timeouts do.
#[derive(Clone)]
pub struct StoreHandle {
    addr: Addr<StoreActor>,
}

impl StoreHandle {
    /// Sends `msg` and answers with the store's reply.
    pub fn send<M>(&self, msg: M) -> impl Future<Output = Result<M::Result, MailboxError>>
    where
        M: Message + Send + 'static,
        M::Result: Send + 'static,
        StoreActor: Handler<M, Result = M::Result>,
    {
        let reply = self.addr.send::<Queued>(Queued::new(msg));
        async move {
            let answer = reply.await?;
            Ok(*answer
                .downcast::<M::Result>()
                .expect("a queued message answers with its own result type"))
        }
    }

    /// Sends `msg` without waiting for the reply.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send + 'static,
        StoreActor: Handler<M, Result = M::Result>,
    {
        self.addr.do_send::<Queued>(Queued::new(msg));
    }
}

/// A store message on its way, counted in the queue depth until the store's
/// thread takes it up (or it is dropped undelivered). The message is boxed
/// behind one handler, so every protocol's messages share the count.
pub struct Queued {
    run: Option<Job>,
}

/// Runs one store message on the store's thread and boxes its answer.
type Job = Box<dyn FnOnce(&mut StoreActor, &mut SyncContext<StoreActor>) -> Answer + Send>;

/// A store message's answer, of the message's own result type.
type Answer = Box<dyn Any + Send>;

impl Queued {
    fn new<M>(msg: M) -> Self
    where
        M: Message + Send + 'static,
        M::Result: Send + 'static,
        StoreActor: Handler<M, Result = M::Result>,
    {
        metrics().store.queue_depth.inc();
        Queued {
            run: Some(Box::new(move |store, ctx| {
                Box::new(<StoreActor as Handler<M>>::handle(store, msg, ctx))
            })),
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        metrics().store.queue_depth.dec();
    }
}

impl Message for Queued {
    type Result = Answer;
}

impl Handler<Queued> for StoreActor {
    type Result = MessageResult<Queued>;
    fn handle(&mut self, mut queued: Queued, ctx: &mut Self::Context) -> Self::Result {
        let run = queued.run.take().expect("a queued message runs once");
        drop(queued);
        MessageResult(run(self, ctx))
    }
}

impl Actor for StoreActor {
    type Context = SyncContext<Self>;
}

/// Starts the store actor on one dedicated thread (SQLite has one writer).
pub fn start(store: SqliteStore) -> StoreHandle {
    let slot = Mutex::new(Some(store));
    let addr = SyncArbiter::start(1, move || StoreActor {
        store: slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("the store actor is started on exactly one thread, once"),
    });
    StoreHandle { addr }
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

impl StoreError {
    /// The `kind` label this error is counted under.
    pub fn kind(&self) -> StoreErrorKind {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sqlite(e) => match e.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreErrorKind::Busy,
                Some(ErrorCode::DiskFull) => StoreErrorKind::DiskFull,
                Some(ErrorCode::ConstraintViolation) => StoreErrorKind::Constraint,
                Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => StoreErrorKind::Io,
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                    StoreErrorKind::Corrupt
                }
                _ => StoreErrorKind::Other,
            },
            StoreError::Folder { .. } | StoreError::Checkpointer(_) => StoreErrorKind::Io,
            #[cfg(feature = "fault-injection")]
            StoreError::Injected => StoreErrorKind::Injected,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
        }
    }
}

/// Logs and counts a failed write. The actor that asked gets the error too:
/// an awaited write is then refused to its client; a fire-and-forget one is
/// lost from the store and the broker keeps serving it from memory.
pub(crate) fn logged<T>(what: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &result {
        log::error!("store: {what} failed: {e}");
        metrics().store.error(e.kind());
    }
    result
}

/// Runs one write, unless the tests made store writes fail (or slow: the
/// store has its own thread, so the wait stalls only the store), and
/// observes how long it took, commit included (an injected delay counts:
/// it stands for a slow disk).
pub(crate) fn write<T>(
    store: &mut SqliteStore,
    what: &str,
    op: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = faulty_or(store, op);
    metrics()
        .store
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    logged(what, result)
}

/// Runs `op`, or fails (or waits) as the tests' fault injection says.
fn faulty_or<T>(
    store: &mut SqliteStore,
    op: impl FnOnce(&mut SqliteStore) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    #[cfg(feature = "fault-injection")]
    std::thread::sleep(crate::fault::store_write_delay());
    #[cfg(feature = "fault-injection")]
    if crate::fault::store_writes_fail() {
        return Err(StoreError::Injected);
    }
    op(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_sent_message_leaves_the_queue_once_handled() {
        let store = start(SqliteStore::in_memory().expect("in-memory store"));
        let depth = &metrics().store.queue_depth;
        store
            .send(SetMeta {
                key: "k",
                value: "v".into(),
            })
            .await
            .expect("store reachable")
            .expect("written");
        store
            .send(Ping)
            .await
            .expect("store reachable")
            .expect("pong");
        assert_eq!(depth.get(), 0, "nothing waits once every answer is in");
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let db = SqliteStore::in_memory().expect("in-memory store");
        let constraint = db
            .conn
            .execute(
                "INSERT INTO broker_meta (key, value) VALUES ('k', NULL)",
                [],
            )
            .map_err(StoreError::from)
            .expect_err("NOT NULL refuses");
        assert_eq!(constraint.kind(), StoreErrorKind::Constraint);
        let corrupt = StoreError::Corrupt {
            key: "k".into(),
            value: "x".into(),
        };
        assert_eq!(corrupt.kind(), StoreErrorKind::Corrupt);
        let syntax = db
            .conn
            .execute("NOT SQL", [])
            .map_err(StoreError::from)
            .expect_err("a syntax error");
        assert_eq!(syntax.kind(), StoreErrorKind::Other);
    }
}
