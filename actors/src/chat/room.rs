//! The Room actor: one chat room, its members and its recent history.
//!
//! Every event for the room is encoded once here and queued to every member
//! through the fan-out helper. The history lives in memory (the last
//! `history_limit` messages) and every change is written to the store, so a
//! restarted broker serves the same history.
//!
//! A message or a clear is acknowledged (broadcast) only once the store has
//! committed it: the room hands the write to the store actor and handles
//! nothing else until the store answers, so the room's events keep their
//! order and whatever a client was shown survives the broker being killed.
//! The room itself never touches the disk.

use std::collections::VecDeque;

use actix::prelude::*;
use chrono::Utc;

use super::committed;
use super::wire::{HistoryEntry, ServerEvent, Severity, UserStatus, GLOBAL_ROOM};
use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::{Delivery, FanOut};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::store::{ClearChatHistory, SaveChatMessage, StoreHandle};
use crate::Protocol;

/// One chat room. Runs supervised on the arbiter pool.
pub struct Room {
    name: String,
    members: FanOut,
    /// Who is here, in the order they came.
    present: Vec<(ConnId, UserStatus)>,
    history: VecDeque<HistoryEntry>,
    keep: usize,
    store: StoreHandle,
    _alive: ActorGauge,
}

impl Room {
    /// A room with its stored history.
    pub fn new(
        name: String,
        history: Vec<HistoryEntry>,
        keep: usize,
        evict_after: u32,
        store: StoreHandle,
    ) -> Self {
        Room {
            name,
            members: FanOut::new(Protocol::Chat, evict_after),
            present: Vec::new(),
            history: history.into(),
            keep,
            store,
            _alive: ActorGauge::new(ActorKind::ChatRoom),
        }
    }

    /// Sends `event` to everyone here; answers how many it was handed to.
    fn broadcast(&mut self, event: ServerEvent<'_>) -> usize {
        let removed = self.members.broadcast(&Frames::One(event.encode().into()));
        if !removed.is_empty() {
            self.present.retain(|(conn, _)| !removed.contains(conn));
        }
        self.members.len()
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.history.iter().cloned().collect()
    }

    /// Sends `username` (if it is here) a `system` error: its request was
    /// not done.
    fn refuse(&mut self, username: &str, message: &str) {
        let Some(conn) = self
            .present
            .iter()
            .find(|(_, user)| user.username == username)
            .map(|(conn, _)| *conn)
        else {
            return;
        };
        let frame = ServerEvent::System {
            severity: Severity::Error,
            message,
        }
        .encode();
        if self.members.send_to(conn, &Frames::One(frame.into())) == Delivery::Removed {
            self.present.retain(|(c, _)| *c != conn);
        }
    }

    /// Empties the history once the store has, then broadcasts
    /// `room_chat_clear`; the room waits for the store meanwhile. If the
    /// store refuses, the history stays, nothing is broadcast and `by` (if
    /// here) is told.
    fn clear(&mut self, by: String) -> AtomicResponse<Self, Result<(), NotStored>> {
        let cleared = self.store.send(ClearChatHistory {
            room: self.name.clone(),
        });
        AtomicResponse::new(Box::pin(cleared.into_actor(self).map(
            move |cleared, room, _| match committed(cleared) {
                Ok(()) => {
                    room.history.clear();
                    let name = room.name.clone();
                    room.broadcast(ServerEvent::RoomChatClear {
                        username: &by,
                        room_name: &name,
                    });
                    Ok(())
                }
                Err(e) => {
                    log::error!("chat room {}: clearing the history failed: {e}", room.name);
                    room.refuse(
                        &by,
                        "The chat could not be cleared, so its history is kept; try again later",
                    );
                    Err(NotStored)
                }
            },
        )))
    }
}

/// A write the store refused (or never answered): the change it carried was
/// not made and nothing about it was broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store could not save it")]
pub struct NotStored;

impl Actor for Room {
    type Context = Context<Self>;
}

impl Supervised for Room {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("chat room {} restarting", self.name);
        metrics().actor_restarted(ActorKind::ChatRoom);
    }
}

/// What a user entering a room is sent before anything else from the room:
/// `message_history` and `users_online` (everyone but the newcomer).
pub struct Entered {
    /// The `message_history` frame.
    pub history: String,
    /// The `users_online` frame.
    pub users_online: String,
}

/// A user enters the room. Answers with its first frames, then broadcasts
/// `user_join` to the room, the newcomer included (queued after the answer).
#[derive(Message)]
#[rtype(result = "Entered")]
pub struct Enter {
    /// The user's connection.
    pub member: MemberHandle,
    /// The user as `users_online` shows it.
    pub user: UserStatus,
}

impl Handler<Enter> for Room {
    type Result = MessageResult<Enter>;
    fn handle(&mut self, msg: Enter, _: &mut Self::Context) -> Self::Result {
        let history = self.history();
        let users: Vec<UserStatus> = self.present.iter().map(|(_, u)| u.clone()).collect();
        let entered = Entered {
            history: ServerEvent::MessageHistory { messages: &history }.encode(),
            users_online: ServerEvent::UsersOnline { users: &users }.encode(),
        };
        self.present.push((msg.member.id, msg.user.clone()));
        self.members.join(msg.member);
        self.broadcast(ServerEvent::UserJoin {
            username: &msg.user.username,
        });
        MessageResult(entered)
    }
}

