//! Persistence: one [`Store`] trait, a SQLite implementation, and the
//! [`StoreActor`] that runs it on its own thread.
//!
//! Actors that serve traffic never touch the disk: they send typed messages
//! to the store actor, which lives on a dedicated `SyncArbiter` thread, and
//! answers each one once its transaction has committed. Later protocols add
//! their tables as new migrations.
//!
//! Acknowledge only after commit: a write whose effect a client is told
//! about (a chat message's broadcast, a friendship's `success`, a ban's
//! `kick`) is awaited (`send`, never `do_send`), and the acknowledgement
//! goes out only once the answer is `Ok`; the actor that asked handles
//! nothing else meanwhile, so its events keep their order. The store
//! handles its messages one at a time in the order they were sent, so an
//! acknowledged write also implies every write queued before it (e.g. the
//! chat room a message belongs to). What a commit guarantees, and why, is
//! documented in `sqlite.rs` (the durability settings).

mod sqlite;

use std::sync::Mutex;

use actix::prelude::*;

pub use sqlite::{SqliteStore, Synchronous};

use crate::chat::wire::HistoryEntry;
use crate::live::wire::FriendRequest;
use crate::live::{FriendError, SentRequest};
use crate::rooms::{Grant, StoredRoom};

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
    /// Chat rooms in creation order, as (name, creator).
    fn chat_rooms(&mut self) -> Result<Vec<(String, String)>, StoreError>;
    /// The last `limit` messages of a chat room, oldest first.
    fn chat_history(&mut self, room: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Records a chat room (a room that exists already is kept as it is).
    fn create_chat_room(&mut self, name: &str, creator: &str) -> Result<(), StoreError>;
    /// Appends a message to a room's history, keeping only the last `keep`.
    fn append_chat_message(
        &mut self,
        room: &str,
        entry: &HistoryEntry,
        keep: usize,
    ) -> Result<(), StoreError>;
    /// Empties a room's history.
    fn clear_chat_room(&mut self, room: &str) -> Result<(), StoreError>;
    /// Records a live user (or its new username).
    fn live_user_seen(&mut self, user_id: &str, username: &str) -> Result<(), StoreError>;
    /// `from` asks the user called `to_username` to be friends; if that user
    /// asked first they become friends at once.
    fn live_send_request(
        &mut self,
        from: &str,
        to_username: &str,
    ) -> Result<Result<SentRequest, FriendError>, StoreError>;
    /// `me` accepts or rejects the pending request from `requester`.
    fn live_answer_request(
        &mut self,
        me: &str,
        requester: &str,
        accept: bool,
    ) -> Result<Result<(), FriendError>, StoreError>;
    /// Ends the friendship of `me` and `other`.
    fn live_remove_friend(
        &mut self,
        me: &str,
        other: &str,
    ) -> Result<Result<(), FriendError>, StoreError>;
    /// The friends of `me` as (user id, username), by username.
    fn live_friends(&mut self, me: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// The pending requests to `me`, oldest first.
    fn live_incoming_requests(&mut self, me: &str) -> Result<Vec<FriendRequest>, StoreError>;
    /// Every permissioned room with its grants, in creation order.
    fn rooms(&mut self) -> Result<Vec<StoredRoom>, StoreError>;
    /// Records a new permissioned room, its first admins and who created it
    /// (none: the operator).
    fn create_room(
        &mut self,
        room_id: &str,
        name: &str,
        closed: bool,
        admins: &[String],
        creator: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Gives (`on`) or takes back a grant (admin, invite, ban) in a room.
    fn set_room_grant(
        &mut self,
        room_id: &str,
        user_id: &str,
        grant: Grant,
        on: bool,
    ) -> Result<(), StoreError>;
    /// Records that message ids up to `up_to` may be handed out in a room.
    fn reserve_message_ids(&mut self, room_id: &str, up_to: u64) -> Result<(), StoreError>;
    /// Invites a user to a room (the grant) and, if `pending`, records the
    /// invite from `inviter` as pending until the user enters; one transaction.
    fn invite_to_room(
        &mut self,
        room_id: &str,
        user_id: &str,
        inviter: &str,
        pending: bool,
    ) -> Result<(), StoreError>;
    /// The user entered the room: its pending invite there is used.
    fn use_room_invite(&mut self, room_id: &str, user_id: &str) -> Result<(), StoreError>;
    /// A user's pending invites as (room id, inviter), oldest first.
    fn pending_room_invites(&mut self, user_id: &str) -> Result<Vec<(String, String)>, StoreError>;
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
        write(&mut *self.store, &format!("writing `{}`", msg.key), |s| {
            s.set_meta(msg.key, &msg.value)
        })
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

/// Logs a failed write. The actor that asked gets the error too: an awaited
/// write is then refused to its client; a fire-and-forget one is lost from
/// the store and the broker keeps serving it from memory.
fn logged<T>(what: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &result {
        log::error!("store: {what} failed: {e}");
    }
    result
}

/// Runs one write, unless the tests made store writes fail.
fn write<T>(
    store: &mut dyn Store,
    what: &str,
    op: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    #[cfg(feature = "fault-injection")]
    if crate::fault::store_writes_fail() {
        return logged(what, Err(StoreError::Injected));
    }
    logged(what, op(store))
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
        write(&mut *self.store, "saving a chat room", |s| {
            s.create_chat_room(&msg.name, &msg.creator)
        })
    }
}

/// A chat message was sent to a room.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveChatMessage {
    /// The room.
    pub room: String,
    /// The message.
    pub entry: HistoryEntry,
    /// How many messages the room keeps.
    pub keep: usize,
}

impl Handler<SaveChatMessage> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveChatMessage, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "saving a chat message", |s| {
            s.append_chat_message(&msg.room, &msg.entry, msg.keep)
        })
    }
}

