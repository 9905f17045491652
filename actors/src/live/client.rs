//! The LiveClient: the live protocol's state of one authenticated user's
//! connection.
//!
//! Its identity comes from the JWT checked at the upgrade. On start it
//! records the user, loads its friends and reports to [`Presence`] (which
//! tells online friends when the user comes online). Requests are handled
//! one at a time, so replies keep the order of the requests; the friend
//! graph is read and changed on the store thread, never here.

use std::sync::Arc;

use actix::prelude::*;
use actix_web::web::Bytes;
use bytestring::ByteString;

use super::presence::{Arrive, Depart, Notify, NowPlaying, OnlineCount, Presence, Statuses};
use super::store::{
    ChangeFriends, FriendChange, IncomingFriendRequests, LiveFriends, LiveUserSeen,
};
use super::wire::{Friend, Reply, Request, RequestKind};
use super::{FriendError, LiveUser, SentRequest};
use crate::connection::{Connection, ConnectionContext, Disconnect, Frames, Hooks};
use crate::metrics::metrics;
use crate::store::{StoreError, StoreHandle};
use crate::Protocol;

/// One connection of a live user.
pub struct LiveClient {
    me: Arc<LiveUser>,
    store: StoreHandle,
    presence: Addr<Presence>,
}

/// Why a request could not be served (the text goes back in `error`).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Refused(#[from] FriendError),
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Internal(e.to_string())
    }
}

impl From<MailboxError> for Failure {
    fn from(e: MailboxError) -> Self {
        Failure::Internal(e.to_string())
    }
}

/// The ids of a user's friends, from the store.
async fn friend_ids(store: &StoreHandle, user: &str) -> Result<Vec<String>, Failure> {
    let friends = store.send(LiveFriends(user.to_owned())).await??;
    Ok(friends.into_iter().map(|(id, _)| id).collect())
}

impl LiveClient {
    /// A connection of the authenticated `me`.
    pub fn new(me: LiveUser, store: StoreHandle, presence: Addr<Presence>) -> Self {
        LiveClient {
            me: Arc::new(me),
            store,
            presence,
        }
    }

    /// Clones of what a request's work needs off the connection.
    fn parts(&self) -> (Arc<LiveUser>, StoreHandle, Addr<Presence>) {
        (self.me.clone(), self.store.clone(), self.presence.clone())
    }
}

impl Connection<LiveClient> {
    fn reply(&mut self, reply: Reply<'_>, id: Option<&str>) {
        let frame = reply.encode(id);
        self.core.write(Frames::One(frame.into()));
    }

    /// Runs `work` (store and presence round trips) and writes the frame it
    /// makes, if any, or the failure as `error`; the actor handles nothing
    /// else meanwhile, so replies keep the order of the requests.
    fn answer<F>(&mut self, ctx: &mut ConnectionContext<LiveClient>, id: Option<String>, work: F)
    where
        F: std::future::Future<Output = Result<Option<String>, Failure>> + 'static,
    {
        ctx.wait(work.into_actor(self).map(move |result, act, _| {
            let frame = match result {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(failure) => {
                    if let Failure::Internal(detail) = &failure {
                        log::error!("live request of {} failed: {detail}", act.state.me.id);
                    }
                    Reply::Error(&failure.to_string()).encode(id.as_deref())
                }
            };
            act.core.write(Frames::One(frame.into()));
        }));
    }

    /// The request's `message`, which this kind needs (`what` it holds);
    /// answers `error` when it is missing.
    fn required(
        &mut self,
        message: Option<String>,
        what: &str,
        id: Option<&str>,
    ) -> Option<String> {
        if message.is_none() {
            let reason = format!("`message` ({what}) is required");
            self.reply(Reply::Error(&reason), id);
        }
        message
    }

    fn request(&mut self, ctx: &mut ConnectionContext<LiveClient>, text: &str) {
        let request = match Request::decode(text) {
            Ok(request) => request,
            Err(bad) => {
                metrics().protocol_error(Protocol::Live, bad.kind);
                return self.reply(Reply::Error(&bad.reason), bad.id.as_deref());
            }
        };
        let Request { kind, message, id } = request;
        match kind {
            RequestKind::Ping => self.reply(Reply::Pong, id.as_deref()),
            RequestKind::Get => self.online_count(ctx, id),
            RequestKind::NowPlaying => self.now_playing(ctx, message, id),
            RequestKind::SendFriendRequest => self.send_friend_request(ctx, message, id),
            RequestKind::AcceptFriendRequest
            | RequestKind::RejectFriendRequest
            | RequestKind::RemoveFriend => self.change_friendship(ctx, kind, message, id),
            RequestKind::GetFriendRequests => self.friend_requests(ctx, id),
            RequestKind::GetFriends => self.friends(ctx, id),
        }
    }

    /// `get`: how many users are online.
    fn online_count(&mut self, ctx: &mut ConnectionContext<LiveClient>, id: Option<String>) {
        let (presence, reply_id) = (self.state.presence.clone(), id.clone());
        self.answer(ctx, id, async move {
            let count = presence.send(OnlineCount).await?;
            Ok(Some(Reply::Count(count).encode(reply_id.as_deref())))
        })
    }

    /// `now playing {message: game}`: the online friends get a popup; no
    /// reply unless it failed.
    fn now_playing(
        &mut self,
        ctx: &mut ConnectionContext<LiveClient>,
        message: Option<String>,
        id: Option<String>,
    ) {
        let Some(game) = self.required(message, "the game", id.as_deref()) else {
            return;
        };
        let (me, store, presence) = self.state.parts();
        self.answer(ctx, id, async move {
            let friends = friend_ids(&store, &me.id).await?;
            presence.do_send(NowPlaying {
                user_id: me.id.clone(),
                name: me.name.clone(),
                game,
                friends,
            });
            Ok(None)
        })
    }

