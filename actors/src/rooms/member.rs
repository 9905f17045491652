//! The RoomsClient: the rooms protocol's state and hooks for the connection of
//! one authenticated rooms user.
//!
//! On start it sends `session {key, user_id}`; every keyed command must carry
//! that key. The server's liveness check is the protocol's own: `ping
//! {time}` every `ping_interval`, and a client that does not answer `pong`
//! with the same `time` within `pong_timeout` is disconnected.
//!
//! In-room commands (`message`, `read`, `exit`, `invite`, `kick`) go straight
//! to the room's address when the connection is in that room, without the
//! directory, and without waiting for the room: they are queued in the room's
//! mailbox in the order they came and the connection goes on reading. Success
//! shows as the room's own broadcast; a refusal is queued by the room to this
//! connection's outbox, so both keep the room's order. A command to another
//! room than the outstanding ones, and a reply of the connection's own
//! (`pong`, bad input), wait until the outstanding commands are done, so
//! everything the client gets keeps the order of its commands. A room the
//! connection is not in is looked up in the directory first, with reading
//! paused, which keeps the refusals of before (`unknown room`, `you have not
//! entered this room`). `create` and `enter` also wait for the outstanding
//! commands, then handle nothing else until they are done, since they change
//! the rooms the connection is in.
//!
//! It runs as the shared [`Connection`] actor with [`RoomsClient`] as its
//! protocol state: the connection does the framing, limits and outbox; the
//! hooks here speak the rooms protocol. Room lookups, creations, invites and
//! who is online go to the [`RoomsDirectory`] actor, not the registry.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix::prelude::*;
use actix_web::web::Bytes;
use bytestring::ByteString;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::directory::{
    CreateRoom, Creator, DeliverInvite, FindRoom, RoomsDirectory, UserOffline, UserOnline,
};
use super::room::{
    Answer, EnterRoom, ExitRoom, InRoomCommand, Invite, IsMember, Kick, Kicker, MarkRead,
    PostMessage, QueuedCommand, Room,
};
use super::wire::{Command, Event};
use super::{now_ms, Refusal, RoomsSettings};
use crate::connection::{Connection, ConnectionContext, Disconnect, Frames, Hooks};
use crate::metrics::metrics;
use crate::outbox::Outbox;
use crate::Protocol;

/// Longest room name.
const MAX_ROOM_NAME: usize = 100;

/// In-room commands a connection may have handed to rooms without their
/// answers; at this many it stops reading until one is answered, so a
/// client that sends faster than its rooms handle cannot queue without end.
const MAX_UNANSWERED: usize = 64;

/// What the rooms protocol knows of one connection of a rooms user.
pub struct RoomsClient {
    user: Arc<str>,
    key: String,
    /// Where rooms are looked up and created, and invites delivered.
    directory: Addr<RoomsDirectory>,
    settings: Arc<RoomsSettings>,
    /// Rooms this connection entered: where its in-room commands go, and
    /// which rooms it leaves when it ends (the rooms are the authority: a
    /// kick or a slow-consumer removal leaves a stale entry here, which the
    /// room answers as not in the room).
    entered: HashMap<Uuid, Addr<Room>>,
    /// The `time` of the server ping not yet answered.
    awaiting_pong: Option<i64>,
    /// Where the rooms queue their refusals to this connection (its outbox,
    /// once started).
    outbox: Option<Outbox>,
    /// In-room commands handed to rooms and not done yet, in command order.
    unanswered: VecDeque<Unanswered>,
    /// Whether an [`AwaitAnswers`] is spawned to take the answers.
    awaiting_answers: bool,
}

/// An in-room command handed to a room and not done yet.
struct Unanswered {
    /// The room it went to.
    room: Uuid,
    answer: oneshot::Receiver<Answer>,
    /// Delivered once the room has carried the command out.
    then: Option<DeliverInvite>,
}

/// Takes the rooms' answers in command order as they arrive; done once
/// fewer than `below` are outstanding.
struct AwaitAnswers {
    below: usize,
    /// Whether this is the one spawned to take every answer (it clears
    /// `awaiting_answers` when done), not one waited on.
    spawned: bool,
}

