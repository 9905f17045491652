//! The Room actor: one permissioned room.
//!
//! It knows who is in it (per connection: a user may enter from several),
//! who is an admin, invited or banned, and hands out message ids. Every
//! event is encoded once and queued to the members through the fan-out
//! helper. Grants are written to the store as they change; messages never
//! are.
//!
//! A grant change (invite, ban) is acknowledged only once the store has
//! committed it: the room hands the write to the store actor and handles
//! nothing else until the store answers, then changes its own state and
//! sends the frames that acknowledge it (`kick` and `exit`; the caller's
//! `invite`). A write the store refuses changes nothing and answers an
//! internal error. The room itself never touches the disk.
//!
//! A member's connection queues its in-room commands with
//! [`QueuedCommand`] and does not wait for each answer: the room's mailbox
//! keeps them in order, and a refusal comes back as the answer.
//!
//! An invite stays pending (stored, and delivered to the invitee on each
//! connect) until the invitee enters the room or is banned from it; a room
//! holds at most `rooms.max_pending_invites` of them.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::store::{ReserveMessageIds, SaveGrant, SaveInvite, UseInvite};
use super::wire::Event;
use super::{Grant, Refusal, StoredRoom};
use crate::admin::SERVER_NAME;
use crate::connection::{ConnId, Deliver, Frames, MemberHandle};
use crate::fanout::FanOut;
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::outbox::Outbox;
use crate::store::StoreHandle;
use crate::Protocol;

/// Message ids reserved in the store at a time: one durable write per this
/// many messages.
const ID_BLOCK: u64 = 1000;

/// One permissioned room. Runs supervised on the arbiter pool.
pub struct Room {
    id: Uuid,
    name: String,
    closed: bool,
    admins: HashSet<String>,
    invited: HashSet<String>,
    banned: HashSet<String>,
    /// Invitees who have not entered since their invite.
    pending: HashSet<String>,
    members: FanOut,
    /// The user of each connection in the room.
    present: HashMap<ConnId, String>,
    /// The id the next message gets.
    next_id: u64,
    /// Ids up to this one are reserved in the store.
    reserved: u64,
    store: StoreHandle,
    _alive: ActorGauge,
}

impl Room {
    /// The room as stored.
    pub fn new(stored: StoredRoom, id: Uuid, evict_after: u32, store: StoreHandle) -> Self {
        let mut room = Room {
            id,
            name: stored.name,
            closed: stored.closed,
            admins: HashSet::new(),
            invited: HashSet::new(),
            banned: HashSet::new(),
            pending: stored
                .pending_invites
                .into_iter()
                .map(|(invitee, _)| invitee)
                .collect(),
            members: FanOut::new(Protocol::Rooms, evict_after),
            present: HashMap::new(),
            next_id: stored.reserved_message_id + 1,
            reserved: stored.reserved_message_id,
            store,
            _alive: ActorGauge::new(ActorKind::Room),
        };
        for (user, grant) in stored.grants {
            room.grants(grant).insert(user);
        }
        room
    }

    fn grants(&mut self, grant: Grant) -> &mut HashSet<String> {
        match grant {
            Grant::Admin => &mut self.admins,
            Grant::Invite => &mut self.invited,
            Grant::Ban => &mut self.banned,
        }
    }

    fn has(&self, user: &str, grant: Grant) -> bool {
        match grant {
            Grant::Admin => self.admins.contains(user),
            Grant::Invite => self.invited.contains(user),
            Grant::Ban => self.banned.contains(user),
        }
    }

    /// Writes the grant changes (`(user, grant, given)`) that change
    /// something to the store, in order, and applies each one the store
    /// committed. Resolves to an internal error if any write failed.
    fn save_grants(
        &mut self,
        changes: Vec<(String, Grant, bool)>,
    ) -> ResponseActFuture<Self, Result<(), Refusal>> {
        let writes: Vec<_> = changes
            .into_iter()
            .filter(|(user, grant, on)| self.has(user, *grant) != *on)
            .map(|(user, grant, on)| {
                // Queued with the store now, so the writes keep this order.
                let saved = self.store.send(SaveGrant {
                    room_id: self.id.to_string(),
                    user_id: user.clone(),
                    grant,
                    on,
                });
                (user, grant, on, saved)
            })
            .collect();
        let committed = async move {
            let mut answers = Vec::with_capacity(writes.len());
            for (user, grant, on, saved) in writes {
                answers.push((user, grant, on, saved.await));
            }
            answers
        };
        Box::pin(committed.into_actor(self).map(|answers, room, _| {
            let mut outcome = Ok(());
            for (user, grant, on, saved) in answers {
                match saved {
                    Ok(Ok(())) if on => {
                        room.grants(grant).insert(user);
                    }
                    Ok(Ok(())) => {
                        if grant == Grant::Invite {
                            room.pending.remove(&user);
                        }
                        room.grants(grant).remove(&user);
                    }
                    failed => {
                        log::error!(
                            "room {}: saving {} {} for {user} failed: {failed:?}",
                            room.id,
                            if on { "grant" } else { "revocation of" },
                            grant.as_str()
                        );
                        outcome = Err(Refusal::Internal);
                    }
                }
            }
            outcome
        }))
    }

