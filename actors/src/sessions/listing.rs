//! The SessionListing actor: one listed game session.
//!
//! It owns the session's state and its TTL, turns each host update into the
//! smallest set of protocol messages (`update`, `add_user`, `remove_user`, or
//! `remove` + `add` when a host field changes), encodes them once and hands
//! them to the feed. It decides its own end (DELETE or TTL) and tells the
//! directory before it answers anyone else, so a request that finds it gone
//! can retry through the directory and never sees a stale entry.

use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use serde::Deserialize;

use super::directory::{ListingDirectory, ListingGone};
use super::feed::{ListingState, Publish, SessionFeed};
use super::wire::{Epoch, ServerMessage, Session, SessionUser};
use crate::metrics::{metrics, ActorGauge, ActorKind};

/// Why a listing could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// The listing was removed (deleted, expired or replaced by a resync).
    #[error("session not found")]
    Gone,
    /// No user with that id is in the session.
    #[error("user not found in this session")]
    UnknownUser,
}

/// One listed session.
pub struct SessionListing {
    session: Session,
    epoch: Epoch,
    ttl: Duration,
    feed: Addr<SessionFeed>,
    directory: Addr<ListingDirectory>,
    expiry: Option<SpawnHandle>,
    unlisted: bool,
    _alive: ActorGauge,
}

impl SessionListing {
    /// A listing of `session` in `epoch`. It does not announce itself:
    /// whoever creates it has already queued its `add` with the feed (see
    /// [`announcement`](Self::announcement)), so the host's answer can never
    /// overtake it.
    pub(crate) fn new(
        session: Session,
        epoch: Epoch,
        ttl: Duration,
        feed: Addr<SessionFeed>,
        directory: Addr<ListingDirectory>,
    ) -> Self {
        SessionListing {
            session,
            epoch,
            ttl,
            feed,
            directory,
            expiry: None,
            unlisted: false,
            _alive: ActorGauge::new(ActorKind::SessionListing),
        }
    }

    /// What tells the feed that `session` is listed: its `add`, broadcast
    /// and kept for new watchers' snapshots.
    pub(crate) fn announcement(epoch: Epoch, session: &Session) -> Publish {
        let add = Self::add_frame(epoch, session);
        Publish {
            epoch,
            session_id: session.session_id.clone(),
            frames: vec![add.clone()],
            state: ListingState::Listed(add),
        }
    }

    /// The `add` frame of `session` in `epoch`.
    pub(crate) fn add_frame(epoch: Epoch, session: &Session) -> ByteString {
        ServerMessage::Add {
            epoch,
            session: session.clone(),
        }
        .encode()
        .into()
    }

    fn publish(&self, messages: Vec<ServerMessage>) {
        let state = if self.unlisted {
            ListingState::Unlisted
        } else {
            ListingState::Listed(Self::add_frame(self.epoch, &self.session))
        };
        self.feed.do_send(Publish {
            epoch: self.epoch,
            session_id: self.session.session_id.clone(),
            frames: messages.iter().map(|m| m.encode().into()).collect(),
            state,
        });
    }

    fn arm_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
        self.expiry = Some(ctx.run_later(self.ttl, |act, ctx| {
            log::info!(
                "session {} expired (no refresh for {:?})",
                act.session.session_id,
                act.ttl
            );
            act.unlist(ctx, true);
        }));
    }

    /// Ends the listing: stops the timer, tells the directory, and (unless a
    /// resync replaced it) broadcasts `remove`.
    fn unlist(&mut self, ctx: &mut Context<Self>, broadcast: bool) {
        if self.unlisted {
            return;
        }
        self.unlisted = true;
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
        self.directory.do_send(ListingGone {
            session_id: self.session.session_id.clone(),
            listing: ctx.address(),
        });
        if broadcast {
            self.publish(vec![ServerMessage::Remove {
                epoch: self.epoch,
                session_id: self.session.session_id.clone(),
            }]);
        }
    }

    fn live(&self) -> Result<(), ListingError> {
        if self.unlisted {
            Err(ListingError::Gone)
        } else {
            Ok(())
        }
    }
}

impl Actor for SessionListing {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.unlisted {
            return;
        }
        self.arm_expiry(ctx);
    }
}

impl Supervised for SessionListing {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("session listing {} restarting", self.session.session_id);
        metrics().actor_restarted(ActorKind::SessionListing);
    }
}

