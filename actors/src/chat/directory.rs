//! The chat's directory: unique usernames, the rooms in creation order
//! (`Global` first, never deleted) and who is in which room. It is its own
//! supervised actor, so the chat's bookkeeping never queues behind another
//! protocol's in the registry.
//!
//! Joining, switching and creating go through here, so names are claimed
//! atomically and `all_rooms` is one consistent snapshot; the room actors
//! hold the members' connections and do the broadcasting.
//!
//! A new room exists only once the store has committed it: until then it is
//! *pending* (its name is taken and it counts towards `chat.max_rooms`, but
//! it is in no listing and nobody is told). The directory does not wait for
//! the store meanwhile; it keeps serving, and whoever asked for the room
//! (its creator, or a user joining it while it is pending) is answered when
//! the store is. Only then is `room_create` broadcast; if the store refuses,
//! the room is forgotten and every asker gets [`CreateRefused::NotSaved`].

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;
use uuid::Uuid;

use super::room::{Room, RoomLimits};
use super::store::SaveChatRoom;
use super::wire::{RoomInfo, ServerEvent};
use super::{committed, ChatSettings, StoredRoom};
use crate::connection::{ConnId, Disconnect, Frames, MemberHandle};
use crate::lobby::{Announce, JoinLobby, LeaveLobby, Lobby};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::pool::ArbiterPool;
use crate::store::StoreHandle;
use crate::Protocol;

/// The store's answer to saving a pending room, awaited by everyone who
/// waits for that room (its error is the text to log).
type Saved = Shared<BoxFuture<'static, Result<(), String>>>;

/// A room whose creation the store has not answered yet.
struct PendingRoom {
    /// Tells this attempt from a later one for the same name.
    attempt: u64,
    creator: String,
    saved: Saved,
}

/// Why a room was not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateRefused {
    /// The name is taken (by a room or a room being saved).
    #[error("Room {0} already exists")]
    Exists(String),
    /// `chat.max_rooms` rooms exist already.
    #[error("Room {room} was not created: the chat has reached its limit of {max} rooms")]
    LimitReached {
        /// The room asked for.
        room: String,
        /// `chat.max_rooms`.
        max: usize,
    },
    /// The store refused to save it, so it does not exist.
    #[error("Room {0} could not be saved, so it was not created; try again later")]
    NotSaved(String),
}

/// The chat's directory. Runs supervised; its state survives a restart.
pub struct ChatDirectory {
    users: HashMap<String, ChatUser>,
    /// Names claimed by connections waiting for a pending room to join.
    joining: HashMap<String, ConnId>,
    /// Every room, `Global` first, then in creation order.
    rooms: Vec<RoomEntry>,
    by_name: HashMap<String, usize>,
    /// Rooms the store is saving, by name.
    pending: HashMap<String, PendingRoom>,
    /// The last [`PendingRoom::attempt`] handed out.
    attempts: u64,
    lobby: Addr<Lobby>,
    pool: Arc<ArbiterPool>,
    store: StoreHandle,
    settings: ChatSettings,
    evict_after: u32,
    _alive: ActorGauge,
}

struct ChatUser {
    conn: ConnId,
    room: usize,
    /// How an operator's removal closes its connection.
    disconnect: Recipient<Disconnect>,
}

struct RoomEntry {
    name: String,
    creator: String,
    addr: Addr<Room>,
    /// Users in the room, in the order they came.
    members: Vec<String>,
}

impl RoomEntry {
    fn info(&self) -> RoomInfo {
        RoomInfo {
            room_name: self.name.clone(),
            room_creator: self.creator.clone(),
            connected_users: self.members.clone(),
        }
    }
}

impl ChatDirectory {
    /// A directory of the stored rooms, each started as a room actor.
    pub(crate) fn new(
        stored: Vec<StoredRoom>,
        lobby: Addr<Lobby>,
        pool: Arc<ArbiterPool>,
        store: StoreHandle,
        settings: ChatSettings,
        evict_after: u32,
    ) -> Self {
        let mut directory = ChatDirectory {
            users: HashMap::new(),
            joining: HashMap::new(),
            rooms: Vec::new(),
            by_name: HashMap::new(),
            pending: HashMap::new(),
            attempts: 0,
            lobby,
            pool,
            store,
            settings,
            evict_after,
            _alive: ActorGauge::new(ActorKind::ChatDirectory),
        };
        for room in stored {
            directory.add_room(room);
        }
        directory
    }

