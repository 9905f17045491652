//! The RoomsClient: the connection actor of one authenticated rooms user.
//!
//! On start it sends `session {key, user_id}`; every keyed command must carry
//! that key. The server's liveness check is the protocol's own: `ping
//! {time}` every `ping_interval`, and a client that does not answer `pong`
//! with the same `time` within `pong_timeout` is disconnected. Commands are
//! handled one at a time, so replies keep their order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws::{self, ProtocolError, WebsocketContext};
use uuid::Uuid;

use super::directory::{CreateRoom, Creator, DeliverInvite, FindRoom, UserOffline, UserOnline};
use super::room::{Enter, Exit, Invite, IsMember, Kick, Kicker, MarkRead, Room, Say};
use super::wire::{Command, Event};
use super::{now_ms, Refusal, RoomsSettings};
use crate::connection::{ConnectionCore, Disconnect, Frames, Inbound, WsConnection};
use crate::registry::Registry;

/// Longest room name.
const MAX_ROOM_NAME: usize = 100;

/// One connection of a rooms user.
pub struct RoomsClient {
    core: ConnectionCore,
    user: Arc<str>,
    key: String,
    registry: Addr<Registry>,
    settings: Arc<RoomsSettings>,
    /// Rooms this connection entered (the rooms are the authority; this is
    /// for leaving them when the connection ends).
    entered: HashMap<Uuid, Addr<Room>>,
    /// The `time` of the server ping not yet answered.
    awaiting_pong: Option<i64>,
}

/// What a command's round trip came to.
type Outcome = Result<Option<String>, Refusal>;

impl RoomsClient {
    /// A connection of the authenticated `user`.
    pub fn new(
        core: ConnectionCore,
        user: String,
        registry: Addr<Registry>,
        settings: Arc<RoomsSettings>,
    ) -> Self {
        core.identify(&user);
        RoomsClient {
            core,
            user: user.into(),
            key: Uuid::new_v4().simple().to_string(),
            registry,
            settings,
            entered: HashMap::new(),
            awaiting_pong: None,
        }
    }

    fn send(&mut self, ctx: &mut WebsocketContext<Self>, event: Event<'_>) {
        let frame = event.encode();
        self.core.write(ctx, Frames::One(frame.into()));
    }

    fn error(&mut self, ctx: &mut WebsocketContext<Self>, message: &str) {
        self.send(ctx, Event::Error { message });
    }

    /// Sends a ping and arms its deadline.
    fn ping(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.awaiting_pong.is_some() {
            return;
        }
        let time = now_ms();
        self.awaiting_pong = Some(time);
        self.send(ctx, Event::Ping { time });
        ctx.run_later(self.settings.pong_timeout, move |act, ctx| {
            if act.awaiting_pong == Some(time) {
                act.core.close(
                    ctx,
                    &Disconnect {
                        code: 1001,
                        reason: "no pong in time".into(),
                    },
                );
            }
        });
    }

    /// Runs a room round trip and writes what it came to: nothing, a frame
    /// of its own, or the refusal as `error`.
    fn settle<F>(&mut self, ctx: &mut WebsocketContext<Self>, work: F)
    where
        F: std::future::Future<Output = Outcome> + 'static,
    {
        ctx.wait(
            work.into_actor(self)
                .map(|outcome, act, ctx| match outcome {
                    Ok(Some(frame)) => act.core.write(ctx, Frames::One(frame.into())),
                    Ok(None) => {}
                    Err(refusal) => act.error(ctx, &refusal.to_string()),
                }),
        );
    }

