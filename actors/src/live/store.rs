//! Live presence's storage: accounts and the friend graph. A friendship
//! is stored once, with the smaller user id first.

use actix::prelude::*;
use chrono::Utc;
use rusqlite::{params, OptionalExtension};

use super::wire::FriendRequest;
use super::{FriendError, SentRequest};
use crate::store::{parse_time, rfc3339, write, SqliteStore, StoreActor, StoreError};

/// Live presence's operations on the database.
pub trait LiveStore {
    /// Records a live user (or its new username).
    fn live_user_seen(&mut self, user_id: &str, username: &str) -> Result<(), StoreError>;
    /// `from` asks the user called `to_username` to be friends; if that user
    /// asked first they become friends at once.
    fn live_send_request(
        &mut self,
        from: &str,
        to_username: &str,
    ) -> Result<Result<SentRequest, FriendError>, StoreError>;
    /// `me` accepts or rejects the pending request from `requester`.
    fn live_answer_request(
        &mut self,
        me: &str,
        requester: &str,
        accept: bool,
    ) -> Result<Result<(), FriendError>, StoreError>;
    /// Ends the friendship of `me` and `other`.
    fn live_remove_friend(
        &mut self,
        me: &str,
        other: &str,
    ) -> Result<Result<(), FriendError>, StoreError>;
    /// The friends of `me` as (user id, username), by username.
    fn live_friends(&mut self, me: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// The pending requests to `me`, oldest first.
    fn live_incoming_requests(&mut self, me: &str) -> Result<Vec<FriendRequest>, StoreError>;
}

impl LiveStore for SqliteStore {
    fn live_user_seen(&mut self, user_id: &str, username: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO live_users (user_id, username, seen_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(user_id) DO UPDATE SET username = excluded.username, seen_at = excluded.seen_at",
            params![user_id, username, rfc3339(Utc::now())],
        )?;
        Ok(())
    }