    fn add_room(&mut self, room: StoredRoom) -> usize {
        let limits = RoomLimits {
            keep: self.settings.history_limit,
            max_unsaved: self.settings.max_unsaved_messages,
            evict_after: self.evict_after,
        };
        let (name, history, store) = (room.name.clone(), room.history, self.store.clone());
        let addr = Supervisor::start_in_arbiter(&self.pool.next(), move |_| {
            Room::new(name, history, limits, store)
        });
        let index = self.rooms.len();
        self.by_name.insert(room.name.clone(), index);
        self.rooms.push(RoomEntry {
            name: room.name,
            creator: room.creator,
            addr,
            members: Vec::new(),
        });
        metrics().chat.rooms.set(self.rooms.len() as i64);
        index
    }

    /// Whether `username` is held by a joined user or by one waiting to join.
    fn name_taken(&self, username: &str) -> bool {
        self.users.contains_key(username) || self.joining.contains_key(username)
    }

    /// Starts saving a new room with `creator`, unless the chat holds
    /// `chat.max_rooms` rooms (pending ones included) already; answers the
    /// attempt and the store's answer to wait for.
    fn start_create(&mut self, name: &str, creator: &str) -> Result<(u64, Saved), CreateRefused> {
        let max = self.settings.max_rooms;
        if self.rooms.len() + self.pending.len() >= max {
            metrics().limit_reached(Protocol::Chat, "max_rooms");
            log::warn!("chat room {name} not created: the limit of {max} rooms is reached");
            return Err(CreateRefused::LimitReached {
                room: name.to_owned(),
                max,
            });
        }
        let save = self.store.send(SaveChatRoom {
            name: name.to_owned(),
            creator: creator.to_owned(),
        });
        let saved = async move { committed(save.await) }.boxed().shared();
        self.attempts += 1;
        self.pending.insert(
            name.to_owned(),
            PendingRoom {
                attempt: self.attempts,
                creator: creator.to_owned(),
                saved: saved.clone(),
            },
        );
        Ok((self.attempts, saved))
    }

    /// The save to wait for before `name` exists: the one in flight if the
    /// room is being created already, else a new one with `creator`.
    fn pending_or_create(
        &mut self,
        name: &str,
        creator: &str,
    ) -> Result<(u64, Saved), CreateRefused> {
        match self.pending.get(name) {
            Some(pending) => Ok((pending.attempt, pending.saved.clone())),
            None => self.start_create(name, creator),
        }
    }

    /// Settles `attempt` at creating `name` once the store answered: a
    /// saved room is added and `room_create` announced (showing its creator
    /// as its only user, as the reference does); a refused one is
    /// forgotten. Whoever waited for the attempt calls this; the first call
    /// settles it, later ones find the outcome.
    fn finish_create(
        &mut self,
        name: &str,
        attempt: u64,
        saved: &Result<(), String>,
    ) -> Result<usize, CreateRefused> {
        if let Some(&index) = self.by_name.get(name) {
            return Ok(index);
        }
        if self.pending.get(name).map(|p| p.attempt) != Some(attempt) {
            return Err(CreateRefused::NotSaved(name.to_owned()));
        }
        let Some(pending) = self.pending.remove(name) else {
            return Err(CreateRefused::NotSaved(name.to_owned()));
        };
        if let Err(e) = saved {
            log::error!("chat room {name} was not created: the store refused it: {e}");
            return Err(CreateRefused::NotSaved(name.to_owned()));
        }
        let creator = pending.creator;
        let index = self.add_room(StoredRoom {
            name: name.to_owned(),
            creator: creator.clone(),
            history: Vec::new(),
        });
        let room = RoomInfo {
            room_name: name.to_owned(),
            room_creator: creator.clone(),
            connected_users: vec![creator.clone()],
        };
        let frame = ServerEvent::RoomCreate { room: &room }.encode();
        self.lobby.do_send(Announce(Frames::One(frame.into())));
        log::info!("chat room {name} created by {creator}");
        Ok(index)
    }

    /// Puts a user whose name is free into the room at `index`; `created`:
    /// this user's connection created the room.
    fn join(&mut self, msg: JoinChat, index: usize, created: bool) -> Joined {
        let room = &mut self.rooms[index];
        room.members.push(msg.username.clone());
        let addr = room.addr.clone();
        let created = created.then(|| room.info());
        self.users.insert(
            msg.username,
            ChatUser {
                conn: msg.member.id,
                room: index,
                disconnect: msg.member.disconnect.clone(),
            },
        );
        self.lobby.do_send(JoinLobby(msg.member));
        metrics().chat.members.set(self.users.len() as i64);
        Joined {
            user_id: Uuid::new_v4(),
            rooms: self.infos(),
            created,
            room: addr,
        }
    }

    /// Forgets the rooms being saved and the users waiting for them: a
    /// restarting directory drops the futures that would settle them, so
    /// their names would otherwise stay taken (and count towards
    /// `chat.max_rooms`) for good. Their askers get a mailbox error.
    fn forget_pending(&mut self) {
        self.pending.clear();
        self.joining.clear();
    }

