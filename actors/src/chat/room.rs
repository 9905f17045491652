//! The Room actor: one chat room, its members and its recent history.
//!
//! Every event for the room is encoded once here and queued to every member
//! through the fan-out helper. The history lives in memory (the last
//! `history_limit` messages) and every change is written to the store, so a
//! restarted broker serves the same history.
//!
//! A message or a clear is acknowledged (broadcast) only once the store has
//! committed it, and changes are broadcast in the order the room received
//! them. The room never waits for the store: changes that arrive while a
//! commit is in flight wait in the room and go to the store together as the
//! next transaction (group commit), so a busy room pays one commit per batch
//! rather than one per message and keeps serving entries, exits and typing
//! meanwhile. At most one commit per room is in flight, which bounds what
//! the rooms queue at the store; what waits in a room is bounded by
//! `chat.max_unsaved_messages`. The room itself never touches the disk.

use std::collections::VecDeque;

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::oneshot;

use super::committed;
use super::store::{ChatChange, SaveChatChanges};
use super::wire::{HistoryEntry, ServerEvent, Severity, UserStatus, GLOBAL_ROOM};
use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::{Delivery, FanOut};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::store::StoreHandle;
use crate::Protocol;

/// Changes sent to the store in one transaction, at most: a bound on how
/// long one commit (and the broadcasts behind it) takes.
const MAX_BATCH: usize = 512;

/// One chat room. Runs supervised on the arbiter pool.
pub struct Room {
    name: String,
    members: FanOut,
    /// Who is here, in the order they came.
    present: Vec<(ConnId, UserStatus)>,
    history: VecDeque<HistoryEntry>,
    limits: RoomLimits,
    store: StoreHandle,
    /// Changes waiting for the next commit, in the order they came.
    unsaved: VecDeque<Unsaved>,
    /// The changes of the commit in flight, if one is.
    saving: Option<Vec<Unsaved>>,
    _alive: ActorGauge,
}

/// The numbers a room runs by (from `[chat]` and `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    /// Messages kept in the history.
    pub keep: usize,
    /// Changes that may wait for their commit.
    pub max_unsaved: usize,
    /// Drops in a row after which a member is removed as a slow consumer.
    pub evict_after: u32,
}

/// Who waits to hear whether a change was committed (the HTTP API); a
/// WebSocket client hears it as the broadcast, or as a `system` error.
pub type Confirm = oneshot::Sender<Result<(), NotStored>>;

/// A change the room accepted and has not broadcast yet.
struct Unsaved {
    change: Change,
    confirm: Option<Confirm>,
}

/// What a user can change in a room's history.
enum Change {
    Message(HistoryEntry),
    Clear {
        /// Shown as who cleared it.
        by: String,
    },
}

impl Change {
    fn stored(&self) -> ChatChange {
        match self {
            Change::Message(entry) => ChatChange::Message(entry.clone()),
            Change::Clear { .. } => ChatChange::Clear,
        }
    }

    /// Who made the change: told if it is refused.
    fn author(&self) -> &str {
        match self {
            Change::Message(entry) => &entry.username,
            Change::Clear { by } => by,
        }
    }
}

