//! The ChatMember: the chat protocol's state of one connection.
//!
//! The first frame must be `connection_request`; a bad name (or a bad room
//! in the URL) gets `connection_reject` and a close frame, and creates
//! nothing. After that every event is checked here (format, length,
//! spoofing) before it reaches the room, and events are handled one at a
//! time: while the directory or a room answers, the connection waits, so
//! what a user is sent keeps the order PROTOCOLS.md §2 gives.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use bytestring::ByteString;
use chrono::Utc;

use super::directory::{
    ChatDirectory, CreateChatRoom, FindChatRoom, JoinChat, LeaveChat, SwitchRoom,
};
use super::room::{Clear, Enter, Entered, Exit, Notice, Room, Say, Typing};
use super::wire::{
    check_name, ClientEvent, NameError, ServerEvent, Severity, UserStatus, GLOBAL_ROOM,
    INVALID_FORMAT, MAX_NAME_CHARS,
};
use super::ChatSettings;
use crate::connection::{Connection, ConnectionContext, Disconnect, Frames, Hooks};
use crate::metrics::{metrics, ProtocolErrorKind};
use crate::Protocol;

/// The window `chat.room_creations_per_minute` counts in.
const CREATION_WINDOW: Duration = Duration::from_secs(60);

/// Where a connection is in its life.
enum Stage {
    /// Waiting for `connection_request`.
    Unjoined,
    /// The directory is taking the name.
    Joining(String),
    /// In a room.
    Joined { username: String, room: Addr<Room> },
}

/// One chat user.
pub struct ChatMember {
    directory: Addr<ChatDirectory>,
    settings: Arc<ChatSettings>,
    /// The room named in the URL (`/ws/{room}`), if any.
    requested_room: Option<String>,
    stage: Stage,
    /// When this connection created rooms, within the last minute.
    creations: VecDeque<Instant>,
}

/// The text a refused room name gets; it always says `invalid`.
fn invalid_room(error: NameError) -> String {
    match error {
        NameError::TooLong => {
            format!("Room name is invalid: longer than {MAX_NAME_CHARS} characters")
        }
        NameError::InvalidCharacters => "Room name contains invalid characters".to_owned(),
    }
}

impl ChatMember {
    /// A user served through `directory`, joining `requested_room` (else `Global`).
    pub fn new(
        directory: Addr<ChatDirectory>,
        settings: Arc<ChatSettings>,
        requested_room: Option<String>,
    ) -> Self {
        ChatMember {
            directory,
            settings,
            requested_room,
            stage: Stage::Unjoined,
            creations: VecDeque::new(),
        }
    }

    /// The user's name and room, once joined.
    fn joined(&self) -> Option<(String, Addr<Room>)> {
        match &self.stage {
            Stage::Joined { username, room } => Some((username.clone(), room.clone())),
            Stage::Unjoined | Stage::Joining(_) => None,
        }
    }
}

impl Connection<ChatMember> {
    fn send(&mut self, event: ServerEvent<'_>) {
        let frame = event.encode();
        self.core.write(Frames::One(frame.into()));
    }

    fn error(&mut self, message: &str) {
        self.send(ServerEvent::System {
            severity: Severity::Error,
            message,
        });
    }

    /// The `system` error answering an event that cannot be read.
    fn invalid_format(&mut self) {
        metrics().protocol_error(Protocol::Chat, ProtocolErrorKind::Malformed);
        self.error(INVALID_FORMAT);
    }

    /// The `connection_reject` answering a first frame that cannot be read.
    fn reject_invalid_format(&mut self, ctx: &mut ConnectionContext<ChatMember>) {
        metrics().protocol_error(Protocol::Chat, ProtocolErrorKind::Malformed);
        self.reject(ctx, INVALID_FORMAT);
    }

    /// `connection_reject`, then a close frame.
    fn reject(&mut self, ctx: &mut ConnectionContext<ChatMember>, response: &str) {
        self.send(ServerEvent::ConnectionReject { response });
        self.core.close(ctx, &Disconnect::normal(response));
    }