    fn live_send_request(
        &mut self,
        from: &str,
        to_username: &str,
    ) -> Result<Result<SentRequest, FriendError>, StoreError> {
        let tx = self.conn.transaction()?;
        // A username may have changed hands: the account that used it last wins.
        let to: Option<String> = tx
            .query_row(
                "SELECT user_id FROM live_users WHERE username = ?1 ORDER BY seen_at DESC LIMIT 1",
                [to_username],
                |r| r.get(0),
            )
            .optional()?;
        let Some(to) = to else {
            return Ok(Err(FriendError::UnknownUser));
        };
        if to == from {
            return Ok(Err(FriendError::Yourself));
        }
        let (a, b) = pair(from, &to);
        let friends: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM live_friendships WHERE user_a = ?1 AND user_b = ?2)",
            [a, b],
            |r| r.get(0),
        )?;
        if friends {
            return Ok(Err(FriendError::AlreadyFriends));
        }
        let pending = |from: &str, to: &str| -> Result<bool, rusqlite::Error> {
            tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM live_friend_requests WHERE from_id = ?1 AND to_id = ?2)",
                [from, to],
                |r| r.get(0),
            )
        };
        if pending(from, &to)? {
            return Ok(Err(FriendError::AlreadyPending));
        }
        let outcome = if pending(&to, from)? {
            tx.execute(
                "DELETE FROM live_friend_requests WHERE from_id = ?1 AND to_id = ?2",
                [to.as_str(), from],
            )?;
            tx.execute(
                "INSERT INTO live_friendships (user_a, user_b, since) VALUES (?1, ?2, ?3)",
                params![a, b, rfc3339(Utc::now())],
            )?;
            SentRequest::BecameFriends(to)
        } else {
            tx.execute(
                "INSERT INTO live_friend_requests (from_id, to_id, sent_at) VALUES (?1, ?2, ?3)",
                params![from, to, rfc3339(Utc::now())],
            )?;
            SentRequest::Pending(to)
        };
        tx.commit()?;
        Ok(Ok(outcome))
    }

    fn live_answer_request(
        &mut self,
        me: &str,
        requester: &str,
        accept: bool,
    ) -> Result<Result<(), FriendError>, StoreError> {
        let tx = self.conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM live_friend_requests WHERE from_id = ?1 AND to_id = ?2",
            [requester, me],
        )?;
        if removed == 0 {
            return Ok(Err(FriendError::NoSuchRequest));
        }
        if accept {
            let (a, b) = pair(me, requester);
            tx.execute(
                "INSERT INTO live_friendships (user_a, user_b, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![a, b, rfc3339(Utc::now())],
            )?;
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    fn live_remove_friend(
        &mut self,
        me: &str,
        other: &str,
    ) -> Result<Result<(), FriendError>, StoreError> {
        let (a, b) = pair(me, other);
        let removed = self.conn.execute(
            "DELETE FROM live_friendships WHERE user_a = ?1 AND user_b = ?2",
            [a, b],
        )?;
        Ok(if removed == 0 {
            Err(FriendError::NotFriends)
        } else {
            Ok(())
        })
    }

    fn live_friends(&mut self, me: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut query = self.conn.prepare(
            "SELECT u.user_id, u.username FROM live_friendships f
             JOIN live_users u ON u.user_id = CASE WHEN f.user_a = ?1 THEN f.user_b ELSE f.user_a END
             WHERE f.user_a = ?1 OR f.user_b = ?1
             ORDER BY u.username, u.user_id",
        )?;
        let friends = query
            .query_map([me], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(friends)
    }

    fn live_incoming_requests(&mut self, me: &str) -> Result<Vec<FriendRequest>, StoreError> {
        let mut query = self.conn.prepare(
            "SELECT r.from_id, u.username, r.sent_at FROM live_friend_requests r
             JOIN live_users u ON u.user_id = r.from_id
             WHERE r.to_id = ?1 ORDER BY r.sent_at, r.from_id",
        )?;
        let rows = query.query_map([me], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut requests = Vec::new();
        for row in rows {
            let (user_id, username, sent_at) = row?;
            requests.push(FriendRequest {
                user_id,
                username,
                sent_at: parse_time("live_friend_requests.sent_at", sent_at)?,
            });
        }
        Ok(requests)
    }
}

/// The stored (ordered) form of a friendship between `a` and `b`.
fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

/// A live user connected (or was registered by the operator).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct LiveUserSeen {
    /// The account's id.
    pub user_id: String,
    /// Its current username.
    pub username: String,
}

impl Handler<LiveUserSeen> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: LiveUserSeen, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "recording a live user", |s| {
            s.live_user_seen(&msg.user_id, &msg.username)
        })
    }
}

/// A change to the friend graph, as one transaction.
#[derive(Message)]
#[rtype(result = "Result<Result<FriendChange, FriendError>, StoreError>")]
pub enum ChangeFriends {
    /// `from` sends a request to the user called `to_username`.
    Request {
        /// The sender's id.
        from: String,
        /// The target's username.
        to_username: String,
    },
    /// `me` accepts or rejects the pending request from `requester`.
    Answer {
        /// Who answers.
        me: String,
        /// Whose request.
        requester: String,
        /// Accept (else reject).
        accept: bool,
    },
    /// `me` and `other` stop being friends.
    Remove {
        /// Who removes.
        me: String,
        /// The friend.
        other: String,
    },
}

/// What a [`ChangeFriends`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FriendChange {
    /// A request was sent (or made friends at once).
    Sent(SentRequest),
    /// The answer or removal was done.
    Done,
}

impl Handler<ChangeFriends> for StoreActor {
    type Result = Result<Result<FriendChange, FriendError>, StoreError>;
    fn handle(&mut self, msg: ChangeFriends, _: &mut Self::Context) -> Self::Result {
        write(
            &mut self.store,
            "changing the friend graph",
            |store| match msg {
                ChangeFriends::Request { from, to_username } => store
                    .live_send_request(&from, &to_username)
                    .map(|r| r.map(FriendChange::Sent)),
                ChangeFriends::Answer {
                    me,
                    requester,
                    accept,
                } => store
                    .live_answer_request(&me, &requester, accept)
                    .map(|r| r.map(|()| FriendChange::Done)),
                ChangeFriends::Remove { me, other } => store
                    .live_remove_friend(&me, &other)
                    .map(|r| r.map(|()| FriendChange::Done)),
            },
        )
    }
}