    fn broadcast(&mut self, event: Event<'_>) {
        let removed = self.members.broadcast(&Frames::One(event.encode().into()));
        for conn in removed {
            if self.present.remove(&conn).is_some() {
                metrics().rooms.members.dec();
            }
        }
    }

    fn remove(&mut self, conn: ConnId) {
        self.members.leave(conn);
        if self.present.remove(&conn).is_some() {
            metrics().rooms.members.dec();
        }
    }

    fn publish(&mut self, user: &str, content: &str, time: i64) -> usize {
        let message_id = self.next_id;
        self.next_id += 1;
        let room_id = self.id;
        self.broadcast(Event::Message {
            time,
            content,
            user_id: user,
            message_id,
            room_id,
        });
        metrics().rooms.messages.inc();
        self.members.len()
    }
}

impl Actor for Room {
    type Context = Context<Self>;
}

impl Supervised for Room {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("room {} restarting", self.id);
        metrics().actor_restarted(ActorKind::Room);
    }
}

/// What an in-room command came to: decided at once, or once the store
/// has answered (the room handles nothing else until then).
pub enum Outcome<T> {
    /// Decided while handling the command.
    Now(Result<T, Refusal>),
    /// Decided after a store round trip.
    Later(ResponseActFuture<Room, Result<T, Refusal>>),
}

impl<T: 'static> Outcome<T> {
    /// As the response of a plain [`Handler`].
    fn respond(self) -> AtomicResponse<Room, Result<T, Refusal>> {
        match self {
            Outcome::Now(result) => AtomicResponse::new(Box::pin(fut::ready(result))),
            Outcome::Later(later) => AtomicResponse::new(later),
        }
    }
}

/// A command a member's connection queues in a room with [`QueuedCommand`].
pub trait InRoomCommand: Message<Result = Result<(), Refusal>> + Send + 'static {
    /// Handles the command in `room`.
    fn apply(self, room: &mut Room) -> Outcome<()>;
}

/// An in-room command from a connection, which does not wait for it.
///
/// The connection queues its commands with `do_send`, which always queues
/// at once (a `send` to a busy room holds its message back until polled, so
/// a later command could overtake it), and goes on reading. The room's
/// mailbox keeps them in order, and the room queues a refusal to the
/// connection itself, in its place among the room's frames to it; `reply`
/// then tells the connection the command is done.
pub struct QueuedCommand<M> {
    /// The command.
    pub command: M,
    /// Where a refusal goes: the connection's own queue.
    pub requester: Outbox,
    /// Told when the command is done.
    pub reply: oneshot::Sender<Answer>,
}

/// How a [`QueuedCommand`] ended, for the connection that queued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It was carried out.
    Done,
    /// It was refused, and the `error` is queued to the connection.
    Refused,
    /// It was refused, and the connection's queue was full: the connection
    /// writes the `error` itself.
    RefusedUnqueued(Refusal),
}

impl<M> Message for QueuedCommand<M> {
    type Result = ();
}

impl<M: InRoomCommand> Handler<QueuedCommand<M>> for Room {
    type Result = ();
    fn handle(&mut self, queued: QueuedCommand<M>, ctx: &mut Self::Context) {
        let QueuedCommand {
            command,
            requester,
            reply,
        } = queued;
        match command.apply(self) {
            Outcome::Now(result) => answer(&requester, reply, result),
            Outcome::Later(later) => {
                ctx.wait(later.map(move |result, _, _| answer(&requester, reply, result)));
            }
        }
    }
}