impl AwaitAnswers {
    /// Spawned to take every answer as it comes.
    const ALL: AwaitAnswers = AwaitAnswers {
        below: 1,
        spawned: true,
    };

    /// Waited on until fewer than `below` answers are outstanding.
    fn until_below(below: usize) -> AwaitAnswers {
        AwaitAnswers {
            below,
            spawned: false,
        }
    }
}

impl ActorFuture<Connection<RoomsClient>> for AwaitAnswers {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        client: &mut Connection<RoomsClient>,
        _: &mut ConnectionContext<RoomsClient>,
        task: &mut Context<'_>,
    ) -> Poll<()> {
        while client.state.unanswered.len() >= self.below.max(1) {
            let Some(front) = client.state.unanswered.front_mut() else {
                break;
            };
            let Poll::Ready(answer) = Pin::new(&mut front.answer).poll(task) else {
                return Poll::Pending;
            };
            let then = client
                .state
                .unanswered
                .pop_front()
                .and_then(|done| done.then);
            match answer {
                Ok(Answer::Done) => {
                    if let Some(invite) = then {
                        client.state.directory.do_send(invite);
                    }
                }
                Ok(Answer::Refused) => {}
                Ok(Answer::RefusedUnqueued(refusal)) => client.write_error(refusal),
                // The room stopped without answering.
                Err(_) => client.write_error(Refusal::Internal),
            }
        }
        if self.spawned {
            client.state.awaiting_answers = false;
        }
        Poll::Ready(())
    }
}

/// The actor of `room_id`, from the directory.
async fn find(directory: Addr<RoomsDirectory>, room_id: Uuid) -> Result<Addr<Room>, Refusal> {
    directory
        .send(FindRoom(room_id))
        .await
        .ok()
        .flatten()
        .ok_or(Refusal::UnknownRoom)
}

fn failed(_: MailboxError) -> Refusal {
    Refusal::Internal
}

impl RoomsClient {
    /// The state of a connection of the authenticated `user`.
    pub fn new(
        user: String,
        directory: Addr<RoomsDirectory>,
        settings: Arc<RoomsSettings>,
    ) -> Self {
        RoomsClient {
            user: user.into(),
            key: Uuid::new_v4().simple().to_string(),
            directory,
            settings,
            entered: HashMap::new(),
            awaiting_pong: None,
            outbox: None,
            unanswered: VecDeque::new(),
            awaiting_answers: false,
        }
    }
}

impl Connection<RoomsClient> {
    /// Writes `event` now, ahead of anything queued (the `session` frame,
    /// server pings, `created`).
    fn send(&mut self, event: Event<'_>) {
        let frame = event.encode();
        self.core.write(Frames::One(frame.into()));
    }

    /// Writes `frame` after what the rooms queued for this connection.
    fn write_in_turn(&mut self, frame: ByteString) {
        self.core.write_behind_queued(Frames::One(frame));
    }

    /// Answers a command the rooms refused, in the connection's turn.
    fn refuse(&mut self, ctx: &mut ConnectionContext<RoomsClient>, refusal: Refusal) {
        refusal.record();
        self.error(ctx, &refusal.to_string());
    }

    fn write_error(&mut self, refusal: Refusal) {
        let frame = Event::Error {
            message: &refusal.to_string(),
        }
        .encode();
        self.write_in_turn(frame.into());
    }

    /// Writes a reply of the connection's own in its turn: after every
    /// outstanding command is done and what it caused is written.
    fn reply(&mut self, ctx: &mut ConnectionContext<RoomsClient>, event: Event<'_>) {
        let frame = ByteString::from(event.encode());
        if self.state.unanswered.is_empty() {
            self.write_in_turn(frame);
        } else {
            let write = fut::ready(()).map(move |(), act: &mut Self, _| {
                act.write_in_turn(frame);
            });
            self.after_answers(ctx, write);
        }
    }

    fn error(&mut self, ctx: &mut ConnectionContext<RoomsClient>, message: &str) {
        self.reply(ctx, Event::Error { message });
    }