/// The friends of a user as (user id, username).
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, String)>, StoreError>")]
pub struct LiveFriends(pub String);

impl Handler<LiveFriends> for StoreActor {
    type Result = Result<Vec<(String, String)>, StoreError>;
    fn handle(&mut self, LiveFriends(me): LiveFriends, _: &mut Self::Context) -> Self::Result {
        self.store.live_friends(&me)
    }
}

/// The pending requests to a user.
#[derive(Message)]
#[rtype(result = "Result<Vec<FriendRequest>, StoreError>")]
pub struct IncomingFriendRequests(pub String);

impl Handler<IncomingFriendRequests> for StoreActor {
    type Result = Result<Vec<FriendRequest>, StoreError>;
    fn handle(
        &mut self,
        IncomingFriendRequests(me): IncomingFriendRequests,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.store.live_incoming_requests(&me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_friend_graph_follows_requests_answers_and_removals() {
        let mut s = SqliteStore::in_memory().unwrap();
        for (id, name) in [("u1", "alice"), ("u2", "bob"), ("u3", "carol")] {
            s.live_user_seen(id, name).unwrap();
        }
        let send =
            |s: &mut SqliteStore, from: &str, to: &str| s.live_send_request(from, to).unwrap();
        assert_eq!(send(&mut s, "u1", "nobody"), Err(FriendError::UnknownUser));
        assert_eq!(send(&mut s, "u1", "alice"), Err(FriendError::Yourself));
        assert_eq!(
            send(&mut s, "u1", "bob"),
            Ok(SentRequest::Pending("u2".into()))
        );
        assert_eq!(send(&mut s, "u1", "bob"), Err(FriendError::AlreadyPending));
        let incoming = s.live_incoming_requests("u2").unwrap();
        assert_eq!(incoming.len(), 1);
        assert_eq!(
            (incoming[0].user_id.as_str(), incoming[0].username.as_str()),
            ("u1", "alice")
        );
        assert!(
            s.live_incoming_requests("u1").unwrap().is_empty(),
            "incoming only"
        );
        assert_eq!(
            s.live_answer_request("u1", "u2", true).unwrap(),
            Err(FriendError::NoSuchRequest),
            "only the target answers"
        );
        assert_eq!(s.live_answer_request("u2", "u1", true).unwrap(), Ok(()));
        assert_eq!(
            send(&mut s, "u2", "alice"),
            Err(FriendError::AlreadyFriends)
        );
        assert_eq!(
            s.live_friends("u1").unwrap(),
            [("u2".to_owned(), "bob".to_owned())]
        );
        assert_eq!(
            s.live_friends("u2").unwrap(),
            [("u1".to_owned(), "alice".to_owned())]
        );

        // A crossing request makes friends at once; a rejected one does not.
        assert_eq!(
            send(&mut s, "u3", "alice"),
            Ok(SentRequest::Pending("u1".into()))
        );
        assert_eq!(
            send(&mut s, "u1", "carol"),
            Ok(SentRequest::BecameFriends("u3".into()))
        );
        assert!(s.live_incoming_requests("u1").unwrap().is_empty());
        assert_eq!(s.live_friends("u1").unwrap().len(), 2);
        assert_eq!(s.live_remove_friend("u3", "u1").unwrap(), Ok(()));
        assert_eq!(
            s.live_remove_friend("u3", "u1").unwrap(),
            Err(FriendError::NotFriends)
        );
        assert_eq!(
            send(&mut s, "u3", "bob"),
            Ok(SentRequest::Pending("u2".into()))
        );
        assert_eq!(s.live_answer_request("u2", "u3", false).unwrap(), Ok(()));
        assert!(s.live_friends("u3").unwrap().is_empty());
        assert_eq!(
            s.live_answer_request("u2", "u3", false).unwrap(),
            Err(FriendError::NoSuchRequest)
        );
    }
}
