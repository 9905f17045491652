//! The rooms part of the registry: every permissioned room, and the
//! connections of every online user (an invite goes to all of them).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use uuid::Uuid;

use super::room::Room;
use super::StoredRoom;
use crate::connection::{ConnId, Deliver, Frames, MemberHandle};
use crate::metrics::metrics;
use crate::pool::ArbiterPool;
use crate::registry::Registry;
use crate::store::{SaveRoom, StoreHandle};

/// The rooms directory, held by the registry.
pub struct RoomsDirectory {
    rooms: HashMap<Uuid, Addr<Room>>,
    /// Creation order, for listings.
    order: Vec<Uuid>,
    online: HashMap<String, Vec<MemberHandle>>,
    pool: Arc<ArbiterPool>,
    store: StoreHandle,
    evict_after: u32,
}

impl RoomsDirectory {
    /// A directory of the stored rooms, each started as a room actor.
    pub(crate) fn new(
        stored: Vec<StoredRoom>,
        pool: Arc<ArbiterPool>,
        store: StoreHandle,
        evict_after: u32,
    ) -> Self {
        let mut directory = RoomsDirectory {
            rooms: HashMap::new(),
            order: Vec::new(),
            online: HashMap::new(),
            pool,
            store,
            evict_after,
        };
        for room in stored {
            match Uuid::parse_str(&room.room_id) {
                Ok(id) => directory.start(room, id),
                Err(_) => log::error!("stored room id {:?} is not a UUID; skipped", room.room_id),
            }
        }
        directory
    }

    fn start(&mut self, room: StoredRoom, id: Uuid) {
        let (store, evict_after) = (self.store.clone(), self.evict_after);
        let addr = Supervisor::start_in_arbiter(&self.pool.next(), move |_| {
            Room::new(room, id, evict_after, store)
        });
        self.rooms.insert(id, addr);
        self.order.push(id);
        metrics().rooms.rooms.set(self.rooms.len() as i64);
    }
}

/// Creates a room; `admins` (the creator, or none for the operator's API)
/// may invite to it when closed and kick. Answers its id and actor.
#[derive(Message)]
#[rtype(result = "(Uuid, Addr<Room>)")]
pub struct CreateRoom {
    /// Its name.
    pub name: String,
    /// Whether only invited users may enter.
    pub closed: bool,
    /// Its first admins.
    pub admins: Vec<String>,
}

impl Handler<CreateRoom> for Registry {
    type Result = MessageResult<CreateRoom>;
    fn handle(&mut self, msg: CreateRoom, _: &mut Self::Context) -> Self::Result {
        let dir = &mut self.rooms;
        let id = Uuid::new_v4();
        dir.store.do_send(SaveRoom {
            room_id: id.to_string(),
            name: msg.name.clone(),
            closed: msg.closed,
            admins: msg.admins.clone(),
        });
        let stored = StoredRoom {
            room_id: id.to_string(),
            name: msg.name,
            closed: msg.closed,
            reserved_message_id: 0,
            grants: msg
                .admins
                .into_iter()
                .map(|admin| (admin, super::Grant::Admin))
                .collect(),
        };
        dir.start(stored, id);
        MessageResult((id, dir.rooms[&id].clone()))
    }
}

/// The actor of a room, if it exists.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct FindRoom(pub Uuid);

impl Handler<FindRoom> for Registry {
    type Result = Option<Addr<Room>>;
    fn handle(&mut self, FindRoom(id): FindRoom, _: &mut Self::Context) -> Self::Result {
        self.rooms.rooms.get(&id).cloned()
    }
}

/// Every room's actor, in creation order.
#[derive(Message)]
#[rtype(result = "Vec<Addr<Room>>")]
pub struct AllRooms;

impl Handler<AllRooms> for Registry {
    type Result = Vec<Addr<Room>>;
    fn handle(&mut self, _: AllRooms, _: &mut Self::Context) -> Self::Result {
        let dir = &self.rooms;
        dir.order.iter().map(|id| dir.rooms[id].clone()).collect()
    }
}

/// A connection of `user` opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UserOnline {
    /// The user.
    pub user: String,
    /// The connection.
    pub member: MemberHandle,
}

impl Handler<UserOnline> for Registry {
    type Result = ();
    fn handle(&mut self, msg: UserOnline, _: &mut Self::Context) {
        self.rooms
            .online
            .entry(msg.user)
            .or_default()
            .push(msg.member);
    }
}

/// A connection of `user` closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UserOffline {
    /// The user.
    pub user: String,
    /// The connection.
    pub conn: ConnId,
}

impl Handler<UserOffline> for Registry {
    type Result = ();
    fn handle(&mut self, msg: UserOffline, _: &mut Self::Context) {
        if let Some(connections) = self.rooms.online.get_mut(&msg.user) {
            connections.retain(|m| m.id != msg.conn);
            if connections.is_empty() {
                self.rooms.online.remove(&msg.user);
            }
        }
    }
}

/// Sends a frame to every connection of a user, if online (invites).
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotifyUser {
    /// The recipient.
    pub user: String,
    /// The frame, encoded once.
    pub frame: Frames,
}

impl Handler<NotifyUser> for Registry {
    type Result = ();
    fn handle(&mut self, msg: NotifyUser, _: &mut Self::Context) {
        for member in self.rooms.online.get(&msg.user).into_iter().flatten() {
            if member.deliver.try_send(Deliver(msg.frame.clone())).is_err() {
                metrics()
                    .protocol(crate::Protocol::Rooms)
                    .dropped_slow
                    .inc();
            }
        }
    }
}