    fn infos(&self) -> Vec<RoomInfo> {
        self.rooms.iter().map(RoomEntry::info).collect()
    }
}

impl Actor for ChatDirectory {
    type Context = Context<Self>;
}

impl Supervised for ChatDirectory {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("chat directory restarting");
        metrics().actor_restarted(ActorKind::ChatDirectory);
        self.forget_pending();
    }
}

/// The username is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Username is already taken")]
pub struct NameTaken;

/// What a user who joined needs for its first frames.
pub struct Joined {
    /// Its `user_id`.
    pub user_id: Uuid,
    /// `all_rooms`, already listing the newcomer.
    pub rooms: Vec<RoomInfo>,
    /// The room this connection created, if it did.
    pub created: Option<RoomInfo>,
    /// The room it is in.
    pub room: Addr<Room>,
}

/// Why a user could not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// Another user has the name.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
    /// The room was missing and could not be created.
    #[error(transparent)]
    Room(#[from] CreateRefused),
    /// The connection ended while its room was being saved.
    #[error("the connection ended while its room was being created")]
    Gone,
}

/// A user with a valid name joins `room`. A missing room is created first
/// (and joined once the store has committed it), as is a room being
/// created by someone else.
#[derive(Message)]
#[rtype(result = "Result<Joined, JoinRefused>")]
pub struct JoinChat {
    /// The trimmed, valid username.
    pub username: String,
    /// The valid room name.
    pub room: String,
    /// The user's connection.
    pub member: MemberHandle,
}

impl Handler<JoinChat> for ChatDirectory {
    type Result = ResponseActFuture<Self, Result<Joined, JoinRefused>>;
    fn handle(&mut self, msg: JoinChat, _: &mut Self::Context) -> Self::Result {
        if self.name_taken(&msg.username) {
            return Box::pin(fut::ready(Err(NameTaken.into())));
        }
        if let Some(&index) = self.by_name.get(&msg.room) {
            return Box::pin(fut::ready(Ok(self.join(msg, index, false))));
        }
        let creating = !self.pending.contains_key(&msg.room);
        let (attempt, saved) = match self.pending_or_create(&msg.room, &msg.username) {
            Ok(waiting) => waiting,
            Err(refused) => return Box::pin(fut::ready(Err(refused.into()))),
        };
        self.joining.insert(msg.username.clone(), msg.member.id);
        Box::pin(saved.into_actor(self).map(move |saved, dir, _| {
            let still_here = dir.joining.get(&msg.username) == Some(&msg.member.id);
            if still_here {
                dir.joining.remove(&msg.username);
            }
            let index = dir.finish_create(&msg.room, attempt, &saved)?;
            if !still_here {
                return Err(JoinRefused::Gone);
            }
            Ok(dir.join(msg, index, creating))
        }))
    }
}

/// A joined user's connection ended (ignored unless `conn` still holds the name).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveChat {
    /// The user.
    pub username: String,
    /// Its connection.
    pub conn: ConnId,
}

impl Handler<LeaveChat> for ChatDirectory {
    type Result = ();
    fn handle(&mut self, msg: LeaveChat, _: &mut Self::Context) {
        if self.joining.get(&msg.username) == Some(&msg.conn) {
            self.joining.remove(&msg.username);
            return;
        }
        if self.users.get(&msg.username).map(|u| u.conn) != Some(msg.conn) {
            return;
        }
        if let Some(user) = self.users.remove(&msg.username) {
            self.rooms[user.room].members.retain(|m| *m != msg.username);
        }
        self.lobby.do_send(LeaveLobby(msg.conn));
        metrics().chat.members.set(self.users.len() as i64);
    }
}

/// Why an operator could not remove a user from a chat room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoveRefused {
    /// No room has that name.
    #[error("no chat room has that name")]
    NoSuchRoom,
    /// The user is not in that room.
    #[error("no such user in that chat room")]
    NotInRoom,
}

/// An operator removes `username` from `room`. A chat user is always in
/// exactly one room, so removal ends its connection (the operator close
/// code, naming the room); the room then sees `user_leave` as for any
/// departure.
#[derive(Message)]
#[rtype(result = "Result<(), RemoveRefused>")]
pub struct RemoveChatMember {
    /// The room's name.
    pub room: String,
    /// The user's name.
    pub username: String,
}