/// Queues a refusal to the connection that asked, then tells it the
/// command is done. A connection that is gone is not answered.
fn answer(requester: &Outbox, reply: oneshot::Sender<Answer>, result: Result<(), Refusal>) {
    let answer = match result {
        Ok(()) => Answer::Done,
        Err(refusal) => {
            refusal.record();
            let error = Event::Error {
                message: &refusal.to_string(),
            };
            let frame = Deliver(Frames::One(error.encode().into()));
            match requester.try_send(frame) {
                Ok(()) => Answer::Refused,
                Err(_) => Answer::RefusedUnqueued(refusal),
            }
        }
    };
    let _ = reply.send(answer);
}

/// A connection enters: `enter` to everyone in the room, the newcomer included.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub struct EnterRoom {
    /// The connection.
    pub member: MemberHandle,
    /// Its user.
    pub user: String,
}

impl Handler<EnterRoom> for Room {
    type Result = Result<(), Refusal>;
    fn handle(&mut self, msg: EnterRoom, _: &mut Self::Context) -> Self::Result {
        if self.banned.contains(&msg.user) {
            return Err(Refusal::Banned);
        }
        if self.present.contains_key(&msg.member.id) {
            return Err(Refusal::AlreadyIn);
        }
        let allowed =
            !self.closed || self.admins.contains(&msg.user) || self.invited.contains(&msg.user);
        if !allowed {
            return Err(Refusal::Closed);
        }
        if self.pending.remove(&msg.user) {
            // Used: no longer delivered on connect. Not awaited: if the store
            // refuses, the invite is only delivered again, harmlessly.
            self.store.do_send(UseInvite {
                room_id: self.id.to_string(),
                user_id: msg.user.clone(),
            });
        }
        self.present.insert(msg.member.id, msg.user.clone());
        metrics().rooms.members.inc();
        self.members.join(msg.member);
        let room_id = self.id;
        self.broadcast(Event::Enter {
            user_id: &msg.user,
            room_id,
        });
        Ok(())
    }
}

/// A connection leaves: `exit` to everyone in the room, the leaver included
/// (unless its connection is closing).
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub struct ExitRoom {
    /// The connection.
    pub conn: ConnId,
    /// Whether the connection is closed already.
    pub closing: bool,
}

impl Handler<ExitRoom> for Room {
    type Result = AtomicResponse<Self, Result<(), Refusal>>;
    fn handle(&mut self, msg: ExitRoom, _: &mut Self::Context) -> Self::Result {
        msg.apply(self).respond()
    }
}

impl InRoomCommand for ExitRoom {
    fn apply(self, room: &mut Room) -> Outcome<()> {
        let Some(user) = room.present.get(&self.conn).cloned() else {
            return Outcome::Now(Err(Refusal::NotInRoom));
        };
        // A closing connection cannot be told; an open one gets its `exit`
        // as the acknowledgement.
        if self.closing {
            room.remove(self.conn);
        }
        let room_id = room.id;
        room.broadcast(Event::Exit {
            user_id: &user,
            room_id,
        });
        room.remove(self.conn);
        Outcome::Now(Ok(()))
    }
}

/// A message to the room: a new id, then to everyone in it, the sender
/// included.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub struct PostMessage {
    /// The sender's connection.
    pub conn: ConnId,
    /// What it says.
    pub content: String,
    /// When (UNIX milliseconds).
    pub time: i64,
}

impl InRoomCommand for PostMessage {
    fn apply(self, room: &mut Room) -> Outcome<()> {
        let Some(user) = room.present.get(&self.conn).cloned() else {
            return Outcome::Now(Err(Refusal::NotInRoom));
        };
        match room.say(user, self.content, self.time) {
            Outcome::Now(said) => Outcome::Now(said.map(drop)),
            Outcome::Later(said) => Outcome::Later(Box::pin(said.map(|said, _, _| said.map(drop)))),
        }
    }
}

/// A message the server publishes into the room (the publish API), from
/// [`SERVER_NAME`], stamped now and numbered like any other; answers how
/// many members it was handed to.
#[derive(Message)]
#[rtype(result = "Result<usize, Refusal>")]
pub struct ServerSay {
    /// What it says.
    pub content: String,
}

impl Handler<ServerSay> for Room {
    type Result = AtomicResponse<Self, Result<usize, Refusal>>;
    fn handle(&mut self, msg: ServerSay, _: &mut Self::Context) -> Self::Result {
        self.say(SERVER_NAME.to_owned(), msg.content, super::now_ms())
            .respond()
    }
}

