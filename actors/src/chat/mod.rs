//! The workshop chat (PROTOCOLS.md §2, seed `003`): rooms, history, typing
//! and presence, compatible with the workshop's browser client.
//!
//! - [`wire`]: the exact JSON events, pure.
//! - [`ChatMember`]: one user's state in its
//!   [`Connection`](crate::connection::Connection); the connect sequence,
//!   validation and anti-spoofing.
//! - [`Room`]: one actor per room; its members, its recent history (kept in
//!   the store too) and every broadcast, encoded once.
//! - a [`Lobby`](crate::lobby::Lobby): every joined user, for `room_create`.
//! - [`ChatDirectory`]: a supervised actor of its own; unique usernames,
//!   rooms in creation order and who is in which room, so `all_rooms` is
//!   one consistent snapshot.

mod directory;
mod member;
mod room;
pub mod store;
pub mod wire;

pub use directory::{
    ChatDirectory, CreateRefused, EnsureRoom, FindChatRoom, ListRooms, RemoveChatMember,
    RemoveRefused,
};
pub use member::ChatMember;
pub use room::{GetHistory, NotStored, Notice, Purge, Room, Say};

use actix::MailboxError;

use crate::store::StoreError;
use store::ChatStore;
use wire::{HistoryEntry, GLOBAL_ROOM};

/// Settings of the chat (`[chat]` in the config).
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Messages kept per room (in memory and in the store).
    pub history_limit: usize,
    /// Longest message, in characters.
    pub max_message_chars: usize,
    /// Rooms in total, `Global` and rooms being saved included; creating
    /// one more is refused. Every room is an actor listed in every
    /// `all_rooms`, so this bounds what anonymous clients can make the
    /// broker hold.
    pub max_rooms: usize,
    /// Rooms one connection may create per minute (a sliding window).
    pub room_creations_per_minute: usize,
    /// Messages one room holds while they wait for their commit (the
    /// store's back-pressure): past it, a message is refused with a
    /// `system` error instead of queueing without bound.
    pub max_unsaved_messages: usize,
}

/// Who is recorded as the creator of `Global`.
pub const GLOBAL_CREATOR: &str = "System";

/// A room as the store keeps it, read at start-up.
pub struct StoredRoom {
    /// Its name.
    pub name: String,
    /// Who created it.
    pub creator: String,
    /// Its last messages, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// What the store answered to a write, as one result whose error is the
/// text to log.
pub(crate) fn committed(
    answer: Result<Result<(), StoreError>, MailboxError>,
) -> Result<(), String> {
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the store is unreachable: {e}")),
    }
}

/// Reads every room and its recent history, creating `Global` on first start.
pub fn load_rooms(
    store: &mut dyn ChatStore,
    history_limit: usize,
) -> Result<Vec<StoredRoom>, StoreError> {
    store.create_chat_room(GLOBAL_ROOM, GLOBAL_CREATOR)?;
    let mut rooms = Vec::new();
    for (name, creator) in store.chat_rooms()? {
        let history = store.chat_history(&name, history_limit)?;
        rooms.push(StoredRoom {
            name,
            creator,
            history,
        });
    }
    // Global first, whatever the stored order.
    rooms.sort_by_key(|r| r.name != GLOBAL_ROOM);
    Ok(rooms)
}
