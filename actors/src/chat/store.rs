//! The chat's storage: rooms in creation order and each room's recent
//! history. The room actor sends [`SaveChatChanges`] (group commit), the
//! directory [`SaveChatRoom`]; both are answered once committed.

use actix::prelude::*;
use chrono::Utc;
use rusqlite::params;

use super::wire::HistoryEntry;
use crate::store::{parse_time, rfc3339, write, SqliteStore, StoreActor, StoreError};

/// The chat's operations on the database.
pub trait ChatStore {
    /// Chat rooms in creation order, as (name, creator).
    fn chat_rooms(&mut self) -> Result<Vec<(String, String)>, StoreError>;
    /// The last `limit` messages of a chat room, oldest first.
    fn chat_history(&mut self, room: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Records a chat room (a room that exists already is kept as it is).
    fn create_chat_room(&mut self, name: &str, creator: &str) -> Result<(), StoreError>;
    /// Applies a room's changes in order, as one transaction, then keeps
    /// only the last `keep` messages.
    fn save_chat_changes(
        &mut self,
        room: &str,
        changes: &[ChatChange],
        keep: usize,
    ) -> Result<(), StoreError>;
}

impl ChatStore for SqliteStore {
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

    fn save_chat_changes(
        &mut self,
        room: &str,
        changes: &[ChatChange],
        keep: usize,
    ) -> Result<(), StoreError> {
        // The busiest write of the store: a room's pending changes in one
        // transaction, its statements parsed once and reused from the
        // connection's statement cache; the history is trimmed once.
        let tx = self.conn.transaction()?;
        for change in changes {
            match change {
                ChatChange::Message(entry) => {
                    tx.prepare_cached(
                        "INSERT INTO chat_messages (room, username, message, sent_at)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        room,
                        entry.username,
                        entry.message,
                        rfc3339(entry.timestamp)
                    ])?;
                }
                ChatChange::Clear => {
                    tx.prepare_cached("DELETE FROM chat_messages WHERE room = ?1")?
                        .execute([room])?;
                }
            }
        }
        tx.prepare_cached(
            "DELETE FROM chat_messages WHERE room = ?1 AND id <= (
                 SELECT id FROM chat_messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
             )",
        )?
        .execute(params![room, keep as i64])?;
        tx.commit()?;
        Ok(())
    }
}

/// A chat room was created.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveChatRoom {
    /// Its name.
    pub name: String,
    /// Who created it.
    pub creator: String,
}

impl Handler<SaveChatRoom> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveChatRoom, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "saving a chat room", |s| {
            s.create_chat_room(&msg.name, &msg.creator)
        })
    }
}

/// One change to a chat room's stored history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatChange {
    /// A message was said.
    Message(HistoryEntry),
    /// The history was emptied.
    Clear,
}

/// A chat room's changes since its last commit, saved in one transaction
/// (group commit: a busy room pays one commit per batch, not per message).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveChatChanges {
    /// The room.
    pub room: String,
    /// The changes, in the order the room received them.
    pub changes: Vec<ChatChange>,
    /// How many messages the room keeps.
    pub keep: usize,
}

impl Handler<SaveChatChanges> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveChatChanges, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "saving chat changes", |s| {
            s.save_chat_changes(&msg.room, &msg.changes, msg.keep)
        })
    }
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

    /// The texts of room `room`'s stored history, oldest first.
    fn messages(s: &mut SqliteStore, room: &str) -> Vec<String> {
        s.chat_history(room, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect()
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
        for i in 0..4 {
            let said = ChatChange::Message(entry("alice", &format!("m{i}")));
            s.save_chat_changes("a", &[said], 3).unwrap();
        }
        let said = ChatChange::Message(entry("bob", "other room"));
        s.save_chat_changes("b", &[said], 3).unwrap();
        // A batch trims once, after all of it.
        let said = ChatChange::Message(entry("alice", "m4"));
        s.save_chat_changes("a", &[said], 3).unwrap();
        let kept = messages(&mut s, "a");
        assert_eq!(kept, ["m2", "m3", "m4"], "oldest first, only the last 3");
        assert_eq!(s.chat_history("a", 2).unwrap()[0].message, "m3");
        s.save_chat_changes("a", &[ChatChange::Clear], 3).unwrap();
        assert!(s.chat_history("a", 10).unwrap().is_empty());
        assert_eq!(s.chat_history("b", 10).unwrap().len(), 1);
        let batch = [
            ChatChange::Message(entry("alice", "before")),
            ChatChange::Clear,
            ChatChange::Message(entry("alice", "x1")),
            ChatChange::Message(entry("alice", "x2")),
        ];
        s.save_chat_changes("a", &batch, 10).unwrap();
        let kept = messages(&mut s, "a");
        assert_eq!(kept, ["x1", "x2"], "a batch applies in order");
        let said = ChatChange::Message(entry("x", "y"));
        assert!(
            s.save_chat_changes("nope", &[said], 3).is_err(),
            "messages belong to a known room"
        );
        assert_eq!(
            s.chat_history("a", 10).unwrap().len(),
            2,
            "a failed batch leaves nothing"
        );
    }
}
