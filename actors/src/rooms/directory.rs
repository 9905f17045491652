//! The rooms directory: every permissioned room, how many rooms each user
//! created, and the connections of every online user (an invite goes to all
//! of them). It is its own supervised actor, so looking up, creating and
//! inviting to rooms never queues behind another protocol's bookkeeping.
//!
//! A room exists once the store has committed it: [`CreateRoom`] answers
//! only after that, and a room the store refused is never started.
//!
//! Invites reach an online invitee through a [`FanOut`] of the user's
//! connections, so they follow the shared slow-consumer policy (bounded
//! outbox, drops counted, eviction). Invites not used yet live in the store
//! and are delivered again on each connect, right after the `session` frame,
//! until the invitee enters the room: while a new connection's pending
//! invites are being read, invites that arrive for its user are held and
//! delivered after them, unless the read already had them, so each invite
//! reaches the connection once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use uuid::Uuid;

use super::room::Room;
use super::store::{PendingInvites, SaveRoom};
use super::wire::Event;
use super::{Grant, Refusal, StoredRoom};
use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::FanOut;
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::pool::ArbiterPool;
use crate::store::{StoreError, StoreHandle};
use crate::Protocol;

/// The rooms directory. Runs supervised; its state survives a restart.
pub struct RoomsDirectory {
    rooms: HashMap<Uuid, Addr<Room>>,
    /// Creation order, for listings.
    order: Vec<Uuid>,
    /// Rooms each user created (including creations the store has not
    /// answered yet, so concurrent creations cannot pass the cap).
    created: HashMap<String, usize>,
    /// Each online user's connections that have had their pending invites.
    online: HashMap<String, FanOut>,
    /// Connections whose pending invites are being read.
    connecting: HashMap<ConnId, Connecting>,
    pool: Arc<ArbiterPool>,
    store: StoreHandle,
    evict_after: u32,
    _alive: ActorGauge,
}

/// A new connection whose pending invites are being read from the store.
struct Connecting {
    user: String,
    /// Invites that arrived meanwhile: (room, inviter, frame).
    held: Vec<(Uuid, String, Frames)>,
}

/// The `invite` frame for the invitee.
fn invite_frame(inviter: &str, room_id: Uuid) -> Frames {
    let event = Event::Invite {
        user_id: inviter,
        room_id,
    };
    Frames::One(event.encode().into())
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
            created: HashMap::new(),
            online: HashMap::new(),
            connecting: HashMap::new(),
            pool,
            store,
            evict_after,
            _alive: ActorGauge::new(ActorKind::RoomsDirectory),
        };
        for room in stored {
            match Uuid::parse_str(&room.room_id) {
                Ok(id) => {
                    if let Some(creator) = &room.creator {
                        *directory.created.entry(creator.clone()).or_default() += 1;
                    }
                    directory.start_room(room, id);
                }
                Err(_) => log::error!("stored room id {:?} is not a UUID; skipped", room.room_id),
            }
        }
        directory
    }

    /// Starts the supervised actor of the stored `room` on the pool.
    fn start_room(&mut self, room: StoredRoom, id: Uuid) {
        let (store, evict_after) = (self.store.clone(), self.evict_after);
        let addr = Supervisor::start_in_arbiter(&self.pool.next(), move |_| {
            Room::new(room, id, evict_after, store)
        });
        self.rooms.insert(id, addr);
        self.order.push(id);
        metrics().rooms.rooms.set(self.rooms.len() as i64);
    }

    /// Gives back a creation slot of `user` (its room was not created).
    fn release(&mut self, user: &str) {
        if let Some(made) = self.created.get_mut(user) {
            *made = made.saturating_sub(1);
            if *made == 0 {
                self.created.remove(user);
            }
        }
    }

    /// A connection's pending invites were read: it joins its user's
    /// connections and gets them, then the invites held meanwhile.
    fn online_now(
        &mut self,
        user: String,
        member: MemberHandle,
        read: Result<Result<Vec<(String, String)>, StoreError>, MailboxError>,
    ) {
        let conn = member.id;
        let Some(connecting) = self.connecting.remove(&conn) else {
            // Closed while its invites were being read.
            return;
        };
        let invites = match read {
            Ok(Ok(invites)) => invites,
            failed => {
                log::error!("reading the pending invites of {user} failed: {failed:?}");
                Vec::new()
            }
        };
        let evict_after = self.evict_after;
        let connections = self
            .online
            .entry(user)
            .or_insert_with(|| FanOut::new(Protocol::Rooms, evict_after));
        connections.join(member);
        let mut delivered = HashSet::new();
        for (room_id, inviter) in invites {
            let Ok(room) = Uuid::parse_str(&room_id) else {
                continue;
            };
            connections.send_to(conn, &invite_frame(&inviter, room));
            delivered.insert((room, inviter));
        }
        for (room, inviter, frame) in connecting.held {
            if !delivered.contains(&(room, inviter)) {
                connections.send_to(conn, &frame);
            }
        }
    }
}

impl Actor for RoomsDirectory {
    type Context = Context<Self>;
}

impl Supervised for RoomsDirectory {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("rooms directory restarting");
        metrics().actor_restarted(ActorKind::RoomsDirectory);
    }
}

/// Who creates a room over the WebSocket, and the cap on rooms per creator.
#[derive(Debug, Clone)]
pub struct Creator {
    /// The creating user, who becomes the room's admin.
    pub user_id: String,
    /// `rooms.max_rooms_per_creator`.
    pub max_rooms: usize,
}