    /// Sends a ping and arms its deadline.
    fn ping(&mut self, ctx: &mut ConnectionContext<RoomsClient>) {
        if self.state.awaiting_pong.is_some() {
            return;
        }
        let time = now_ms();
        self.state.awaiting_pong = Some(time);
        self.send(Event::Ping { time });
        ctx.run_later(self.state.settings.pong_timeout, move |act, ctx| {
            if act.state.awaiting_pong == Some(time) {
                act.core.close(ctx, &Disconnect::no_pong());
            }
        });
    }

    /// Hands an in-room command to the room `room` without waiting for it
    /// (a refusal comes back through this connection's outbox). Stops
    /// reading while [`MAX_UNANSWERED`] commands are outstanding.
    fn queue<M>(
        &mut self,
        ctx: &mut ConnectionContext<RoomsClient>,
        (room_id, room): (Uuid, &Addr<Room>),
        command: M,
        then: Option<DeliverInvite>,
    ) where
        M: InRoomCommand,
    {
        let core = &self.core;
        let requester = self
            .state
            .outbox
            .get_or_insert_with(|| core.handle(ctx).deliver);
        let (reply, answer) = oneshot::channel();
        room.do_send(QueuedCommand {
            command,
            requester: requester.clone(),
            reply,
        });
        self.state.unanswered.push_back(Unanswered {
            room: room_id,
            answer,
            then,
        });
        if !self.state.awaiting_answers {
            self.state.awaiting_answers = true;
            ctx.spawn(AwaitAnswers::ALL);
        }
        if self.state.unanswered.len() >= MAX_UNANSWERED {
            ctx.wait(AwaitAnswers::until_below(MAX_UNANSWERED));
        }
    }

    /// Hands an in-room command to the room `room_id`: straight to it when
    /// the connection is in it (`known`), else once the directory has found
    /// it (reading paused meanwhile, so later commands stay behind it).
    /// Commands to one room follow each other without waiting; a command to
    /// another room waits until the outstanding ones are done, so what the
    /// rooms send back keeps the order of the commands across rooms too.
    fn queue_for<M>(
        &mut self,
        ctx: &mut ConnectionContext<RoomsClient>,
        room_id: Uuid,
        known: Option<Addr<Room>>,
        command: M,
        then: Option<DeliverInvite>,
    ) where
        M: InRoomCommand,
    {
        if self
            .state
            .unanswered
            .back()
            .is_some_and(|last| last.room != room_id)
        {
            let later = fut::ready(()).map(move |(), act: &mut Self, ctx| {
                act.queue_for(ctx, room_id, known, command, then);
            });
            return self.after_answers(ctx, later);
        }
        if let Some(room) = known {
            return self.queue(ctx, (room_id, &room), command, then);
        }
        let found = find(self.state.directory.clone(), room_id);
        ctx.wait(
            found
                .into_actor(self)
                .map(move |found, act, ctx| match found {
                    Ok(room) => act.queue(ctx, (room_id, &room), command, then),
                    Err(refusal) => act.refuse(ctx, refusal),
                }),
        );
    }

    /// Runs `work` once every earlier answer is written, handling nothing
    /// else until it is done.
    fn after_answers<F>(&mut self, ctx: &mut ConnectionContext<RoomsClient>, work: F)
    where
        F: ActorFuture<Self, Output = ()> + 'static,
    {
        if self.state.unanswered.is_empty() {
            ctx.wait(work);
        } else {
            ctx.wait(AwaitAnswers::until_below(1).then(move |(), _, _| work));
        }
    }

    /// Resolves when this connection may enter one more room: it holds
    /// fewer than `limits.max_rooms_per_client`, counting only the rooms
    /// that still have it (a kick or a slow-consumer removal leaves an
    /// entry here that the room no longer knows of).
    fn room_slots(&self) -> impl Future<Output = Result<(), Refusal>> {
        let (conn, limit) = (self.core.id(), self.core.limits().max_rooms_per_client);
        let held: Vec<Addr<Room>> = if self.state.entered.len() >= limit {
            self.state.entered.values().cloned().collect()
        } else {
            Vec::new()
        };
        async move {
            let mut still_in = 0;
            for room in held {
                if room.send(IsMember(conn)).await.unwrap_or(false) {
                    still_in += 1;
                }
            }
            if still_in >= limit {
                Err(Refusal::TooManyRooms(limit))
            } else {
                Ok(())
            }
        }
    }