    /// Resolves when this connection may enter one more room: it holds
    /// fewer than `limits.max_rooms_per_client`, counting only the rooms
    /// that still have it (a kick or a slow-consumer removal leaves an
    /// entry here that the room no longer knows of).
    fn room_slots(&self) -> impl std::future::Future<Output = Result<(), Refusal>> {
        let (conn, limit) = (self.core.id(), self.core.limits().max_rooms_per_client);
        let held: Vec<Addr<Room>> = if self.entered.len() >= limit {
            self.entered.values().cloned().collect()
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

    fn command(&mut self, ctx: &mut WebsocketContext<Self>, text: &str) {
        let command = match Command::decode(text) {
            Ok(command) => command,
            Err(bad) => return self.error(ctx, &bad.to_string()),
        };
        if let Some(key) = command.key() {
            if key != Some(self.key.as_str()) {
                return self.error(ctx, "invalid session key");
            }
        }
        let registry = self.registry.clone();
        let user = self.user.to_string();
        let (conn, member) = (self.core.id(), self.core.handle(ctx));
        let find = move |room_id: Uuid| {
            let registry = registry.clone();
            async move {
                registry
                    .send(FindRoom(room_id))
                    .await
                    .ok()
                    .flatten()
                    .ok_or(Refusal::UnknownRoom)
            }
        };
        let failed = |_: MailboxError| Refusal::Internal;
        match command {
            Command::Ping { time } => self.send(ctx, Event::Pong { time }),
            Command::Pong { time } => {
                if self.awaiting_pong == Some(time) {
                    self.awaiting_pong = None;
                }
            }
            Command::Create { name, closed, .. } => {
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > MAX_ROOM_NAME {
                    let reason = format!("a room name has 1 to {MAX_ROOM_NAME} characters");
                    return self.error(ctx, &reason);
                }
                let create = CreateRoom {
                    name: name.clone(),
                    closed,
                    admins: vec![user.clone()],
                    creator: Some(Creator {
                        user_id: user.clone(),
                        max_rooms: self.settings.max_rooms_per_creator,
                    }),
                };
                let registry = self.registry.clone();
                let slots = self.room_slots();
                let work = async move {
                    slots.await?;
                    // Answered once the store committed the room.
                    let (room_id, room) = registry.send(create).await.map_err(failed)??;
                    room.send(Enter { member, user }).await.map_err(failed)??;
                    Ok((room_id, room))
                };
                ctx.wait(work.into_actor(self).map(
                    move |created: Result<_, Refusal>, act, ctx| {
                        match created {
                            Ok((room_id, room)) => {
                                act.entered.insert(room_id, room);
                                // Written now, so it precedes the room's `enter`
                                // waiting in the mailbox.
                                act.send(
                                    ctx,
                                    Event::Created {
                                        room_id,
                                        name: &name,
                                        closed,
                                    },
                                );
                            }
                            Err(refusal) => act.error(ctx, &refusal.to_string()),
                        }
                    },
                ));
            }
            Command::Enter { room_id, .. } => {
                let slots = self.room_slots();
                let work = async move {
                    slots.await?;
                    let room = find(room_id).await?;
                    room.send(Enter { member, user }).await.map_err(failed)??;
                    Ok(room)
                };
                ctx.wait(work.into_actor(self).map(
                    move |entered: Result<_, Refusal>, act, ctx| match entered {
                        Ok(room) => {
                            act.entered.insert(room_id, room);
                        }
                        Err(refusal) => act.error(ctx, &refusal.to_string()),
                    },
                ));
            }
            Command::Exit { room_id, .. } => {
                self.entered.remove(&room_id);
                self.settle(ctx, async move {
                    let room = find(room_id).await?;
                    room.send(Exit {
                        conn,
                        closing: false,
                    })
                    .await
                    .map_err(failed)??;
                    Ok(None)
                });
            }
            Command::Message {
                content, room_id, ..
            } => self.settle(ctx, async move {
                let room = find(room_id).await?;
                let say = Say {
                    conn,
                    content,
                    time: now_ms(),
                };
                room.send(say).await.map_err(failed)??;
                Ok(None)
            }),
            Command::Read {
                message_id,
                room_id,
            } => self.settle(ctx, async move {
                let room = find(room_id).await?;
                room.send(MarkRead { conn, message_id })
                    .await
                    .map_err(failed)??;
                Ok(None)
            }),
            Command::Invite {
                user_id, room_id, ..
            } => {
                let Some(invitee) = self.settings.user_id(&user_id) else {
                    return self.error(ctx, &Refusal::UserIdNotUuid.to_string());
                };
                let registry = self.registry.clone();
                let max_pending = self.settings.max_pending_invites;
                self.settle(ctx, async move {
                    let room = find(room_id).await?;
                    let invite = Invite {
                        by: user.clone(),
                        user: invitee.clone(),
                        max_pending,
                    };
                    room.send(invite).await.map_err(failed)??;
                    registry.do_send(DeliverInvite {
                        user: invitee,
                        room_id,
                        inviter: user,
                    });
                    Ok(None)
                })
            }
            Command::Kick {
                user_id,
                room_id,
                message,
                permanent,
                ..
            } => self.settle(ctx, async move {
                let room = find(room_id).await?;
                let kick = Kick {
                    by: Kicker::User(user),
                    user: user_id,
                    message,
                    permanent,
                };
                room.send(kick).await.map_err(failed)??;
                Ok(None)
            }),
        }
    }
}

impl WsConnection for RoomsClient {
    fn core(&mut self) -> &mut ConnectionCore {
        &mut self.core
    }
}

crate::connection_handlers!(RoomsClient);

impl Actor for RoomsClient {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.core.started(ctx);
        let (key, user) = (self.key.clone(), self.user.clone());
        self.send(
            ctx,
            Event::Session {
                key: &key,
                user_id: &user,
            },
        );
        self.registry.do_send(UserOnline {
            user: user.to_string(),
            member: self.core.handle(ctx),
        });
        ctx.run_interval(self.settings.ping_interval, |act, ctx| act.ping(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.core.stopped();
        let conn = self.core.id();
        for room in self.entered.values() {
            room.do_send(Exit {
                conn,
                closing: true,
            });
        }
        self.registry.do_send(UserOffline {
            user: self.user.to_string(),
            conn,
        });
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for RoomsClient {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        let Some(inbound) = self.core.receive(item, ctx) else {
            return;
        };
        let started = Instant::now();
        match inbound {
            Inbound::Text(text) => self.command(ctx, &text),
            Inbound::Binary(_) => self.error(ctx, "invalid JSON"),
            Inbound::RateLimited { .. } => {
                self.error(ctx, "rate limit exceeded");
                self.core.close_if_abusive(ctx);
            }
        }
        self.core.observe_handling(started);
    }
}