/// Creates a room once the store has committed it; `admins` (the creator,
/// or those the operator names) may invite to it when closed and kick.
/// Answers its id and actor, or why it was not created.
#[derive(Message)]
#[rtype(result = "Result<(Uuid, Addr<Room>), Refusal>")]
pub struct CreateRoom {
    /// Its name.
    pub name: String,
    /// Whether only invited users may enter.
    pub closed: bool,
    /// Its first admins.
    pub admins: Vec<String>,
    /// The user creating it (none: the operator's API, which has no cap).
    pub creator: Option<Creator>,
}

impl Handler<CreateRoom> for RoomsDirectory {
    type Result = ResponseActFuture<Self, Result<(Uuid, Addr<Room>), Refusal>>;
    fn handle(&mut self, msg: CreateRoom, _: &mut Self::Context) -> Self::Result {
        if let Some(Creator { user_id, max_rooms }) = &msg.creator {
            let made = self.created.entry(user_id.clone()).or_default();
            if *made >= *max_rooms {
                metrics().limit_reached(Protocol::Rooms, "max_rooms_per_creator");
                return Box::pin(fut::ready(Err(Refusal::TooManyRoomsCreated(*max_rooms))));
            }
            // Held while the store writes; given back if it refuses.
            *made += 1;
        }
        let creator = msg.creator.map(|c| c.user_id);
        let id = Uuid::new_v4();
        let saved = self.store.send(SaveRoom {
            room_id: id.to_string(),
            name: msg.name.clone(),
            closed: msg.closed,
            admins: msg.admins.clone(),
            creator: creator.clone(),
        });
        let stored = StoredRoom {
            room_id: id.to_string(),
            name: msg.name,
            closed: msg.closed,
            reserved_message_id: 0,
            creator: creator.clone(),
            grants: msg
                .admins
                .into_iter()
                .map(|admin| (admin, Grant::Admin))
                .collect(),
            pending_invites: Vec::new(),
        };
        Box::pin(
            saved
                .into_actor(self)
                .map(move |saved, directory, _| match saved {
                    Ok(Ok(())) => {
                        directory.start_room(stored, id);
                        Ok((id, directory.rooms[&id].clone()))
                    }
                    failed => {
                        log::error!("room {id} not created: saving it failed: {failed:?}");
                        if let Some(user) = &creator {
                            directory.release(user);
                        }
                        Err(Refusal::RoomNotSaved)
                    }
                }),
        )
    }
}

/// The actor of a room, if it exists.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct FindRoom(pub Uuid);

impl Handler<FindRoom> for RoomsDirectory {
    type Result = Option<Addr<Room>>;
    fn handle(&mut self, FindRoom(id): FindRoom, _: &mut Self::Context) -> Self::Result {
        self.rooms.get(&id).cloned()
    }
}

/// Every room's actor, in creation order.
#[derive(Message)]
#[rtype(result = "Vec<Addr<Room>>")]
pub struct AllRooms;

impl Handler<AllRooms> for RoomsDirectory {
    type Result = Vec<Addr<Room>>;
    fn handle(&mut self, _: AllRooms, _: &mut Self::Context) -> Self::Result {
        self.order.iter().map(|id| self.rooms[id].clone()).collect()
    }
}

/// A connection of `user` opened: its pending invites are read from the
/// store and delivered to it, then it receives invites as they are made.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UserOnline {
    /// The user.
    pub user: String,
    /// The connection.
    pub member: MemberHandle,
}

impl Handler<UserOnline> for RoomsDirectory {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: UserOnline, _: &mut Self::Context) -> Self::Result {
        self.connecting.insert(
            msg.member.id,
            Connecting {
                user: msg.user.clone(),
                held: Vec::new(),
            },
        );
        let read = self.store.send(PendingInvites(msg.user.clone()));
        Box::pin(read.into_actor(self).map(move |read, directory, _| {
            directory.online_now(msg.user, msg.member, read);
        }))
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

impl Handler<UserOffline> for RoomsDirectory {
    type Result = ();
    fn handle(&mut self, msg: UserOffline, _: &mut Self::Context) {
        self.connecting.remove(&msg.conn);
        if let Some(connections) = self.online.get_mut(&msg.user) {
            connections.leave(msg.conn);
            if connections.is_empty() {
                self.online.remove(&msg.user);
            }
        }
    }
}

/// An invite was committed: `invite {user_id: inviter, room_id}` to every
/// connection of the invitee, through the slow-consumer policy.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverInvite {
    /// The invitee.
    pub user: String,
    /// The room.
    pub room_id: Uuid,
    /// Who invited.
    pub inviter: String,
}

impl Handler<DeliverInvite> for RoomsDirectory {
    type Result = ();
    fn handle(&mut self, msg: DeliverInvite, _: &mut Self::Context) {
        let frame = invite_frame(&msg.inviter, msg.room_id);
        if let Some(connections) = self.online.get_mut(&msg.user) {
            connections.broadcast(&frame);
            if connections.is_empty() {
                self.online.remove(&msg.user);
            }
        }
        for connecting in self.connecting.values_mut() {
            if connecting.user == msg.user {
                connecting
                    .held
                    .push((msg.room_id, msg.inviter.clone(), frame.clone()));
            }
        }
    }
}