impl Room {
    /// Publishes a message from `user` under the next id, reserving a new
    /// block of ids durably first when the reserved ones are spent (the room
    /// handles nothing else until then). Answers how many members got it.
    fn say(&mut self, user: String, content: String, time: i64) -> Outcome<usize> {
        if self.next_id <= self.reserved {
            return Outcome::Now(Ok(self.publish(&user, &content, time)));
        }
        let up_to = self.reserved + ID_BLOCK;
        let reserve = self.store.send(ReserveMessageIds {
            room_id: self.id.to_string(),
            up_to,
        });
        Outcome::Later(Box::pin(reserve.into_actor(self).map(
            move |reserved, room, _| match reserved {
                Ok(Ok(())) => {
                    room.reserved = up_to;
                    Ok(room.publish(&user, &content, time))
                }
                other => {
                    log::error!("room {}: reserving message ids failed: {other:?}", room.id);
                    Err(Refusal::Internal)
                }
            },
        )))
    }
}

/// A read receipt: `read` to everyone in the room, for a message id the
/// room has handed out: `1 ..= next_id - 1`. Within a process that is
/// exactly the ids issued; after a restart `next_id` starts one past the
/// reservation stored before, which is the tightest bound the store knows
/// (an earlier process may have issued any id up to it, and none above).
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub struct MarkRead {
    /// The reader's connection.
    pub conn: ConnId,
    /// The message read.
    pub message_id: u64,
}

impl InRoomCommand for MarkRead {
    fn apply(self, room: &mut Room) -> Outcome<()> {
        let Some(user) = room.present.get(&self.conn).cloned() else {
            return Outcome::Now(Err(Refusal::NotInRoom));
        };
        if self.message_id == 0 || self.message_id >= room.next_id {
            return Outcome::Now(Err(Refusal::UnknownMessage));
        }
        let room_id = room.id;
        room.broadcast(Event::Read {
            message_id: self.message_id,
            user_id: &user,
            room_id,
        });
        Outcome::Now(Ok(()))
    }
}

/// `by` invites `user`: anyone may to an open room, only admins to a closed
/// one. The invite is pending until `user` enters (unless `user` is in the
/// room now); a room holds at most `max_pending` pending invites. Answered
/// once committed; the caller then delivers the `invite` to the invitee.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub struct Invite {
    /// The inviter.
    pub by: String,
    /// The invitee.
    pub user: String,
    /// `rooms.max_pending_invites`.
    pub max_pending: usize,
}

impl InRoomCommand for Invite {
    fn apply(self, room: &mut Room) -> Outcome<()> {
        let msg = self;
        let refused = |refusal| Outcome::Now(Err(refusal));
        if room.closed && !room.admins.contains(&msg.by) {
            return refused(Refusal::NotAdmin);
        }
        if room.banned.contains(&msg.user) {
            return refused(Refusal::TargetBanned);
        }
        let pending = !room.present.values().any(|user| *user == msg.user);
        if pending && !room.pending.contains(&msg.user) && room.pending.len() >= msg.max_pending {
            metrics().limit_reached(Protocol::Rooms, "max_pending_invites");
            return refused(Refusal::TooManyPendingInvites(msg.max_pending));
        }
        let saved = room.store.send(SaveInvite {
            room_id: room.id.to_string(),
            user_id: msg.user.clone(),
            inviter: msg.by,
            pending,
        });
        Outcome::Later(Box::pin(saved.into_actor(room).map(
            move |saved, room, _| match saved {
                Ok(Ok(())) => {
                    if pending {
                        room.pending.insert(msg.user.clone());
                    }
                    room.invited.insert(msg.user);
                    Ok(())
                }
                failed => {
                    log::error!(
                        "room {}: saving the invite of {} failed: {failed:?}",
                        room.id,
                        msg.user
                    );
                    Err(Refusal::Internal)
                }
            },
        )))
    }
}

/// An admin or an operator kicks `user` out: each of its connections in
/// the room gets `kick` and leaves at once, the rest of the room gets
/// `exit`. A permanent kick is a ban (and ends any invite), committed to the
/// store before anyone is told.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub struct Kick {
    /// Who kicks.
    pub by: Kicker,
    /// Who is kicked.
    pub user: String,
    /// Shown to the kicked user.
    pub message: Option<String>,
    /// A ban.
    pub permanent: bool,
}

/// Who kicks someone out of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kicker {
    /// A user, who must be one of the room's admins.
    User(String),
    /// An operator through the admin API: no grant needed, but the user
    /// must be in the room (there is nobody to kick otherwise).
    Operator,
}

