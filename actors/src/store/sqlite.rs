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
//! into the path of every chat message, and a room handles one message at
//! a time. `NORMAL` keeps a commit to a `write()`, tens of microseconds.
//! A deployment that must survive power loss can run on storage with a
//! battery-backed or power-loss-protected cache, or set
//! `storage.synchronous = "full"` ([`Synchronous::Full`]) and accept the
//! latency. At shutdown the broker runs
//! `PRAGMA wal_checkpoint(TRUNCATE)`, which fsyncs everything into the main
//! database file.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};
use crate::chat::wire::HistoryEntry;
use crate::live::wire::FriendRequest;
use crate::live::{FriendError, SentRequest};
use crate::rooms::{Grant, StoredRoom};

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
    conn: Connection,
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
        Self::configure(conn, synchronous)
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
        let mut store = SqliteStore { conn };
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

    fn chat_rooms(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut query = self
            .conn
            .prepare("SELECT name, creator FROM chat_rooms ORDER BY rowid")?;
        let rooms = query
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rooms)
    }

    fn chat_history(&mut self, room: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut query = self.conn.prepare(
            "SELECT username, message, sent_at FROM (
                 SELECT id, username, message, sent_at FROM chat_messages
                 WHERE room = ?1 ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
        )?;
        let rows = query.query_map(params![room, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut history = Vec::new();
        for row in rows {
            let (username, message, sent_at) = row?;
            let timestamp = parse_time("chat_messages.sent_at", sent_at)?;
            history.push(HistoryEntry {
                username,
                message,
                timestamp,
            });
        }
        Ok(history)
    }

    fn create_chat_room(&mut self, name: &str, creator: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO chat_rooms (name, creator, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO NOTHING",
            params![name, creator, rfc3339(Utc::now())],
        )?;
        Ok(())
    }

    fn append_chat_message(
        &mut self,
        room: &str,
        entry: &HistoryEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        // The busiest write of the store: its statements are parsed once
        // and reused from the connection's statement cache.
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO chat_messages (room, username, message, sent_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            room,
            entry.username,
            entry.message,
            rfc3339(entry.timestamp)
        ])?;
        tx.prepare_cached(
            "DELETE FROM chat_messages WHERE room = ?1 AND id <= (
                 SELECT id FROM chat_messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
             )",
        )?
        .execute(params![room, keep as i64])?;
        tx.commit()?;
        Ok(())
    }

    fn clear_chat_room(&mut self, room: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM chat_messages WHERE room = ?1", [room])?;
        Ok(())
    }

    fn live_user_seen(&mut self, user_id: &str, username: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO live_users (user_id, username, seen_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(user_id) DO UPDATE SET username = excluded.username, seen_at = excluded.seen_at",
            params![user_id, username, rfc3339(Utc::now())],
        )?;
        Ok(())
    }

    fn live_send_request(
        &mut self,
        from: &str,
        to_username: &str,
    ) -> Result<Result<SentRequest, FriendError>, StoreError> {
        let tx = self.conn.transaction()?;
        // A username may have changed hands: the account that used it last wins.
        let to: Option<String> = tx
            .query_row(
                "SELECT user_id FROM live_users WHERE username = ?1 ORDER BY seen_at DESC LIMIT 1",
                [to_username],
                |r| r.get(0),
            )
            .optional()?;
        let Some(to) = to else {
            return Ok(Err(FriendError::UnknownUser));
        };
        if to == from {
            return Ok(Err(FriendError::Yourself));
        }
        let (a, b) = pair(from, &to);
        let friends: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM live_friendships WHERE user_a = ?1 AND user_b = ?2)",
            [a, b],
            |r| r.get(0),
        )?;
        if friends {
            return Ok(Err(FriendError::AlreadyFriends));
        }
        let pending = |from: &str, to: &str| -> Result<bool, rusqlite::Error> {
            tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM live_friend_requests WHERE from_id = ?1 AND to_id = ?2)",
                [from, to],
                |r| r.get(0),
            )
        };
        if pending(from, &to)? {
            return Ok(Err(FriendError::AlreadyPending));
        }
        let outcome = if pending(&to, from)? {
            tx.execute(
                "DELETE FROM live_friend_requests WHERE from_id = ?1 AND to_id = ?2",
                [to.as_str(), from],
            )?;
            tx.execute(
                "INSERT INTO live_friendships (user_a, user_b, since) VALUES (?1, ?2, ?3)",
                params![a, b, rfc3339(Utc::now())],
            )?;
            SentRequest::BecameFriends(to)
        } else {
            tx.execute(
                "INSERT INTO live_friend_requests (from_id, to_id, sent_at) VALUES (?1, ?2, ?3)",
                params![from, to, rfc3339(Utc::now())],
            )?;
            SentRequest::Pending(to)
        };
        tx.commit()?;
        Ok(Ok(outcome))
    }

    fn live_answer_request(
        &mut self,
        me: &str,
        requester: &str,
        accept: bool,
    ) -> Result<Result<(), FriendError>, StoreError> {
        let tx = self.conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM live_friend_requests WHERE from_id = ?1 AND to_id = ?2",
            [requester, me],
        )?;
        if removed == 0 {
            return Ok(Err(FriendError::NoSuchRequest));
        }
        if accept {
            let (a, b) = pair(me, requester);
            tx.execute(
                "INSERT INTO live_friendships (user_a, user_b, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![a, b, rfc3339(Utc::now())],
            )?;
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    fn live_remove_friend(
        &mut self,
        me: &str,
        other: &str,
    ) -> Result<Result<(), FriendError>, StoreError> {
        let (a, b) = pair(me, other);
        let removed = self.conn.execute(
            "DELETE FROM live_friendships WHERE user_a = ?1 AND user_b = ?2",
            [a, b],
        )?;
        Ok(if removed == 0 {
            Err(FriendError::NotFriends)
        } else {
            Ok(())
        })
    }

    fn live_friends(&mut self, me: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut query = self.conn.prepare(
            "SELECT u.user_id, u.username FROM live_friendships f
             JOIN live_users u ON u.user_id = CASE WHEN f.user_a = ?1 THEN f.user_b ELSE f.user_a END
             WHERE f.user_a = ?1 OR f.user_b = ?1
             ORDER BY u.username, u.user_id",
        )?;
        let friends = query
            .query_map([me], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(friends)
    }

    fn rooms(&mut self) -> Result<Vec<StoredRoom>, StoreError> {
        let mut query = self.conn.prepare(
            "SELECT room_id, name, closed, reserved_message_id, creator FROM rooms ORDER BY rowid",
        )?;
        let mut rooms = query
            .query_map([], |r| {
                Ok(StoredRoom {
                    room_id: r.get(0)?,
                    name: r.get(1)?,
                    closed: r.get(2)?,
                    reserved_message_id: r.get::<_, i64>(3)? as u64,
                    creator: r.get(4)?,
                    grants: Vec::new(),
                    pending_invites: Vec::new(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut pending = self.conn.prepare(
            "SELECT user_id, inviter FROM room_pending_invites WHERE room_id = ?1
             ORDER BY invited_at, rowid",
        )?;
        for room in &mut rooms {
            room.pending_invites = pending
                .query_map([&room.room_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
        }
        let mut query = self
            .conn
            .prepare("SELECT user_id, grant FROM room_grants WHERE room_id = ?1")?;
        for room in &mut rooms {
            let grants = query.query_map([&room.room_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for grant in grants {
                let (user, kind) = grant?;
                let grant = Grant::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                    key: "room_grants.grant".into(),
                    value: kind.clone(),
                })?;
                room.grants.push((user, grant));
            }
        }
        Ok(rooms)
    }

    fn create_room(
        &mut self,
        room_id: &str,
        name: &str,
        closed: bool,
        admins: &[String],
        creator: Option<&str>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO rooms (room_id, name, closed, created_at, creator) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![room_id, name, closed, rfc3339(Utc::now()), creator],
        )?;
        for admin in admins {
            tx.execute(
                "INSERT OR IGNORE INTO room_grants (room_id, user_id, grant) VALUES (?1, ?2, 'admin')",
                [room_id, admin.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn set_room_grant(
        &mut self,
        room_id: &str,
        user_id: &str,
        grant: Grant,
        on: bool,
    ) -> Result<(), StoreError> {
        let sql = if on {
            "INSERT OR IGNORE INTO room_grants (room_id, user_id, grant) VALUES (?1, ?2, ?3)"
        } else {
            "DELETE FROM room_grants WHERE room_id = ?1 AND user_id = ?2 AND grant = ?3"
        };
        let tx = self.conn.transaction()?;
        tx.execute(sql, [room_id, user_id, grant.as_str()])?;
        if grant == Grant::Invite && !on {
            // An invite taken back is no longer pending either.
            tx.execute(
                "DELETE FROM room_pending_invites WHERE room_id = ?1 AND user_id = ?2",
                [room_id, user_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn reserve_message_ids(&mut self, room_id: &str, up_to: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rooms SET reserved_message_id = MAX(reserved_message_id, ?2) WHERE room_id = ?1",
            params![room_id, up_to as i64],
        )?;
        Ok(())
    }

    fn invite_to_room(
        &mut self,
        room_id: &str,
        user_id: &str,
        inviter: &str,
        pending: bool,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO room_grants (room_id, user_id, grant) VALUES (?1, ?2, 'invite')",
            [room_id, user_id],
        )?;
        if pending {
            // A new invite to a user with one pending keeps its place in
            // line and names the latest inviter.
            tx.execute(
                "INSERT INTO room_pending_invites (room_id, user_id, inviter, invited_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(room_id, user_id) DO UPDATE SET inviter = excluded.inviter",
                params![room_id, user_id, inviter, rfc3339(Utc::now())],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn use_room_invite(&mut self, room_id: &str, user_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM room_pending_invites WHERE room_id = ?1 AND user_id = ?2",
            [room_id, user_id],
        )?;
        Ok(())
    }

    fn pending_room_invites(&mut self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut query = self.conn.prepare_cached(
            "SELECT p.room_id, p.inviter FROM room_pending_invites p
             JOIN rooms r ON r.room_id = p.room_id
             WHERE p.user_id = ?1 ORDER BY p.invited_at, r.rowid",
        )?;
        let invites = query
            .query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(invites)
    }

    fn live_incoming_requests(&mut self, me: &str) -> Result<Vec<FriendRequest>, StoreError> {
        let mut query = self.conn.prepare(
            "SELECT r.from_id, u.username, r.sent_at FROM live_friend_requests r
             JOIN live_users u ON u.user_id = r.from_id
             WHERE r.to_id = ?1 ORDER BY r.sent_at, r.from_id",
        )?;
        let rows = query.query_map([me], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut requests = Vec::new();
        for row in rows {
            let (user_id, username, sent_at) = row?;
            requests.push(FriendRequest {
                user_id,
                username,
                sent_at: parse_time("live_friend_requests.sent_at", sent_at)?,
            });
        }
        Ok(requests)
    }
}

/// The stored (ordered) form of a friendship between `a` and `b`.
fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

fn parse_time(column: &str, value: String) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(&value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt {
            key: column.to_owned(),
            value,
        })
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(username: &str, message: &str) -> HistoryEntry {
        HistoryEntry {
            username: username.into(),
            message: message.into(),
            timestamp: Utc::now(),
        }
    }

    #[test]
    fn the_friend_graph_follows_requests_answers_and_removals() {
        let mut s = SqliteStore::in_memory().unwrap();
        for (id, name) in [("u1", "alice"), ("u2", "bob"), ("u3", "carol")] {
            s.live_user_seen(id, name).unwrap();
        }
        let send =
            |s: &mut SqliteStore, from: &str, to: &str| s.live_send_request(from, to).unwrap();
        assert_eq!(send(&mut s, "u1", "nobody"), Err(FriendError::UnknownUser));
        assert_eq!(send(&mut s, "u1", "alice"), Err(FriendError::Yourself));
        assert_eq!(
            send(&mut s, "u1", "bob"),
            Ok(SentRequest::Pending("u2".into()))
        );
        assert_eq!(send(&mut s, "u1", "bob"), Err(FriendError::AlreadyPending));
        let incoming = s.live_incoming_requests("u2").unwrap();
        assert_eq!(incoming.len(), 1);
        assert_eq!(
            (incoming[0].user_id.as_str(), incoming[0].username.as_str()),
            ("u1", "alice")
        );
        assert!(
            s.live_incoming_requests("u1").unwrap().is_empty(),
            "incoming only"
        );
        assert_eq!(
            s.live_answer_request("u1", "u2", true).unwrap(),
            Err(FriendError::NoSuchRequest),
            "only the target answers"
        );
        assert_eq!(s.live_answer_request("u2", "u1", true).unwrap(), Ok(()));
        assert_eq!(
            send(&mut s, "u2", "alice"),
            Err(FriendError::AlreadyFriends)
        );
        assert_eq!(
            s.live_friends("u1").unwrap(),
            [("u2".to_owned(), "bob".to_owned())]
        );
        assert_eq!(
            s.live_friends("u2").unwrap(),
            [("u1".to_owned(), "alice".to_owned())]
        );

        // A crossing request makes friends at once; a rejected one does not.
        assert_eq!(
            send(&mut s, "u3", "alice"),
            Ok(SentRequest::Pending("u1".into()))
        );
        assert_eq!(
            send(&mut s, "u1", "carol"),
            Ok(SentRequest::BecameFriends("u3".into()))
        );
        assert!(s.live_incoming_requests("u1").unwrap().is_empty());
        assert_eq!(s.live_friends("u1").unwrap().len(), 2);
        assert_eq!(s.live_remove_friend("u3", "u1").unwrap(), Ok(()));
        assert_eq!(
            s.live_remove_friend("u3", "u1").unwrap(),
            Err(FriendError::NotFriends)
        );
        assert_eq!(
            send(&mut s, "u3", "bob"),
            Ok(SentRequest::Pending("u2".into()))
        );
        assert_eq!(s.live_answer_request("u2", "u3", false).unwrap(), Ok(()));
        assert!(s.live_friends("u3").unwrap().is_empty());
        assert_eq!(
            s.live_answer_request("u2", "u3", false).unwrap(),
            Err(FriendError::NoSuchRequest)
        );
    }

    #[test]
    fn rooms_keep_their_grants_and_reserved_ids() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.create_room("r1", "club", true, &["alice".to_owned()], Some("alice"))
            .unwrap();
        s.create_room("r2", "open", false, &[], None).unwrap();
        s.set_room_grant("r1", "bob", Grant::Invite, true).unwrap();
        s.set_room_grant("r1", "bob", Grant::Invite, false).unwrap();
        s.set_room_grant("r1", "bob", Grant::Ban, true).unwrap();
        s.set_room_grant("r1", "bob", Grant::Ban, true).unwrap();
        s.reserve_message_ids("r1", 1000).unwrap();
        s.reserve_message_ids("r1", 500).unwrap();
        let rooms = s.rooms().unwrap();
        assert_eq!(rooms.len(), 2);
        assert_eq!((rooms[0].name.as_str(), rooms[0].closed), ("club", true));
        assert_eq!(rooms[0].reserved_message_id, 1000, "never goes back");
        let mut grants = rooms[0].grants.clone();
        grants.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            grants,
            [
                ("alice".to_owned(), Grant::Admin),
                ("bob".to_owned(), Grant::Ban)
            ]
        );
        assert!(rooms[1].grants.is_empty());
        assert_eq!(rooms[0].creator.as_deref(), Some("alice"));
        assert_eq!(rooms[1].creator, None);
        assert!(s.set_room_grant("nope", "x", Grant::Ban, true).is_err());
    }

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
    fn pending_invites_last_until_used_or_taken_back() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.create_room("r1", "one", true, &["alice".to_owned()], Some("alice"))
            .unwrap();
        s.create_room("r2", "two", false, &[], None).unwrap();
        s.invite_to_room("r1", "bob", "alice", true).unwrap();
        s.invite_to_room("r2", "bob", "carol", true).unwrap();
        s.invite_to_room("r2", "bob", "dave", true).unwrap();
        s.invite_to_room("r2", "erin", "dave", false).unwrap();
        let pending = |s: &mut SqliteStore, user: &str| s.pending_room_invites(user).unwrap();
        assert_eq!(
            pending(&mut s, "bob"),
            [
                ("r1".to_owned(), "alice".to_owned()),
                ("r2".to_owned(), "dave".to_owned())
            ],
            "oldest first, one per room, the latest inviter"
        );
        assert!(pending(&mut s, "erin").is_empty(), "granted, not pending");
        let rooms = s.rooms().unwrap();
        assert_eq!(
            rooms[0].pending_invites,
            [("bob".to_owned(), "alice".to_owned())]
        );
        assert!(rooms[1]
            .grants
            .contains(&("erin".to_owned(), Grant::Invite)));
        s.use_room_invite("r1", "bob").unwrap();
        assert_eq!(pending(&mut s, "bob").len(), 1);
        assert!(
            s.rooms().unwrap()[0]
                .grants
                .contains(&("bob".to_owned(), Grant::Invite)),
            "entering uses the pending invite, not the grant"
        );
        s.set_room_grant("r2", "bob", Grant::Invite, false).unwrap();
        assert!(pending(&mut s, "bob").is_empty());
        assert!(s.invite_to_room("nope", "bob", "x", true).is_err());
    }

    #[test]
    fn chat_rooms_keep_their_order_and_only_the_last_messages() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.create_chat_room("Global", "System").unwrap();
        s.create_chat_room("b", "bob").unwrap();
        s.create_chat_room("a", "alice").unwrap();
        s.create_chat_room("b", "someone else").unwrap();
        assert_eq!(
            s.chat_rooms().unwrap(),
            [
                ("Global".to_owned(), "System".to_owned()),
                ("b".to_owned(), "bob".to_owned()),
                ("a".to_owned(), "alice".to_owned())
            ]
        );
        for i in 0..5 {
            s.append_chat_message("a", &entry("alice", &format!("m{i}")), 3)
                .unwrap();
        }
        s.append_chat_message("b", &entry("bob", "other room"), 3)
            .unwrap();
        let kept: Vec<_> = s
            .chat_history("a", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(kept, ["m2", "m3", "m4"], "oldest first, only the last 3");
        assert_eq!(s.chat_history("a", 2).unwrap()[0].message, "m3");
        s.clear_chat_room("a").unwrap();
        assert!(s.chat_history("a", 10).unwrap().is_empty());
        assert_eq!(s.chat_history("b", 10).unwrap().len(), 1);
        assert!(
            s.append_chat_message("nope", &entry("x", "y"), 3).is_err(),
            "messages belong to a known room"
        );
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
}