    /// The first frame: `connection_request`, then the startup sequence.
    fn join(&mut self, ctx: &mut ConnectionContext<ChatMember>, text: &str) {
        let username = match ClientEvent::decode(text) {
            Ok(ClientEvent::ConnectionRequest { username }) => username,
            _ => return self.reject_invalid_format(ctx),
        };
        let username = match check_name(&username) {
            Ok(name) => name,
            Err(e) => return self.reject(ctx, &e.to_string()),
        };
        let room = match self.state.requested_room.as_deref().map(check_name) {
            None => GLOBAL_ROOM.to_owned(),
            Some(Ok(room)) => room,
            Some(Err(e)) => return self.reject(ctx, &invalid_room(e)),
        };
        self.state.stage = Stage::Joining(username.clone());
        let member = self.core.handle(ctx);
        let user = UserStatus {
            username: username.clone(),
            connected_at: Utc::now(),
        };
        let directory = self.state.directory.clone();
        let claim = JoinChat {
            username,
            room,
            member: member.clone(),
        };
        let join = async move {
            let joined = match directory.send(claim).await {
                Ok(Ok(joined)) => joined,
                Ok(Err(refused)) => return Err(refused.to_string()),
                Err(e) => return Err(format!("internal error: {e}")),
            };
            let entered = joined
                .room
                .send(Enter { member, user })
                .await
                .map_err(|e| format!("internal error: {e}"))?;
            Ok((joined, entered))
        };
        ctx.wait(join.into_actor(self).map(|joined, act, ctx| {
            let Stage::Joining(username) = std::mem::replace(&mut act.state.stage, Stage::Unjoined)
            else {
                return;
            };
            let (joined, entered) = match joined {
                Ok(joined) => joined,
                Err(response) => {
                    // Undo a claim that may have been made (ignored if not ours).
                    act.state.directory.do_send(LeaveChat {
                        username,
                        conn: act.core.id(),
                    });
                    return act.reject(ctx, &response);
                }
            };
            act.send(ServerEvent::ConnectionResponse {
                username: &username,
                user_id: joined.user_id,
            });
            act.send(ServerEvent::AllRooms {
                rooms: &joined.rooms,
            });
            if let Some(room) = &joined.created {
                act.send(ServerEvent::RoomCreate { room });
            }
            act.enter(entered);
            act.core.identify(&username);
            log::debug!("chat user {username} joined");
            act.state.stage = Stage::Joined {
                username,
                room: joined.room,
            };
        }));
    }

    /// Writes the frames a room sends a newcomer first.
    fn enter(&mut self, entered: Entered) {
        self.core.write(Frames::from(vec![
            entered.history.into(),
            entered.users_online.into(),
        ]));
    }

    /// Every event after joining.
    fn event(
        &mut self,
        ctx: &mut ConnectionContext<ChatMember>,
        me: String,
        room: Addr<Room>,
        text: &str,
    ) {
        let event = match ClientEvent::decode(text) {
            Ok(event) => event,
            Err(_) => return self.invalid_format(),
        };
        match event {
            ClientEvent::Message { username, message } => self.say(me, &room, &username, message),
            ClientEvent::Typing {
                username,
                is_typing,
            } => self.typing(me, &room, &username, is_typing),
            ClientEvent::RoomCreate { room_name } => self.create_room(ctx, me, &room_name),
            ClientEvent::RoomSwitchRequest { room_name } => self.switch(ctx, me, room_name),
            ClientEvent::RoomChatClear {
                username,
                room_name,
            } => self.clear_chat(ctx, me, &room, &username, room_name),
            ClientEvent::ConnectionRequest { .. } => self.invalid_format(),
        }
    }

    /// `message`: checked (author, emptiness, length), then said in the
    /// user's room, which broadcasts it once committed.
    fn say(&mut self, me: String, room: &Addr<Room>, claimed: &str, message: String) {
        if claimed != me {
            return self.spoofed(room, &me, claimed, "a message");
        }
        if message.trim().is_empty() {
            return self.error("Message is empty");
        }
        let limit = self.state.settings.max_message_chars;
        if message.chars().count() > limit {
            return self.error(&format!("Message is longer than {limit} characters"));
        }
        room.do_send(Say {
            username: me,
            message,
            confirm: None,
        });
    }

    /// `typing`: passed to the user's room unless spoofed.
    fn typing(&self, me: String, room: &Addr<Room>, claimed: &str, is_typing: bool) {
        if claimed != me {
            return self.spoofed(room, &me, claimed, "a typing event");
        }
        room.do_send(Typing {
            username: me,
            is_typing,
        });
    }

    /// `room_chat_clear`: empties the named room's history. A spoofed author
    /// is reported to the user's room, and the clear is still made in the
    /// user's own name.
    fn clear_chat(
        &mut self,
        ctx: &mut ConnectionContext<ChatMember>,
        me: String,
        room: &Addr<Room>,
        claimed: &str,
        room_name: String,
    ) {
        if claimed != me {
            self.spoofed(room, &me, claimed, "a chat clear");
        }
        let request = self.state.directory.send(FindChatRoom(room_name.clone()));
        ctx.wait(
            request
                .into_actor(self)
                .map(move |found, act, _| match found {
                    Ok(Some(target)) => target.do_send(Clear { username: me }),
                    Ok(None) => act.error(&format!("Room {room_name} not found")),
                    Err(e) => act.error(&format!("internal error: {e}")),
                }),
        );
    }