/// The messages that take a session from `old` to `new`.
pub fn diff(epoch: Epoch, old: &Session, new: &Session) -> Vec<ServerMessage> {
    let session_id = new.session_id.clone();
    let host_changed = old.host_username != new.host_username
        || old.host_registration_date != new.host_registration_date
        || old.host_is_patron != new.host_is_patron
        || old.host_is_mentor != new.host_is_mentor
        || old.session_begin_time != new.session_begin_time;
    if host_changed {
        return vec![
            ServerMessage::Remove { epoch, session_id },
            ServerMessage::Add {
                epoch,
                session: new.clone(),
            },
        ];
    }
    let mut out = Vec::new();
    if old.session_name != new.session_name
        || old.active_users != new.active_users
        || old.joined_users != new.joined_users
    {
        out.push(update(epoch, new));
    }
    let find = |users: &[SessionUser], id: &str| users.iter().position(|u| u.user_id == id);
    for gone in &old.users {
        match find(&new.users, &gone.user_id) {
            Some(i) if new.users[i] == *gone => {}
            _ => out.push(remove_user(epoch, &session_id, gone)),
        }
    }
    for user in &new.users {
        match find(&old.users, &user.user_id) {
            Some(i) if old.users[i] == *user => {}
            _ => out.push(ServerMessage::AddUser {
                epoch,
                session_id: session_id.clone(),
                user: user.clone(),
            }),
        }
    }
    out
}

fn update(epoch: Epoch, session: &Session) -> ServerMessage {
    ServerMessage::Update {
        epoch,
        session_id: session.session_id.clone(),
        session_name: session.session_name.clone(),
        active_users: session.active_users,
        joined_users: session.joined_users,
    }
}

fn remove_user(epoch: Epoch, session_id: &str, user: &SessionUser) -> ServerMessage {
    ServerMessage::RemoveUser {
        epoch,
        session_id: session_id.to_owned(),
        user_id: user.user_id.clone(),
        username: user.username.clone(),
    }
}

/// Replaces the session (host PUT); also refreshes the TTL.
#[derive(Message)]
#[rtype(result = "Result<Session, ListingError>")]
pub struct PutSession(pub Session);

impl Handler<PutSession> for SessionListing {
    type Result = Result<Session, ListingError>;
    fn handle(&mut self, PutSession(new): PutSession, ctx: &mut Self::Context) -> Self::Result {
        self.live()?;
        let messages = diff(self.epoch, &self.session, &new);
        self.session = new;
        self.arm_expiry(ctx);
        if !messages.is_empty() {
            self.publish(messages);
        }
        Ok(self.session.clone())
    }
}

/// The mutable fields a host may change alone (PATCH); omitted fields keep
/// their values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPatch {
    /// New name.
    pub session_name: Option<String>,
    /// New active user count.
    pub active_users: Option<i32>,
    /// New joined user count.
    pub joined_users: Option<i32>,
}

/// Applies a [`SessionPatch`] and broadcasts `update` if anything changed.
#[derive(Message)]
#[rtype(result = "Result<Session, ListingError>")]
pub struct PatchSession(pub SessionPatch);

impl Handler<PatchSession> for SessionListing {
    type Result = Result<Session, ListingError>;
    fn handle(&mut self, PatchSession(patch): PatchSession, _: &mut Self::Context) -> Self::Result {
        self.live()?;
        let before = self.session.clone();
        if let Some(name) = patch.session_name {
            self.session.session_name = name;
        }
        if let Some(n) = patch.active_users {
            self.session.active_users = n;
        }
        if let Some(n) = patch.joined_users {
            self.session.joined_users = n;
        }
        if self.session != before {
            self.publish(vec![update(self.epoch, &self.session)]);
        }
        Ok(self.session.clone())
    }
}

/// Adds a user to the session, or replaces the user with the same id.
#[derive(Message)]
#[rtype(result = "Result<Session, ListingError>")]
pub struct PutUser(pub SessionUser);

impl Handler<PutUser> for SessionListing {
    type Result = Result<Session, ListingError>;
    fn handle(&mut self, PutUser(user): PutUser, _: &mut Self::Context) -> Self::Result {
        self.live()?;
        let mut new = self.session.clone();
        match new.users.iter_mut().find(|u| u.user_id == user.user_id) {
            Some(existing) => *existing = user,
            None => new.users.push(user),
        }
        let messages = diff(self.epoch, &self.session, &new);
        self.session = new;
        if !messages.is_empty() {
            self.publish(messages);
        }
        Ok(self.session.clone())
    }
}