/// A chat room's history was cleared.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ClearChatHistory {
    /// The room.
    pub room: String,
}

impl Handler<ClearChatHistory> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: ClearChatHistory, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "clearing a chat room", |s| {
            s.clear_chat_room(&msg.room)
        })
    }
}

/// A live user connected (or was registered by the operator).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct LiveUserSeen {
    /// The account's id.
    pub user_id: String,
    /// Its current username.
    pub username: String,
}

impl Handler<LiveUserSeen> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: LiveUserSeen, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "recording a live user", |s| {
            s.live_user_seen(&msg.user_id, &msg.username)
        })
    }
}

/// A change to the friend graph, as one transaction.
#[derive(Message)]
#[rtype(result = "Result<Result<FriendChange, FriendError>, StoreError>")]
pub enum ChangeFriends {
    /// `from` sends a request to the user called `to_username`.
    Request {
        /// The sender's id.
        from: String,
        /// The target's username.
        to_username: String,
    },
    /// `me` accepts or rejects the pending request from `requester`.
    Answer {
        /// Who answers.
        me: String,
        /// Whose request.
        requester: String,
        /// Accept (else reject).
        accept: bool,
    },
    /// `me` and `other` stop being friends.
    Remove {
        /// Who removes.
        me: String,
        /// The friend.
        other: String,
    },
}

/// What a [`ChangeFriends`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FriendChange {
    /// A request was sent (or made friends at once).
    Sent(SentRequest),
    /// The answer or removal was done.
    Done,
}

impl Handler<ChangeFriends> for StoreActor {
    type Result = Result<Result<FriendChange, FriendError>, StoreError>;
    fn handle(&mut self, msg: ChangeFriends, _: &mut Self::Context) -> Self::Result {
        write(
            &mut *self.store,
            "changing the friend graph",
            |store| match msg {
                ChangeFriends::Request { from, to_username } => store
                    .live_send_request(&from, &to_username)
                    .map(|r| r.map(FriendChange::Sent)),
                ChangeFriends::Answer {
                    me,
                    requester,
                    accept,
                } => store
                    .live_answer_request(&me, &requester, accept)
                    .map(|r| r.map(|()| FriendChange::Done)),
                ChangeFriends::Remove { me, other } => store
                    .live_remove_friend(&me, &other)
                    .map(|r| r.map(|()| FriendChange::Done)),
            },
        )
    }
}