/// A user leaves the room (switch or disconnect): `user_leave` to the rest.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Exit {
    /// The user's connection.
    pub conn: ConnId,
    /// The user's name.
    pub username: String,
}

impl Handler<Exit> for Room {
    type Result = ();
    fn handle(&mut self, msg: Exit, _: &mut Self::Context) {
        self.members.leave(msg.conn);
        self.present.retain(|(conn, _)| *conn != msg.conn);
        self.broadcast(ServerEvent::UserLeave {
            username: &msg.username,
        });
    }
}

/// A message for the room: committed to the store, then added to the
/// history and broadcast to everyone, the sender included (the broadcast is
/// the sender's acknowledgement). The room handles nothing else until the
/// store answers. If the store fails, nothing is broadcast and the sender
/// gets a `system` error. The sender has checked the message. Answered once
/// the message is broadcast, or with [`NotStored`] once it was refused.
#[derive(Message)]
#[rtype(result = "Result<(), NotStored>")]
pub struct Say {
    /// Who says it.
    pub username: String,
    /// What.
    pub message: String,
}

impl Handler<Say> for Room {
    type Result = AtomicResponse<Self, Result<(), NotStored>>;
    fn handle(&mut self, msg: Say, _: &mut Self::Context) -> Self::Result {
        let entry = HistoryEntry {
            username: msg.username,
            message: msg.message,
            timestamp: Utc::now(),
        };
        let saved = self.store.send(SaveChatMessage {
            room: self.name.clone(),
            entry: entry.clone(),
            keep: self.keep,
        });
        AtomicResponse::new(Box::pin(saved.into_actor(self).map(
            move |saved, room, _| match committed(saved) {
                Ok(()) => {
                    room.broadcast(ServerEvent::Message {
                        username: &entry.username,
                        message: &entry.message,
                    });
                    metrics().chat.messages.inc();
                    room.history.push_back(entry);
                    while room.history.len() > room.keep {
                        room.history.pop_front();
                    }
                    Ok(())
                }
                Err(e) => {
                    log::error!(
                        "chat room {}: a message of {} was not stored, so not sent: {e}",
                        room.name,
                        entry.username
                    );
                    room.refuse(
                        &entry.username,
                        "Your message could not be saved, so it was not sent; try again later",
                    );
                    Err(NotStored)
                }
            },
        )))
    }
}

/// A typing indicator, relayed to the room (the sender included).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    /// Who is typing.
    pub username: String,
    /// Started or stopped.
    pub is_typing: bool,
}

impl Handler<Typing> for Room {
    type Result = ();
    fn handle(&mut self, msg: Typing, _: &mut Self::Context) {
        self.broadcast(ServerEvent::Typing {
            username: &msg.username,
            is_typing: msg.is_typing,
        });
    }
}

/// A `system` notice for the whole room (spoofing warnings, operators'
/// announcements); answers how many members it was handed to. Notices are
/// not part of the history.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Notice {
    /// How serious.
    pub severity: Severity,
    /// The text.
    pub message: String,
}

impl Handler<Notice> for Room {
    type Result = usize;
    fn handle(&mut self, msg: Notice, _: &mut Self::Context) -> usize {
        self.broadcast(ServerEvent::System {
            severity: msg.severity,
            message: &msg.message,
        })
    }
}

/// A user asks to empty the room's history. `Global` refuses (an error
/// notice to the room, history kept; answered `Ok`, as the refusal is the
/// answer).
#[derive(Message)]
#[rtype(result = "Result<(), NotStored>")]
pub struct Clear {
    /// Who asks (the real sender).
    pub username: String,
}

impl Handler<Clear> for Room {
    type Result = AtomicResponse<Self, Result<(), NotStored>>;
    fn handle(&mut self, msg: Clear, _: &mut Self::Context) -> Self::Result {
        if self.name == GLOBAL_ROOM {
            let refusal = format!(
                "{} tried to clear the {GLOBAL_ROOM} room, which cannot be cleared",
                msg.username
            );
            self.broadcast(ServerEvent::System {
                severity: Severity::Error,
                message: &refusal,
            });
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        }
        self.clear(msg.username)
    }
}

/// The operator empties the room's history (`DELETE /chat/clear-chat`);
/// unlike [`Clear`] this works for `Global` too. Answered once the history
/// is cleared and `room_chat_clear` broadcast, or with [`NotStored`].
#[derive(Message)]
#[rtype(result = "Result<(), NotStored>")]
pub struct Purge {
    /// Shown as who cleared it.
    pub by: String,
}

impl Handler<Purge> for Room {
    type Result = AtomicResponse<Self, Result<(), NotStored>>;
    fn handle(&mut self, msg: Purge, _: &mut Self::Context) -> Self::Result {
        self.clear(msg.by)
    }
}

/// The room's history, oldest first (HTTP `GET .../messages`).
#[derive(Message)]
#[rtype(result = "Vec<HistoryEntry>")]
pub struct GetHistory;

impl Handler<GetHistory> for Room {
    type Result = Vec<HistoryEntry>;
    fn handle(&mut self, _: GetHistory, _: &mut Self::Context) -> Self::Result {
        self.history()
    }
}