impl Room {
    /// A room with its stored history.
    pub fn new(
        name: String,
        history: Vec<HistoryEntry>,
        limits: RoomLimits,
        store: StoreHandle,
    ) -> Self {
        Room {
            name,
            members: FanOut::new(Protocol::Chat, limits.evict_after),
            present: Vec::new(),
            history: history.into(),
            limits,
            store,
            unsaved: VecDeque::new(),
            saving: None,
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

    /// Accepts a change for the next commit, unless too many wait already
    /// (then `by` is told and `confirm` answered [`NotStored`]).
    fn accept(&mut self, ctx: &mut Context<Self>, unsaved: Unsaved) {
        if self.unsaved.len() >= self.limits.max_unsaved {
            metrics().limit_reached(Protocol::Chat, "max_unsaved_messages");
            log::warn!(
                "chat room {}: {} changes wait for the store; one of {} refused",
                self.name,
                self.unsaved.len(),
                unsaved.change.author()
            );
            let refusal = match unsaved.change {
                Change::Message(_) => {
                    "The room is busy saving earlier messages, so yours was not sent; try again later"
                }
                Change::Clear { .. } => {
                    "The room is busy saving earlier messages, so the chat was not cleared; try again later"
                }
            };
            self.refuse(unsaved.change.author(), refusal);
            if let Some(confirm) = unsaved.confirm {
                let _ = confirm.send(Err(NotStored));
            }
            return;
        }
        self.unsaved.push_back(unsaved);
        self.commit_next(ctx);
    }

    /// Sends what waits to the store as one transaction, unless a commit is
    /// in flight (its answer starts the next one).
    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.saving.is_some() || self.unsaved.is_empty() {
            return;
        }
        let count = self.unsaved.len().min(MAX_BATCH);
        let batch: Vec<Unsaved> = self.unsaved.drain(..count).collect();
        let save = SaveChatChanges {
            room: self.name.clone(),
            changes: batch.iter().map(|u| u.change.stored()).collect(),
            keep: self.limits.keep,
        };
        self.saving = Some(batch);
        let saved = self.store.send(save);
        ctx.spawn(saved.into_actor(self).map(|saved, room, ctx| {
            let batch = room.saving.take().unwrap_or_default();
            match committed(saved) {
                Ok(()) => batch.into_iter().for_each(|u| room.saved(u)),
                Err(e) => {
                    log::error!(
                        "chat room {}: {} changes were not stored, so not sent: {e}",
                        room.name,
                        batch.len()
                    );
                    batch.into_iter().for_each(|u| room.not_saved(u));
                }
            }
            room.commit_next(ctx);
        }));
    }

    /// A committed change: applied to the history and broadcast.
    fn saved(&mut self, unsaved: Unsaved) {
        match unsaved.change {
            Change::Message(entry) => {
                self.broadcast(ServerEvent::Message {
                    username: &entry.username,
                    message: &entry.message,
                });
                metrics().chat.messages.inc();
                self.history.push_back(entry);
                while self.history.len() > self.limits.keep {
                    self.history.pop_front();
                }
            }
            Change::Clear { by } => {
                self.history.clear();
                let name = self.name.clone();
                self.broadcast(ServerEvent::RoomChatClear {
                    username: &by,
                    room_name: &name,
                });
            }
        }
        if let Some(confirm) = unsaved.confirm {
            let _ = confirm.send(Ok(()));
        }
    }

    /// A change the store refused: nothing broadcast, its author told.
    fn not_saved(&mut self, unsaved: Unsaved) {
        let refusal = match unsaved.change {
            Change::Message(_) => {
                "Your message could not be saved, so it was not sent; try again later"
            }
            Change::Clear { .. } => {
                "The chat could not be cleared, so its history is kept; try again later"
            }
        };
        self.refuse(unsaved.change.author(), refusal);
        if let Some(confirm) = unsaved.confirm {
            let _ = confirm.send(Err(NotStored));
        }
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
    fn restarting(&mut self, ctx: &mut Self::Context) {
        log::warn!("chat room {} restarting", self.name);
        metrics().actor_restarted(ActorKind::ChatRoom);
        // The restart dropped the commit in flight with the rest of the
        // context: its changes cannot be confirmed, so they are refused,
        // and what waited behind them is committed anew.
        if let Some(batch) = self.saving.take() {
            batch.into_iter().for_each(|u| self.not_saved(u));
        }
        self.commit_next(ctx);
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
/// Messages still waiting for their commit are not in the history yet; the
/// newcomer gets them as broadcasts once committed.
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

/// A message for the room: committed to the store (with whatever else
/// arrived meanwhile), then added to the history and broadcast to everyone,
/// the sender included (the broadcast is the sender's acknowledgement). If
/// the store fails, or too many messages wait for it, nothing is broadcast,
/// the sender gets a `system` error and `confirm` hears [`NotStored`]. The
/// sender has checked the message.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Say {
    /// Who says it.
    pub username: String,
    /// What.
    pub message: String,
    /// Told once the message is broadcast or refused (the HTTP API waits
    /// on it; a WebSocket client does not).
    pub confirm: Option<Confirm>,
}

impl Handler<Say> for Room {
    type Result = ();
    fn handle(&mut self, msg: Say, ctx: &mut Self::Context) {
        let entry = HistoryEntry {
            username: msg.username,
            message: msg.message,
            timestamp: Utc::now(),
        };
        let unsaved = Unsaved {
            change: Change::Message(entry),
            confirm: msg.confirm,
        };
        self.accept(ctx, unsaved);
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

/// A user asks to empty the room's history; done in order with the
/// messages before it. `Global` refuses (an error notice to the room,
/// history kept).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Clear {
    /// Who asks (the real sender).
    pub username: String,
}

impl Handler<Clear> for Room {
    type Result = ();
    fn handle(&mut self, msg: Clear, ctx: &mut Self::Context) {
        if self.name == GLOBAL_ROOM {
            let refusal = format!(
                "{} tried to clear the {GLOBAL_ROOM} room, which cannot be cleared",
                msg.username
            );
            self.broadcast(ServerEvent::System {
                severity: Severity::Error,
                message: &refusal,
            });
            return;
        }
        let unsaved = Unsaved {
            change: Change::Clear { by: msg.username },
            confirm: None,
        };
        self.accept(ctx, unsaved);
    }
}

/// The operator empties the room's history (`DELETE /chat/clear-chat`);
/// unlike [`Clear`] this works for `Global` too. `confirm` hears once the
/// history is cleared and `room_chat_clear` broadcast, or [`NotStored`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Purge {
    /// Shown as who cleared it.
    pub by: String,
    /// Told once it is done or refused.
    pub confirm: Confirm,
}

impl Handler<Purge> for Room {
    type Result = ();
    fn handle(&mut self, msg: Purge, ctx: &mut Self::Context) {
        let unsaved = Unsaved {
            change: Change::Clear { by: msg.by },
            confirm: Some(msg.confirm),
        };
        self.accept(ctx, unsaved);
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