    fn command(&mut self, ctx: &mut ConnectionContext<RoomsClient>, text: &str) {
        let command = match Command::decode(text) {
            Ok(command) => command,
            Err(bad) => {
                metrics().protocol_error(Protocol::Rooms, bad.kind);
                return self.error(ctx, &bad.reason);
            }
        };
        if let Some(key) = command.key() {
            if key != Some(self.state.key.as_str()) {
                return self.error(ctx, "invalid session key");
            }
        }
        match command {
            Command::Ping { time } => self.reply(ctx, Event::Pong { time }),
            Command::Pong { time } => self.pong(time),
            Command::Create { name, closed, .. } => self.create(ctx, name, closed),
            Command::Enter { room_id, .. } => self.enter(ctx, room_id),
            Command::Exit { room_id, .. } => self.exit(ctx, room_id),
            Command::Message {
                content, room_id, ..
            } => self.message(ctx, room_id, content),
            Command::Read {
                message_id,
                room_id,
            } => self.read(ctx, room_id, message_id),
            Command::Invite {
                user_id, room_id, ..
            } => self.invite(ctx, room_id, &user_id),
            Command::Kick {
                user_id,
                room_id,
                message,
                permanent,
                ..
            } => self.kick(ctx, room_id, user_id, message, permanent),
        }
    }

    /// `pong {time}`: the answer to the server's outstanding ping, if the
    /// time matches.
    fn pong(&mut self, time: i64) {
        if self.state.awaiting_pong == Some(time) {
            self.state.awaiting_pong = None;
        }
    }

    /// `create {name, closed}`: the store commits the room, this user is its
    /// admin and enters it; `created` precedes the room's `enter`.
    fn create(&mut self, ctx: &mut ConnectionContext<RoomsClient>, name: String, closed: bool) {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_ROOM_NAME {
            let reason = format!("a room name has 1 to {MAX_ROOM_NAME} characters");
            return self.error(ctx, &reason);
        }
        let user = self.state.user.to_string();
        let create = CreateRoom {
            name: name.clone(),
            closed,
            admins: vec![user.clone()],
            creator: Some(Creator {
                user_id: user.clone(),
                max_rooms: self.state.settings.max_rooms_per_creator,
            }),
        };
        let (directory, member) = (self.state.directory.clone(), self.core.handle(ctx));
        let slots = self.room_slots();
        let work = async move {
            slots.await?;
            // Answered once the store committed the room.
            let (room_id, room) = directory.send(create).await.map_err(failed)??;
            room.send(EnterRoom { member, user })
                .await
                .map_err(failed)??;
            Ok((room_id, room))
        };
        let done = work
            .into_actor(self)
            .map(move |created: Result<_, Refusal>, act, ctx| match created {
                Ok((room_id, room)) => {
                    act.state.entered.insert(room_id, room);
                    // Written now (nothing is outstanding), so it precedes
                    // the room's `enter` waiting in the outbox.
                    act.send(Event::Created {
                        room_id,
                        name: &name,
                        closed,
                    });
                }
                Err(refusal) => act.refuse(ctx, refusal),
            });
        self.after_answers(ctx, done);
    }

    /// `enter {room_id}`: acknowledged by the room's `enter` broadcast.
    fn enter(&mut self, ctx: &mut ConnectionContext<RoomsClient>, room_id: Uuid) {
        let (directory, member) = (self.state.directory.clone(), self.core.handle(ctx));
        let (user, known) = (
            self.state.user.to_string(),
            self.state.entered.get(&room_id).cloned(),
        );
        let slots = self.room_slots();
        let work = async move {
            slots.await?;
            let room = match known {
                Some(room) => room,
                None => find(directory, room_id).await?,
            };
            room.send(EnterRoom { member, user })
                .await
                .map_err(failed)??;
            Ok(room)
        };
        let done = work
            .into_actor(self)
            .map(move |entered: Result<_, Refusal>, act, ctx| match entered {
                Ok(room) => {
                    act.state.entered.insert(room_id, room);
                }
                Err(refusal) => act.refuse(ctx, refusal),
            });
        self.after_answers(ctx, done);
    }

