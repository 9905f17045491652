//! The chat's part of the registry: unique usernames, the rooms in creation
//! order (`Global` first, never deleted) and who is in which room.
//!
//! Joining, switching and creating go through here, so names are claimed
//! atomically and `all_rooms` is one consistent snapshot; the room actors
//! hold the members' connections and do the broadcasting.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use uuid::Uuid;

use super::room::Room;
use super::wire::{RoomInfo, ServerEvent};
use super::{ChatSettings, StoredRoom};
use crate::connection::{ConnId, Disconnect, Frames, MemberHandle};
use crate::lobby::{Announce, Enter, Exit, Lobby};
use crate::metrics::metrics;
use crate::pool::ArbiterPool;
use crate::registry::Registry;
use crate::store::{SaveChatRoom, StoreHandle};

/// The chat's directory, held by the registry.
pub struct ChatDirectory {
    users: HashMap<String, ChatUser>,
    /// Every room, `Global` first, then in creation order.
    rooms: Vec<RoomEntry>,
    by_name: HashMap<String, usize>,
    lobby: Addr<Lobby>,
    pool: Arc<ArbiterPool>,
    store: StoreHandle,
    settings: ChatSettings,
    evict_after: u32,
}

struct ChatUser {
    conn: ConnId,
    room: usize,
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
            rooms: Vec::new(),
            by_name: HashMap::new(),
            lobby,
            pool,
            store,
            settings,
            evict_after,
        };
        for room in stored {
            directory.add_room(room);
        }
        directory
    }

    fn add_room(&mut self, room: StoredRoom) -> usize {
        let (keep, evict_after, store) = (
            self.settings.history_limit,
            self.evict_after,
            self.store.clone(),
        );
        let (name, history) = (room.name.clone(), room.history);
        let addr = Supervisor::start_in_arbiter(&self.pool.next(), move |_| {
            Room::new(name, history, keep, evict_after, store)
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

    /// Creates a room, stores it and announces `room_create` (showing
    /// `creator` as its only user, as the reference does) to the lobby.
    fn create(&mut self, name: &str, creator: &str) -> usize {
        self.store.do_send(SaveChatRoom {
            name: name.to_owned(),
            creator: creator.to_owned(),
        });
        let index = self.add_room(StoredRoom {
            name: name.to_owned(),
            creator: creator.to_owned(),
            history: Vec::new(),
        });
        let room = RoomInfo {
            room_name: name.to_owned(),
            room_creator: creator.to_owned(),
            connected_users: vec![creator.to_owned()],
        };
        let frame = ServerEvent::RoomCreate { room: &room }.encode();
        self.lobby.do_send(Announce(Frames::One(frame.into())));
        log::info!("chat room {name} created by {creator}");
        index
    }

    fn infos(&self) -> Vec<RoomInfo> {
        self.rooms.iter().map(RoomEntry::info).collect()
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

/// A user with a valid name joins `room` (created if missing).
#[derive(Message)]
#[rtype(result = "Result<Joined, NameTaken>")]
pub struct JoinChat {
    /// The trimmed, valid username.
    pub username: String,
    /// The valid room name.
    pub room: String,
    /// The user's connection.
    pub member: MemberHandle,
}

impl Handler<JoinChat> for Registry {
    type Result = Result<Joined, NameTaken>;
    fn handle(&mut self, msg: JoinChat, _: &mut Self::Context) -> Self::Result {
        let dir = &mut self.chat;
        if dir.users.contains_key(&msg.username) {
            return Err(NameTaken);
        }
        let (index, created) = match dir.by_name.get(&msg.room) {
            Some(&index) => (index, None),
            None => {
                let index = dir.create(&msg.room, &msg.username);
                (index, Some(dir.rooms[index].info()))
            }
        };
        let room = &mut dir.rooms[index];
        room.members.push(msg.username.clone());
        let addr = room.addr.clone();
        dir.users.insert(
            msg.username,
            ChatUser {
                conn: msg.member.id,
                room: index,
            },
        );
        dir.lobby.do_send(Enter(msg.member));
        metrics().chat.members.set(dir.users.len() as i64);
        let created = created.map(|mut info| {
            info.connected_users = dir.rooms[index].members.clone();
            info
        });
        Ok(Joined {
            user_id: Uuid::new_v4(),
            rooms: dir.infos(),
            created,
            room: addr,
        })
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

impl Handler<LeaveChat> for Registry {
    type Result = ();
    fn handle(&mut self, msg: LeaveChat, _: &mut Self::Context) {
        let dir = &mut self.chat;
        if dir.users.get(&msg.username).map(|u| u.conn) != Some(msg.conn) {
            return;
        }
        if let Some(user) = dir.users.remove(&msg.username) {
            dir.rooms[user.room].members.retain(|m| *m != msg.username);
        }
        dir.lobby.do_send(Exit(msg.conn));
        metrics().chat.members.set(dir.users.len() as i64);
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

impl Handler<RemoveChatMember> for Registry {
    type Result = Result<(), RemoveRefused>;
    fn handle(&mut self, msg: RemoveChatMember, _: &mut Self::Context) -> Self::Result {
        let dir = &self.chat;
        let room = *dir
            .by_name
            .get(&msg.room)
            .ok_or(RemoveRefused::NoSuchRoom)?;
        let user = dir
            .users
            .get(&msg.username)
            .filter(|user| user.room == room)
            .ok_or(RemoveRefused::NotInRoom)?;
        let connection = self
            .connections
            .get(&user.conn)
            .ok_or(RemoveRefused::NotInRoom)?;
        log::info!(
            "chat user {} removed from room {} by an operator",
            msg.username,
            msg.room
        );
        connection
            .disconnect
            .do_send(Disconnect::by_operator(format!(
                "removed from room {} by an operator",
                msg.room
            )));
        Ok(())
    }
}

/// The room name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("room exists")]
pub struct RoomExists;

/// A user creates a room (and stays where it is).
#[derive(Message)]
#[rtype(result = "Result<(), RoomExists>")]
pub struct CreateRoom {
    /// The valid room name.
    pub name: String,
    /// The creator.
    pub creator: String,
}

impl Handler<CreateRoom> for Registry {
    type Result = Result<(), RoomExists>;
    fn handle(&mut self, msg: CreateRoom, _: &mut Self::Context) -> Self::Result {
        if self.chat.by_name.contains_key(&msg.name) {
            return Err(RoomExists);
        }
        self.chat.create(&msg.name, &msg.creator);
        Ok(())
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

impl Handler<SwitchRoom> for Registry {
    type Result = Result<(Addr<Room>, Addr<Room>), RoomNotFound>;
    fn handle(&mut self, msg: SwitchRoom, _: &mut Self::Context) -> Self::Result {
        let dir = &mut self.chat;
        let to = *dir.by_name.get(&msg.to).ok_or(RoomNotFound)?;
        let user = dir.users.get_mut(&msg.username).ok_or(RoomNotFound)?;
        let from = std::mem::replace(&mut user.room, to);
        dir.rooms[from].members.retain(|m| *m != msg.username);
        dir.rooms[to].members.push(msg.username);
        Ok((dir.rooms[from].addr.clone(), dir.rooms[to].addr.clone()))
    }
}

/// The actor of a room, if it exists.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct FindRoom(pub String);

impl Handler<FindRoom> for Registry {
    type Result = Option<Addr<Room>>;
    fn handle(&mut self, FindRoom(name): FindRoom, _: &mut Self::Context) -> Self::Result {
        let dir = &self.chat;
        dir.by_name.get(&name).map(|&i| dir.rooms[i].addr.clone())
    }
}

/// The actor of a room, created (and announced) with `creator` if missing.
#[derive(Message)]
#[rtype(result = "Addr<Room>")]
pub struct EnsureRoom {
    /// The valid room name.
    pub name: String,
    /// Its creator if it has to be created.
    pub creator: String,
}

impl Handler<EnsureRoom> for Registry {
    type Result = MessageResult<EnsureRoom>;
    fn handle(&mut self, msg: EnsureRoom, _: &mut Self::Context) -> Self::Result {
        let dir = &mut self.chat;
        let index = match dir.by_name.get(&msg.name) {
            Some(&index) => index,
            None => dir.create(&msg.name, &msg.creator),
        };
        MessageResult(dir.rooms[index].addr.clone())
    }
}

/// Every room with its members, `Global` first (`all_rooms`, `GET /chat/rooms`).
#[derive(Message)]
#[rtype(result = "Vec<RoomInfo>")]
pub struct ListRooms;

impl Handler<ListRooms> for Registry {
    type Result = Vec<RoomInfo>;
    fn handle(&mut self, _: ListRooms, _: &mut Self::Context) -> Self::Result {
        self.chat.infos()
    }
}
