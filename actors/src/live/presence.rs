//! The Presence actor: who is online, on which connections, playing what.
//!
//! One actor holds it (no global lock): connections report arrivals and
//! departures, and ask it to deliver popups. A user with several connections
//! is online once and every connection receives. Each popup is encoded once
//! and queued to all of a recipient's connections through the fan-out helper.

use std::collections::HashMap;

use actix::prelude::*;

use super::wire::{Popup, Reply};
use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::FanOut;
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::Protocol;

/// Everyone online. Runs supervised.
pub struct Presence {
    online: HashMap<String, Online>,
    evict_after: u32,
    _alive: ActorGauge,
}

struct Online {
    connections: FanOut,
    playing: Option<String>,
    /// The username of its latest connection (the console's live tab).
    name: String,
}

impl Presence {
    /// Nobody online yet; a connection is dropped after `evict_after` drops in a row.
    pub fn new(evict_after: u32) -> Self {
        Presence {
            online: HashMap::new(),
            evict_after,
            _alive: ActorGauge::new(ActorKind::LivePresence),
        }
    }

    /// Queues `frame` to every connection of every online user in `to`.
    fn deliver<'a>(&mut self, to: impl IntoIterator<Item = &'a String>, frame: &Frames) {
        for user in to {
            if let Some(online) = self.online.get_mut(user) {
                online.connections.broadcast(frame);
            }
        }
    }

    fn count(&self) {
        metrics().live_users.set(self.online.len() as i64);
    }
}

impl Actor for Presence {
    type Context = Context<Self>;
}

impl Supervised for Presence {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("live presence restarting");
        metrics().actor_restarted(ActorKind::LivePresence);
    }
}

fn popup(popup: Popup<'_>) -> Frames {
    Frames::One(Reply::Popup(popup).encode(None).into())
}

/// A connection of `user_id` is open. If the user was offline, its online
/// friends (`friends`, user ids) get the `Online` popup.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Arrive {
    /// The user.
    pub user_id: String,
    /// Its username, for the popup.
    pub name: String,
    /// The connection.
    pub member: MemberHandle,
    /// The user's friends.
    pub friends: Vec<String>,
}

impl Handler<Arrive> for Presence {
    type Result = ();
    fn handle(&mut self, msg: Arrive, _: &mut Self::Context) {
        let evict_after = self.evict_after;
        let online = self.online.entry(msg.user_id).or_insert_with(|| Online {
            connections: FanOut::new(Protocol::Live, evict_after),
            playing: None,
            name: String::new(),
        });
        online.name.clone_from(&msg.name);
        let first = online.connections.is_empty();
        online.connections.join(msg.member);
        if first {
            self.count();
            self.deliver(&msg.friends, &popup(Popup::Online { name: &msg.name }));
        }
    }
}

/// A connection closed; the user is offline when it was the last.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Depart {
    /// The user.
    pub user_id: String,
    /// The connection.
    pub conn: ConnId,
}

impl Handler<Depart> for Presence {
    type Result = ();
    fn handle(&mut self, msg: Depart, _: &mut Self::Context) {
        if let Some(online) = self.online.get_mut(&msg.user_id) {
            online.connections.leave(msg.conn);
            if online.connections.is_empty() {
                self.online.remove(&msg.user_id);
                self.count();
            }
        }
    }
}

/// The user started a game: remembered, and the `Now playing` popup goes to
/// its online friends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NowPlaying {
    /// The user.
    pub user_id: String,
    /// Its username.
    pub name: String,
    /// The game.
    pub game: String,
    /// The user's friends.
    pub friends: Vec<String>,
}

impl Handler<NowPlaying> for Presence {
    type Result = ();
    fn handle(&mut self, msg: NowPlaying, _: &mut Self::Context) {
        if let Some(online) = self.online.get_mut(&msg.user_id) {
            online.playing = Some(msg.game.clone());
        }
        let frame = popup(Popup::NowPlaying {
            name: &msg.name,
            game: &msg.game,
        });
        self.deliver(&msg.friends, &frame);
    }
}

/// A friend-request popup for one user, if online.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notify {
    /// The recipient.
    pub user_id: String,
    /// The popup, already encoded.
    pub frame: Frames,
}

impl Notify {
    /// `Friend request` from `name` to `user_id`.
    pub fn request(user_id: String, name: &str) -> Self {
        Notify {
            user_id,
            frame: popup(Popup::FriendRequest { name }),
        }
    }

    /// `Friend request accepted` by `name`, to `user_id`.
    pub fn accepted(user_id: String, name: &str) -> Self {
        Notify {
            user_id,
            frame: popup(Popup::FriendRequestAccepted { name }),
        }
    }
}

impl Handler<Notify> for Presence {
    type Result = ();
    fn handle(&mut self, msg: Notify, _: &mut Self::Context) {
        self.deliver([&msg.user_id], &msg.frame);
    }
}

/// The number of distinct users online.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct OnlineCount;

impl Handler<OnlineCount> for Presence {
    type Result = usize;
    fn handle(&mut self, _: OnlineCount, _: &mut Self::Context) -> usize {
        self.online.len()
    }
}

/// Whether each of these users is online, and what it plays.
#[derive(Message)]
#[rtype(result = "Vec<(bool, Option<String>)>")]
pub struct Statuses(pub Vec<String>);

impl Handler<Statuses> for Presence {
    type Result = Vec<(bool, Option<String>)>;
    fn handle(&mut self, Statuses(users): Statuses, _: &mut Self::Context) -> Self::Result {
        users
            .iter()
            .map(|u| match self.online.get(u) {
                Some(online) => (true, online.playing.clone()),
                None => (false, None),
            })
            .collect()
    }
}

/// One online user as the operator console's live tab shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OnlineUser {
    /// The account's id (the token's `sub`).
    pub user_id: String,
    /// Its username.
    pub name: String,
    /// The game it last said it plays, if any.
    pub playing: Option<String>,
    /// Its open live connections.
    pub connections: usize,
}

/// Everyone online, by username then id (read-only; the admin API's
/// `GET /api/admin/live/users`).
#[derive(Message)]
#[rtype(result = "Vec<OnlineUser>")]
pub struct OnlineUsers;

impl Handler<OnlineUsers> for Presence {
    type Result = MessageResult<OnlineUsers>;
    fn handle(&mut self, _: OnlineUsers, _: &mut Self::Context) -> Self::Result {
        let mut users: Vec<OnlineUser> = self
            .online
            .iter()
            .map(|(user_id, online)| OnlineUser {
                user_id: user_id.clone(),
                name: online.name.clone(),
                playing: online.playing.clone(),
                connections: online.connections.len(),
            })
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.user_id.cmp(&b.user_id)));
        MessageResult(users)
    }
}