    /// `exit {room_id}`: acknowledged by the room's `exit` broadcast.
    fn exit(&mut self, ctx: &mut ConnectionContext<RoomsClient>, room_id: Uuid) {
        let known = self.state.entered.remove(&room_id);
        let exit = ExitRoom {
            conn: self.core.id(),
            closing: false,
        };
        self.queue_for(ctx, room_id, known, exit, None);
    }

    /// `message {content, room_id}`: numbered and broadcast by the room, the
    /// sender included.
    fn message(
        &mut self,
        ctx: &mut ConnectionContext<RoomsClient>,
        room_id: Uuid,
        content: String,
    ) {
        let known = self.state.entered.get(&room_id).cloned();
        let post = PostMessage {
            conn: self.core.id(),
            content,
            time: now_ms(),
        };
        self.queue_for(ctx, room_id, known, post, None);
    }

    /// `read {message_id, room_id}`: a receipt broadcast by the room.
    fn read(&mut self, ctx: &mut ConnectionContext<RoomsClient>, room_id: Uuid, message_id: u64) {
        let known = self.state.entered.get(&room_id).cloned();
        let read = MarkRead {
            conn: self.core.id(),
            message_id,
        };
        self.queue_for(ctx, room_id, known, read, None);
    }

    /// `invite {user_id, room_id}`: once the room committed it, the invitee's
    /// connections get `invite`; the inviter gets nothing unless refused.
    fn invite(&mut self, ctx: &mut ConnectionContext<RoomsClient>, room_id: Uuid, invitee: &str) {
        let Some(invitee) = self.state.settings.user_id(invitee) else {
            return self.error(ctx, &Refusal::UserIdNotUuid.to_string());
        };
        let known = self.state.entered.get(&room_id).cloned();
        let invite = Invite {
            by: self.state.user.to_string(),
            user: invitee.clone(),
            max_pending: self.state.settings.max_pending_invites,
        };
        let deliver = DeliverInvite {
            user: invitee,
            room_id,
            inviter: self.state.user.to_string(),
        };
        self.queue_for(ctx, room_id, known, invite, Some(deliver));
    }

    /// `kick {user_id, room_id, message, permanent}`: an admin's; the room
    /// tells the kicked user and everyone else.
    fn kick(
        &mut self,
        ctx: &mut ConnectionContext<RoomsClient>,
        room_id: Uuid,
        user: String,
        message: Option<String>,
        permanent: bool,
    ) {
        let known = self.state.entered.get(&room_id).cloned();
        let kick = Kick {
            by: Kicker::User(self.state.user.to_string()),
            user,
            message,
            permanent,
        };
        self.queue_for(ctx, room_id, known, kick, None);
    }
}

impl Hooks for RoomsClient {
    /// Sends `session {key, user_id}`, announces the connection to the
    /// directory (which delivers its pending invites) and starts the
    /// protocol's own pings.
    fn join(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>) {
        let (key, user) = (conn.state.key.clone(), conn.state.user.clone());
        conn.core.identify(&user);
        conn.send(Event::Session {
            key: &key,
            user_id: &user,
        });
        conn.state.directory.do_send(UserOnline {
            user: user.to_string(),
            member: conn.core.handle(ctx),
        });
        ctx.run_interval(conn.state.settings.ping_interval, |act, ctx| act.ping(ctx));
    }

    fn handle_text(
        conn: &mut Connection<Self>,
        ctx: &mut ConnectionContext<Self>,
        text: ByteString,
    ) {
        conn.command(ctx, &text);
    }

    fn handle_binary(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>, _: Bytes) {
        conn.error(ctx, "invalid JSON");
    }

    fn rate_limited(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>, _text: bool) {
        conn.error(ctx, "rate limit exceeded");
    }

    /// Leaves every room entered and tells the directory the connection is
    /// gone.
    fn terminate(conn: &mut Connection<Self>) {
        let id = conn.core.id();
        for room in conn.state.entered.values() {
            room.do_send(ExitRoom {
                conn: id,
                closing: true,
            });
        }
        conn.state.directory.do_send(UserOffline {
            user: conn.state.user.to_string(),
            conn: id,
        });
    }
}