/// The friends of a user as (user id, username).
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, String)>, StoreError>")]
pub struct LiveFriends(pub String);

impl Handler<LiveFriends> for StoreActor {
    type Result = Result<Vec<(String, String)>, StoreError>;
    fn handle(&mut self, LiveFriends(me): LiveFriends, _: &mut Self::Context) -> Self::Result {
        self.store.live_friends(&me)
    }
}

/// The pending requests to a user.
#[derive(Message)]
#[rtype(result = "Result<Vec<FriendRequest>, StoreError>")]
pub struct IncomingFriendRequests(pub String);

impl Handler<IncomingFriendRequests> for StoreActor {
    type Result = Result<Vec<FriendRequest>, StoreError>;
    fn handle(
        &mut self,
        IncomingFriendRequests(me): IncomingFriendRequests,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.store.live_incoming_requests(&me)
    }
}

/// A permissioned room was created.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveRoom {
    /// Its id.
    pub room_id: String,
    /// Its name.
    pub name: String,
    /// Whether only invited users may enter.
    pub closed: bool,
    /// Its first admins.
    pub admins: Vec<String>,
    /// The user who created it (none: the operator's API).
    pub creator: Option<String>,
}

impl Handler<SaveRoom> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveRoom, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "saving a room", |s| {
            s.create_room(
                &msg.room_id,
                &msg.name,
                msg.closed,
                &msg.admins,
                msg.creator.as_deref(),
            )
        })
    }
}

/// A grant in a permissioned room was given or taken back.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveGrant {
    /// The room.
    pub room_id: String,
    /// The user.
    pub user_id: String,
    /// Which grant.
    pub grant: Grant,
    /// Given (else taken back).
    pub on: bool,
}

impl Handler<SaveGrant> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveGrant, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "saving a room grant", |s| {
            s.set_room_grant(&msg.room_id, &msg.user_id, msg.grant, msg.on)
        })
    }
}

/// Message ids up to `up_to` may now be handed out in a room (answered once
/// durable, before any of them is used).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ReserveMessageIds {
    /// The room.
    pub room_id: String,
    /// The new highest id.
    pub up_to: u64,
}

impl Handler<ReserveMessageIds> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: ReserveMessageIds, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "reserving message ids", |s| {
            s.reserve_message_ids(&msg.room_id, msg.up_to)
        })
    }
}

/// A user was invited to a permissioned room (answered once committed).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveInvite {
    /// The room.
    pub room_id: String,
    /// The invitee.
    pub user_id: String,
    /// Who invited.
    pub inviter: String,
    /// Whether the invite waits for the invitee to enter (and is delivered
    /// on each connect until then).
    pub pending: bool,
}

impl Handler<SaveInvite> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveInvite, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "saving a room invite", |s| {
            s.invite_to_room(&msg.room_id, &msg.user_id, &msg.inviter, msg.pending)
        })
    }
}

/// An invitee entered the room: its pending invite there is used.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct UseInvite {
    /// The room.
    pub room_id: String,
    /// The invitee.
    pub user_id: String,
}

impl Handler<UseInvite> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: UseInvite, _: &mut Self::Context) -> Self::Result {
        write(&mut *self.store, "using a room invite", |s| {
            s.use_room_invite(&msg.room_id, &msg.user_id)
        })
    }
}

/// A user's pending room invites as (room id, inviter), oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, String)>, StoreError>")]
pub struct PendingInvites(pub String);

impl Handler<PendingInvites> for StoreActor {
    type Result = Result<Vec<(String, String)>, StoreError>;
    fn handle(
        &mut self,
        PendingInvites(user): PendingInvites,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.store.pending_room_invites(&user)
    }
}