impl Handler<Kick> for Room {
    type Result = AtomicResponse<Self, Result<(), Refusal>>;
    fn handle(&mut self, msg: Kick, _: &mut Self::Context) -> Self::Result {
        msg.apply(self).respond()
    }
}

impl InRoomCommand for Kick {
    fn apply(self, room: &mut Room) -> Outcome<()> {
        let refused = match &self.by {
            Kicker::User(admin) if !room.admins.contains(admin) => Some(Refusal::NotAdmin),
            Kicker::Operator if !room.present.values().any(|u| *u == self.user) => {
                Some(Refusal::TargetNotInRoom)
            }
            _ => None,
        };
        if let Some(refusal) = refused {
            return Outcome::Now(Err(refusal));
        }
        let changes = if self.permanent {
            vec![
                (self.user.clone(), Grant::Ban, true),
                (self.user.clone(), Grant::Invite, false),
            ]
        } else {
            Vec::new()
        };
        Outcome::Later(Box::pin(room.save_grants(changes).map(
            move |saved, room, _| {
                saved?;
                room.kick_out(&self);
                Ok(())
            },
        )))
    }
}

impl Room {
    /// Sends `kick` to each connection of the kicked user and `exit` to the
    /// rest of the room.
    fn kick_out(&mut self, msg: &Kick) {
        let kicked: Vec<ConnId> = self
            .present
            .iter()
            .filter(|(_, user)| **user == msg.user)
            .map(|(conn, _)| *conn)
            .collect();
        if kicked.is_empty() {
            return;
        }
        let notice = Frames::One(
            Event::Kick {
                room_id: self.id,
                message: msg.message.as_deref(),
                permanent: msg.permanent,
            }
            .encode()
            .into(),
        );
        for conn in kicked {
            self.members.send_to(conn, &notice);
            self.remove(conn);
        }
        let room_id = self.id;
        self.broadcast(Event::Exit {
            user_id: &msg.user,
            room_id,
        });
    }
}

/// What `GET /api/rooms` shows of a room.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSummary {
    /// Its id.
    pub room_id: Uuid,
    /// Its name.
    pub name: String,
    /// Whether only invited users may enter.
    pub closed: bool,
    /// The users in it now, by id.
    pub members: Vec<String>,
}

/// The room as `GET /api/rooms` shows it.
#[derive(Message)]
#[rtype(result = "RoomSummary")]
pub struct DescribeRoom;

impl Handler<DescribeRoom> for Room {
    type Result = MessageResult<DescribeRoom>;
    fn handle(&mut self, _: DescribeRoom, _: &mut Self::Context) -> Self::Result {
        let mut members: Vec<String> = self.present.values().cloned().collect();
        members.sort();
        members.dedup();
        MessageResult(RoomSummary {
            room_id: self.id,
            name: self.name.clone(),
            closed: self.closed,
            members,
        })
    }
}

/// Whether a connection is (still) in the room: how a member at its room
/// limit learns which of its rooms have dropped it (kick, slow consumer).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsMember(pub ConnId);

impl Handler<IsMember> for Room {
    type Result = bool;
    fn handle(&mut self, IsMember(conn): IsMember, _: &mut Self::Context) -> bool {
        self.present.contains_key(&conn)
    }
}

/// An operator lifts `user`'s ban (the admin API's unban): the stored ban
/// row is deleted first, and the room forgets the ban only once the store
/// has committed that. The user may then enter an open room, or be invited
/// again (a ban also ended its invite, so a closed room needs a new one).
/// Answers whether there was a ban to lift.
#[derive(Message)]
#[rtype(result = "Result<bool, Refusal>")]
pub struct LiftBan {
    /// The banned user.
    pub user: String,
}

impl Handler<LiftBan> for Room {
    type Result = AtomicResponse<Self, Result<bool, Refusal>>;
    fn handle(&mut self, msg: LiftBan, _: &mut Self::Context) -> Self::Result {
        if !self.banned.contains(&msg.user) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(false))));
        }
        let lifted = self.save_grants(vec![(msg.user, Grant::Ban, false)]);
        AtomicResponse::new(Box::pin(lifted.map(|saved, _, _| saved.map(|()| true))))
    }
}

/// The users banned from the room, sorted (the console's room view).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListBans;

impl Handler<ListBans> for Room {
    type Result = MessageResult<ListBans>;
    fn handle(&mut self, _: ListBans, _: &mut Self::Context) -> Self::Result {
        let mut banned: Vec<String> = self.banned.iter().cloned().collect();
        banned.sort();
        MessageResult(banned)
    }
}