impl Handler<RemoveChatMember> for ChatDirectory {
    type Result = Result<(), RemoveRefused>;
    fn handle(&mut self, msg: RemoveChatMember, _: &mut Self::Context) -> Self::Result {
        let room = *self
            .by_name
            .get(&msg.room)
            .ok_or(RemoveRefused::NoSuchRoom)?;
        let user = self
            .users
            .get(&msg.username)
            .filter(|user| user.room == room && user.disconnect.connected())
            .ok_or(RemoveRefused::NotInRoom)?;
        log::info!(
            "chat user {} removed from room {} by an operator",
            msg.username,
            msg.room
        );
        user.disconnect.do_send(Disconnect::by_operator(format!(
            "removed from room {} by an operator",
            msg.room
        )));
        Ok(())
    }
}

/// A user creates a room (and stays where it is). Answered once the store
/// has committed the room and `room_create` has been broadcast to every
/// chat user, or with why not.
#[derive(Message)]
#[rtype(result = "Result<(), CreateRefused>")]
pub struct CreateChatRoom {
    /// The valid room name.
    pub name: String,
    /// The creator.
    pub creator: String,
}

impl Handler<CreateChatRoom> for ChatDirectory {
    type Result = ResponseActFuture<Self, Result<(), CreateRefused>>;
    fn handle(&mut self, msg: CreateChatRoom, _: &mut Self::Context) -> Self::Result {
        if self.by_name.contains_key(&msg.name) || self.pending.contains_key(&msg.name) {
            return Box::pin(fut::ready(Err(CreateRefused::Exists(msg.name))));
        }
        let (attempt, saved) = match self.start_create(&msg.name, &msg.creator) {
            Ok(started) => started,
            Err(refused) => return Box::pin(fut::ready(Err(refused))),
        };
        Box::pin(
            saved.into_actor(self).map(move |saved, dir, _| {
                dir.finish_create(&msg.name, attempt, &saved).map(|_| ())
            }),
        )
    }
}

/// The room does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("room not found")]
pub struct RoomNotFound;

/// A user moves to another room; answers (old room, new room).
#[derive(Message)]
#[rtype(result = "Result<(Addr<Room>, Addr<Room>), RoomNotFound>")]
pub struct SwitchRoom {
    /// The user.
    pub username: String,
    /// Where to.
    pub to: String,
}

impl Handler<SwitchRoom> for ChatDirectory {
    type Result = Result<(Addr<Room>, Addr<Room>), RoomNotFound>;
    fn handle(&mut self, msg: SwitchRoom, _: &mut Self::Context) -> Self::Result {
        let to = *self.by_name.get(&msg.to).ok_or(RoomNotFound)?;
        let user = self.users.get_mut(&msg.username).ok_or(RoomNotFound)?;
        let from = std::mem::replace(&mut user.room, to);
        self.rooms[from].members.retain(|m| *m != msg.username);
        self.rooms[to].members.push(msg.username);
        Ok((self.rooms[from].addr.clone(), self.rooms[to].addr.clone()))
    }
}

/// The actor of a room, if it exists.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct FindChatRoom(pub String);

impl Handler<FindChatRoom> for ChatDirectory {
    type Result = Option<Addr<Room>>;
    fn handle(&mut self, FindChatRoom(name): FindChatRoom, _: &mut Self::Context) -> Self::Result {
        self.by_name.get(&name).map(|&i| self.rooms[i].addr.clone())
    }
}

/// The actor of a room, created with `creator` if missing; answered once
/// the room is committed (and `room_create` broadcast), or with why not.
#[derive(Message)]
#[rtype(result = "Result<Addr<Room>, CreateRefused>")]
pub struct EnsureRoom {
    /// The valid room name.
    pub name: String,
    /// Its creator if it has to be created.
    pub creator: String,
}

impl Handler<EnsureRoom> for ChatDirectory {
    type Result = ResponseActFuture<Self, Result<Addr<Room>, CreateRefused>>;
    fn handle(&mut self, msg: EnsureRoom, _: &mut Self::Context) -> Self::Result {
        if let Some(&index) = self.by_name.get(&msg.name) {
            return Box::pin(fut::ready(Ok(self.rooms[index].addr.clone())));
        }
        let (attempt, saved) = match self.pending_or_create(&msg.name, &msg.creator) {
            Ok(waiting) => waiting,
            Err(refused) => return Box::pin(fut::ready(Err(refused))),
        };
        Box::pin(saved.into_actor(self).map(move |saved, dir, _| {
            let index = dir.finish_create(&msg.name, attempt, &saved)?;
            Ok(dir.rooms[index].addr.clone())
        }))
    }
}

/// Every room with its members, `Global` first (`all_rooms`, `GET /chat/rooms`).
#[derive(Message)]
#[rtype(result = "Vec<RoomInfo>")]
pub struct ListRooms;

impl Handler<ListRooms> for ChatDirectory {
    type Result = Vec<RoomInfo>;
    fn handle(&mut self, _: ListRooms, _: &mut Self::Context) -> Self::Result {
        self.infos()
    }
}