    /// `send friend request {message: username}`: pending for the target,
    /// or a friendship if the target had asked first; the target is told.
    fn send_friend_request(
        &mut self,
        ctx: &mut ConnectionContext<LiveClient>,
        message: Option<String>,
        id: Option<String>,
    ) {
        let Some(username) = self.required(message, "a username", id.as_deref()) else {
            return;
        };
        let (me, store, presence) = self.state.parts();
        let reply_id = id.clone();
        self.answer(ctx, id, async move {
            let change = ChangeFriends::Request {
                from: me.id.clone(),
                to_username: username,
            };
            match store.send(change).await??? {
                FriendChange::Sent(SentRequest::Pending(to)) => {
                    presence.do_send(Notify::request(to, &me.name))
                }
                FriendChange::Sent(SentRequest::BecameFriends(to)) => {
                    presence.do_send(Notify::accepted(to, &me.name))
                }
                FriendChange::Done => {}
            }
            Ok(Some(Reply::Success.encode(reply_id.as_deref())))
        })
    }

    /// `accept` / `reject friend request` and `remove friend` (`message`:
    /// the other user's id); an accepted requester is told.
    fn change_friendship(
        &mut self,
        ctx: &mut ConnectionContext<LiveClient>,
        kind: RequestKind,
        message: Option<String>,
        id: Option<String>,
    ) {
        let Some(other) = self.required(message, "a user id", id.as_deref()) else {
            return;
        };
        let (me, store, presence) = self.state.parts();
        let change = match kind {
            RequestKind::RemoveFriend => ChangeFriends::Remove {
                me: me.id.clone(),
                other: other.clone(),
            },
            _ => ChangeFriends::Answer {
                me: me.id.clone(),
                requester: other.clone(),
                accept: kind == RequestKind::AcceptFriendRequest,
            },
        };
        let reply_id = id.clone();
        self.answer(ctx, id, async move {
            store.send(change).await???;
            if kind == RequestKind::AcceptFriendRequest {
                presence.do_send(Notify::accepted(other, &me.name));
            }
            Ok(Some(Reply::Success.encode(reply_id.as_deref())))
        })
    }

    /// `get friend requests`: the incoming pending ones.
    fn friend_requests(&mut self, ctx: &mut ConnectionContext<LiveClient>, id: Option<String>) {
        let (me, store, reply_id) = (self.state.me.clone(), self.state.store.clone(), id.clone());
        self.answer(ctx, id, async move {
            let requests = store.send(IncomingFriendRequests(me.id.clone())).await??;
            Ok(Some(
                Reply::FriendRequests(&requests).encode(reply_id.as_deref()),
            ))
        })
    }

    /// `get friends`: each with whether it is online and what it plays.
    fn friends(&mut self, ctx: &mut ConnectionContext<LiveClient>, id: Option<String>) {
        let (me, store, presence) = self.state.parts();
        let reply_id = id.clone();
        self.answer(ctx, id, async move {
            let friends = store.send(LiveFriends(me.id.clone())).await??;
            let ids = friends.iter().map(|(id, _)| id.clone()).collect();
            let statuses = presence.send(Statuses(ids)).await?;
            let friends: Vec<Friend> = friends
                .into_iter()
                .zip(statuses)
                .map(|((user_id, username), (online, playing))| Friend {
                    user_id,
                    username,
                    online,
                    playing,
                })
                .collect();
            Ok(Some(Reply::Friends(&friends).encode(reply_id.as_deref())))
        })
    }
}

impl Hooks for LiveClient {
    /// Records the user, loads its friends and reports to presence; the
    /// connection handles nothing else meanwhile. A failure closes it.
    fn join(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>) {
        conn.core.identify(&conn.state.me.id);
        let (me, store, presence) = conn.state.parts();
        let member = conn.core.handle(ctx);
        let arrive = async move {
            store
                .send(LiveUserSeen {
                    user_id: me.id.clone(),
                    username: me.name.clone(),
                })
                .await??;
            let friends = friend_ids(&store, &me.id).await?;
            presence
                .send(Arrive {
                    user_id: me.id.clone(),
                    name: me.name.clone(),
                    member,
                    friends,
                })
                .await?;
            Ok::<_, Failure>(())
        };
        ctx.wait(arrive.into_actor(conn).map(|arrived, act, ctx| {
            if let Err(failure) = arrived {
                log::error!(
                    "live user {} could not come online: {failure:?}",
                    act.state.me.id
                );
                act.core.close(ctx, &Disconnect::internal_error());
            }
        }));
    }

    fn handle_text(
        conn: &mut Connection<Self>,
        ctx: &mut ConnectionContext<Self>,
        text: ByteString,
    ) {
        conn.request(ctx, &text);
    }

    fn handle_binary(conn: &mut Connection<Self>, _: &mut ConnectionContext<Self>, _: Bytes) {
        conn.reply(Reply::Error("invalid JSON"), None);
    }

    fn rate_limited(conn: &mut Connection<Self>, _: &mut ConnectionContext<Self>, _text: bool) {
        conn.reply(Reply::Error("rate limit exceeded"), None);
    }

    fn terminate(conn: &mut Connection<Self>) {
        conn.state.presence.do_send(Depart {
            user_id: conn.state.me.id.clone(),
            conn: conn.core.id(),
        });
    }
}