    /// `room_create`: checks the name and this connection's creation rate,
    /// then asks the directory, which answers once the room is committed and
    /// announced to everyone (this user included); a refusal is a
    /// `room_create_reject` saying why.
    fn create_room(
        &mut self,
        ctx: &mut ConnectionContext<ChatMember>,
        me: String,
        room_name: &str,
    ) {
        let name = match check_name(room_name) {
            Ok(name) => name,
            Err(e) => return self.reject_room(&invalid_room(e)),
        };
        let per_minute = self.state.settings.room_creations_per_minute;
        let now = Instant::now();
        let creations = &mut self.state.creations;
        while creations
            .front()
            .is_some_and(|at| now.duration_since(*at) >= CREATION_WINDOW)
        {
            creations.pop_front();
        }
        if creations.len() >= per_minute {
            metrics().limit_reached(Protocol::Chat, "room_creations_per_minute");
            log::warn!("chat user {me}: room {name} refused, {per_minute} created this minute");
            return self.reject_room(&format!(
                "Room {name} was not created: you may create at most {per_minute} rooms per minute"
            ));
        }
        let request = self
            .state
            .directory
            .send(CreateChatRoom { name, creator: me });
        ctx.wait(
            request
                .into_actor(self)
                .map(move |created, act, _| match created {
                    Ok(Ok(())) => act.state.creations.push_back(Instant::now()),
                    Ok(Err(refused)) => act.reject_room(&refused.to_string()),
                    Err(e) => act.error(&format!("internal error: {e}")),
                }),
        );
    }

    fn reject_room(&mut self, response: &str) {
        self.send(ServerEvent::RoomCreateReject { response });
    }

    /// A warning naming both users, to the room; the event itself is dropped.
    fn spoofed(&self, room: &Addr<Room>, me: &str, claimed: &str, what: &str) {
        log::warn!("chat user {me} sent {what} as {claimed}");
        metrics().protocol_error(Protocol::Chat, ProtocolErrorKind::Forbidden);
        room.do_send(Notice {
            severity: Severity::Warning,
            message: format!("{me} tried to send {what} as {claimed}"),
        });
    }

    fn switch(&mut self, ctx: &mut ConnectionContext<ChatMember>, me: String, to: String) {
        let directory = self.state.directory.clone();
        let (conn, member) = (self.core.id(), self.core.handle(ctx));
        let user = UserStatus {
            username: me.clone(),
            connected_at: Utc::now(),
        };
        let request = SwitchRoom {
            username: me.clone(),
            to: to.clone(),
        };
        let moved = async move {
            let (from, into) = match directory.send(request).await {
                Ok(Ok(rooms)) => rooms,
                Ok(Err(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            from.do_send(Exit {
                conn,
                username: user.username.clone(),
            });
            let entered = into.send(Enter { member, user }).await?;
            Ok(Some((into, entered)))
        };
        ctx.wait(
            moved
                .into_actor(self)
                .map(move |moved, act, _| match moved {
                    Ok(Some((room, entered))) => {
                        act.send(ServerEvent::RoomSwitchResponse { room_name: &to });
                        act.enter(entered);
                        act.state.stage = Stage::Joined { username: me, room };
                    }
                    Ok(None) => {
                        let response = format!("Room {to} not found");
                        act.send(ServerEvent::RoomSwitchReject {
                            response: &response,
                        });
                    }
                    Err(e) => act.error(&format!("internal error: {e}")),
                }),
        );
    }
}

impl Hooks for ChatMember {
    fn handle_text(
        conn: &mut Connection<Self>,
        ctx: &mut ConnectionContext<Self>,
        text: ByteString,
    ) {
        match conn.state.joined() {
            None => conn.join(ctx, &text),
            Some((me, room)) => conn.event(ctx, me, room, &text),
        }
    }

    fn handle_binary(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>, _: Bytes) {
        match conn.state.joined() {
            None => conn.reject_invalid_format(ctx),
            Some(_) => conn.invalid_format(),
        }
    }

    fn rate_limited(conn: &mut Connection<Self>, _: &mut ConnectionContext<Self>, _text: bool) {
        conn.error("Rate limit exceeded");
    }

    fn terminate(conn: &mut Connection<Self>) {
        let id = conn.core.id();
        let directory = &conn.state.directory;
        match std::mem::replace(&mut conn.state.stage, Stage::Unjoined) {
            Stage::Joined { username, room } => {
                room.do_send(Exit {
                    conn: id,
                    username: username.clone(),
                });
                directory.do_send(LeaveChat { username, conn: id });
            }
            Stage::Joining(username) => directory.do_send(LeaveChat { username, conn: id }),
            Stage::Unjoined => {}
        }
    }
}
