//! The SQLite [`Store`]: WAL journal, `synchronous=NORMAL`, versioned migrations.
//!
//! # Durability
//!
//! The guarantee: a write the broker acknowledged survives the broker
//! process dying (SIGKILL, a panic, the OOM killer). Clients are told about
//! a write only after its transaction committed (see the
//! [module](super) docs), and in WAL mode with `synchronous=NORMAL` a
//! commit has appended its frames to the `-wal` file with `write()` before
//! `COMMIT` returns: they are in the operating system's page cache, which
//! outlives the process, and the next open replays them. What `NORMAL` does
//! not cover is the machine itself failing (kernel crash, power cut): the
//! WAL is fsynced only at checkpoints, so the last transactions before such
//! a crash can be lost — never the database's consistency, which WAL keeps
//! in every case.
//!
//! Why not `FULL` (an fsync on every commit, which also survives power
//! loss): with acknowledgements waiting for the commit, `FULL` would put a
//! disk flush (about a millisecond, far more on a busy or networked disk)
//! into the path of every chat message. A room commits what arrived during
//! the previous commit as one transaction, so a slow commit grows the
//! batches rather than stalling the room, but each message's latency still
//! includes a flush. `NORMAL` keeps a commit to a `write()`, tens of
//! microseconds.
//! A deployment that must survive power loss can run on storage with a
//! battery-backed or power-loss-protected cache, or set
//! `storage.synchronous = "full"` ([`Synchronous::Full`]) and accept the
//! latency. At shutdown the broker runs
//! `PRAGMA wal_checkpoint(TRUNCATE)`, which fsyncs everything into the main
//! database file.
//!
//! # Checkpoints off the commit path
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses its
//! threshold: that commit copies the WAL into the database and fsyncs both,
//! and every message waiting on it waits for the disk (on this project's VM
//! it was most of the chat's p99 at 100 members). So a file database turns
//! the automatic checkpoint off and a [`Checkpointer`] thread, with a
//! connection of its own, runs a passive checkpoint every
//! [`CHECKPOINT_INTERVAL`]: it never blocks the writer, and the fsyncs
//! happen beside the commits instead of inside one.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: broker-wide values (e.g. the session list's epoch).
    "CREATE TABLE broker_meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;",
    // 2: workshop chat rooms (in creation order) and their recent history.
    "CREATE TABLE chat_rooms (
        name       TEXT PRIMARY KEY NOT NULL,
        creator    TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE chat_messages (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        room     TEXT NOT NULL REFERENCES chat_rooms (name),
        username TEXT NOT NULL,
        message  TEXT NOT NULL,
        sent_at  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX chat_messages_by_room ON chat_messages (room, id);",
    // 3: live presence's accounts and friend graph. A friendship is stored
    // once, with the smaller user id first.
    "CREATE TABLE live_users (
        user_id  TEXT PRIMARY KEY NOT NULL,
        username TEXT NOT NULL,
        seen_at  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX live_users_by_name ON live_users (username, seen_at);
    CREATE TABLE live_friendships (
        user_a TEXT NOT NULL REFERENCES live_users (user_id),
        user_b TEXT NOT NULL REFERENCES live_users (user_id),
        since  TEXT NOT NULL,
        PRIMARY KEY (user_a, user_b),
        CHECK (user_a < user_b)
    ) STRICT;
    CREATE TABLE live_friend_requests (
        from_id TEXT NOT NULL REFERENCES live_users (user_id),
        to_id   TEXT NOT NULL REFERENCES live_users (user_id),
        sent_at TEXT NOT NULL,
        PRIMARY KEY (from_id, to_id)
    ) STRICT;
    CREATE INDEX live_friend_requests_to ON live_friend_requests (to_id);",
    // 4: permissioned rooms and who may do what in them. Messages are never
    // stored; `reserved_message_id` is the highest message id that may have
    // been handed out, so ids keep increasing across restarts.
    "CREATE TABLE rooms (
        room_id             TEXT PRIMARY KEY NOT NULL,
        name                TEXT NOT NULL,
        closed              INTEGER NOT NULL,
        created_at          TEXT NOT NULL,
        reserved_message_id INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE room_grants (
        room_id TEXT NOT NULL REFERENCES rooms (room_id),
        user_id TEXT NOT NULL,
        grant   TEXT NOT NULL CHECK (grant IN ('admin', 'invite', 'ban')),
        PRIMARY KEY (room_id, user_id, grant)
    ) STRICT;",
    // 5: who created each permissioned room (NULL: the operator's API), for
    // the per-creator cap, and the invites not used yet (delivered to the
    // invitee on every connect until it enters the room). A room with one
    // admin was created by that admin over the WebSocket (the API's rooms
    // mostly have none), so that is taken as its creator.
    "ALTER TABLE rooms ADD COLUMN creator TEXT;
    UPDATE rooms SET creator = (
        SELECT MIN(g.user_id) FROM room_grants g
        WHERE g.room_id = rooms.room_id AND g.grant = 'admin'
    ) WHERE (
        SELECT COUNT(*) FROM room_grants g
        WHERE g.room_id = rooms.room_id AND g.grant = 'admin'
    ) = 1;
    CREATE TABLE room_pending_invites (
        room_id    TEXT NOT NULL REFERENCES rooms (room_id),
        user_id    TEXT NOT NULL,
        inviter    TEXT NOT NULL,
        invited_at TEXT NOT NULL,
        PRIMARY KEY (room_id, user_id)
    ) STRICT;
    CREATE INDEX room_pending_invites_by_user ON room_pending_invites (user_id);",
];