/// Removes a user from the session.
#[derive(Message)]
#[rtype(result = "Result<Session, ListingError>")]
pub struct RemoveUser(pub String);

impl Handler<RemoveUser> for SessionListing {
    type Result = Result<Session, ListingError>;
    fn handle(&mut self, RemoveUser(user_id): RemoveUser, _: &mut Self::Context) -> Self::Result {
        self.live()?;
        let i = self
            .session
            .users
            .iter()
            .position(|u| u.user_id == user_id)
            .ok_or(ListingError::UnknownUser)?;
        let user = self.session.users.remove(i);
        self.publish(vec![remove_user(
            self.epoch,
            &self.session.session_id,
            &user,
        )]);
        Ok(self.session.clone())
    }
}

/// The session's current state.
#[derive(Message)]
#[rtype(result = "Result<Session, ListingError>")]
pub struct GetSession;

impl Handler<GetSession> for SessionListing {
    type Result = Result<Session, ListingError>;
    fn handle(&mut self, _: GetSession, _: &mut Self::Context) -> Self::Result {
        self.live()?;
        Ok(self.session.clone())
    }
}

/// Removes the listing (host DELETE) and broadcasts `remove`.
#[derive(Message)]
#[rtype(result = "Result<Session, ListingError>")]
pub struct Unlist;

impl Handler<Unlist> for SessionListing {
    type Result = Result<Session, ListingError>;
    fn handle(&mut self, _: Unlist, ctx: &mut Self::Context) -> Self::Result {
        self.live()?;
        self.unlist(ctx, true);
        Ok(self.session.clone())
    }
}

/// Ends the listing silently: a resync replaced it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

impl Handler<Retire> for SessionListing {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        self.unlist(ctx, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn user(id: &str, name: &str) -> SessionUser {
        SessionUser {
            user_id: id.into(),
            username: name.into(),
            registration_date: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
            is_patron: false,
            is_mentor: false,
        }
    }

    fn session(users: Vec<SessionUser>) -> Session {
        Session {
            session_id: "s1".into(),
            session_name: "Friday".into(),
            active_users: 1,
            joined_users: 2,
            host_username: "host".into(),
            host_registration_date: Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap(),
            host_is_patron: true,
            host_is_mentor: false,
            session_begin_time: Utc.with_ymd_and_hms(2025, 11, 3, 0, 45, 12).unwrap(),
            users,
        }
    }

    #[test]
    fn identical_sessions_need_no_message() {
        let s = session(vec![user("u1", "alice")]);
        assert!(diff(7, &s, &s.clone()).is_empty());
    }

    #[test]
    fn a_name_or_count_change_is_one_update() {
        let old = session(vec![]);
        let mut new = old.clone();
        new.active_users = 9;
        assert_eq!(
            diff(7, &old, &new),
            vec![ServerMessage::Update {
                epoch: 7,
                session_id: "s1".into(),
                session_name: "Friday".into(),
                active_users: 9,
                joined_users: 2,
            }]
        );
    }

    #[test]
    fn user_differences_become_add_user_and_remove_user() {
        let old = session(vec![user("u1", "alice"), user("u2", "bob")]);
        let new = session(vec![user("u2", "bobby"), user("u3", "carol")]);
        assert_eq!(
            diff(7, &old, &new),
            vec![
                remove_user(7, "s1", &user("u1", "alice")),
                remove_user(7, "s1", &user("u2", "bob")),
                ServerMessage::AddUser {
                    epoch: 7,
                    session_id: "s1".into(),
                    user: user("u2", "bobby")
                },
                ServerMessage::AddUser {
                    epoch: 7,
                    session_id: "s1".into(),
                    user: user("u3", "carol")
                },
            ]
        );
    }

    #[test]
    fn a_host_field_change_is_remove_then_add() {
        let old = session(vec![]);
        let mut new = old.clone();
        new.host_is_mentor = true;
        new.active_users = 5;
        assert_eq!(
            diff(7, &old, &new),
            vec![
                ServerMessage::Remove {
                    epoch: 7,
                    session_id: "s1".into()
                },
                ServerMessage::Add {
                    epoch: 7,
                    session: new.clone()
                },
            ]
        );
    }
}
