//! The SQLite [`Store`]: WAL journal, `synchronous=FULL`, versioned migrations.
//!
//! `synchronous=FULL` makes every committed transaction durable before the
//! call returns, so what the broker acknowledged survives a SIGKILL and a
//! power loss; the broker's writes are few and small, so the fsync per commit
//! is cheap next to the guarantee.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};
use crate::chat::wire::HistoryEntry;

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
];

/// A SQLite database file holding the broker's state.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        Self::configure(conn)
    }

    /// An in-memory database (unit tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::configure(Connection::open_in_memory()?)
    }

    fn configure(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
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
            let timestamp = DateTime::parse_from_rfc3339(&sent_at)
                .map_err(|_| StoreError::Corrupt {
                    key: format!("chat_messages.sent_at of room {room}"),
                    value: sent_at.clone(),
                })?
                .with_timezone(&Utc);
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
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO chat_messages (room, username, message, sent_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                room,
                entry.username,
                entry.message,
                rfc3339(entry.timestamp)
            ],
        )?;
        tx.execute(
            "DELETE FROM chat_messages WHERE room = ?1 AND id <= (
                 SELECT id FROM chat_messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
             )",
            params![room, keep as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn clear_chat_room(&mut self, room: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM chat_messages WHERE room = ?1", [room])?;
        Ok(())
    }
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
        assert_eq!(pragma("synchronous"), "2", "2 is FULL");
        assert_eq!(pragma("foreign_keys"), "1");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