/// `PRAGMA synchronous` in WAL mode: what a commit waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// The WAL frames are written to the OS: survives the process dying.
    #[default]
    Normal,
    /// The WAL is fsynced on every commit: also survives power loss.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// A SQLite database file holding the broker's state.
pub struct SqliteStore {
    /// The connection; each protocol's `store` module runs its own SQL on it.
    pub(crate) conn: Connection,
    /// Checkpoints a file database from its own thread (none in memory).
    _checkpointer: Option<Checkpointer>,
}

/// How often the [`Checkpointer`] copies the WAL into the database.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// A thread with its own connection that runs `PRAGMA
/// wal_checkpoint(PASSIVE)` every [`CHECKPOINT_INTERVAL`] until dropped.
struct Checkpointer {
    /// Dropping it tells the thread to stop.
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    fn start(path: PathBuf) -> Result<Self, StoreError> {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // The first checkpoint opens the WAL and its index now, so the
        // broker's descriptors are all open once it has started.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    // Passive: copies what no reader still needs and waits
                    // for nobody; what is left goes in the next round.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        log::warn!("store: checkpoint of {}: {e}", path.display());
                    }
                }
            })
            .map_err(StoreError::Checkpointer)?;
        Ok(Checkpointer { _stop: stop })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Synchronous::default())
    }

    /// Opens the database at `path` with the given commit durability.
    pub fn open_with(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        let mut store = Self::configure(conn, synchronous)?;
        store.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        store._checkpointer = Some(Checkpointer::start(path.to_owned())?);
        Ok(store)
    }

    /// An in-memory database (unit tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::configure(Connection::open_in_memory()?, Synchronous::default())
    }

    fn configure(conn: Connection, synchronous: Synchronous) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: durable against a process crash; see the module docs.
        conn.pragma_update(None, "synchronous", synchronous.pragma())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = SqliteStore {
            conn,
            _checkpointer: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The number of migrations applied.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let v: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let applied = self.schema_version()?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
            log::info!("store: applied migration {}", i + 1);
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn ping(&mut self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM broker_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO broker_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// A stored timestamp, or [`StoreError::Corrupt`] naming its column.
pub(crate) fn parse_time(column: &str, value: String) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(&value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt {
            key: column.to_owned(),
            value,
        })
}

/// How timestamps are stored: RFC 3339, UTC.
pub(crate) fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::store::RoomsStore;

    #[test]
    fn rooms_from_before_creators_were_stored_get_their_one_admin_as_creator() {
        let conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS.iter().take(4).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO rooms (room_id, name, closed, created_at) VALUES
                 ('r1', 'mine', 0, 'x'), ('r2', 'ops', 0, 'x'), ('r3', 'pair', 0, 'x');
             INSERT INTO room_grants (room_id, user_id, grant) VALUES
                 ('r1', 'alice', 'admin'), ('r1', 'bob', 'invite'),
                 ('r3', 'carol', 'admin'), ('r3', 'dave', 'admin');",
        )
        .unwrap();
        let mut s = SqliteStore::configure(conn, Synchronous::Normal).unwrap();
        let creators: Vec<_> = s.rooms().unwrap().into_iter().map(|r| r.creator).collect();
        assert_eq!(creators, [Some("alice".to_owned()), None, None]);
    }

    #[test]
    fn migrates_once_and_keeps_values_across_reopen() {
        let dir = std::env::temp_dir().join(format!("sb-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested").join("test.db");
        {
            let mut s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
            assert_eq!(s.meta("k").unwrap(), None);
            s.set_meta("k", "1").unwrap();
            s.set_meta("k", "2").unwrap();
            s.flush().unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
        assert_eq!(s.meta("k").unwrap().as_deref(), Some("2"));
        s.ping().unwrap();
        let pragma = |name: &str| -> String {
            s.conn
                .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "1", "1 is NORMAL");

        assert_eq!(pragma("foreign_keys"), "1");
        drop(s);
        let s = SqliteStore::open_with(&path, Synchronous::Full).unwrap();
        let full: i64 = s
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(full, 2, "2 is FULL");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_database_is_checkpointed_beside_the_writer() {
        let dir = std::env::temp_dir().join(format!("sb-checkpoint-{}", std::process::id()));
        let path = dir.join("db.sqlite");
        let mut s = SqliteStore::open(&path).unwrap();
        let auto: i64 = s
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0, "no checkpoint inside a commit");
        let before = std::fs::metadata(&path).unwrap().len();
        let filler = "x".repeat(64 * 1024);
        for i in 0..16 {
            s.set_meta(&format!("k{i}"), &filler).unwrap();
        }
        // The commits went to the WAL only; the checkpointer copies them
        // into the database file, which grows.
        let deadline = std::time::Instant::now() + 10 * CHECKPOINT_INTERVAL;
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint within {:?}",
                10 * CHECKPOINT_INTERVAL
            );
            std::thread::sleep(CHECKPOINT_INTERVAL / 5);
        }
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
