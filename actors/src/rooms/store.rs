//! Permissioned rooms' storage: rooms, grants (admin, invite, ban),
//! pending invites and the reserved message ids. Messages themselves are
//! never stored.

use actix::prelude::*;
use chrono::Utc;
use rusqlite::params;

use super::{Grant, StoredRoom};
use crate::store::{rfc3339, write, SqliteStore, StoreActor, StoreError};

/// Permissioned rooms' operations on the database.
pub trait RoomsStore {
    /// Every permissioned room with its grants, in creation order.
    fn rooms(&mut self) -> Result<Vec<StoredRoom>, StoreError>;
    /// Records a new permissioned room, its first admins and who created it
    /// (none: the operator).
    fn create_room(
        &mut self,
        room_id: &str,
        name: &str,
        closed: bool,
        admins: &[String],
        creator: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Gives (`on`) or takes back a grant (admin, invite, ban) in a room.
    fn set_room_grant(
        &mut self,
        room_id: &str,
        user_id: &str,
        grant: Grant,
        on: bool,
    ) -> Result<(), StoreError>;
    /// Records that message ids up to `up_to` may be handed out in a room.
    fn reserve_message_ids(&mut self, room_id: &str, up_to: u64) -> Result<(), StoreError>;
    /// Invites a user to a room (the grant) and, if `pending`, records the
    /// invite from `inviter` as pending until the user enters; one transaction.
    fn invite_to_room(
        &mut self,
        room_id: &str,
        user_id: &str,
        inviter: &str,
        pending: bool,
    ) -> Result<(), StoreError>;
    /// The user entered the room: its pending invite there is used.
    fn use_room_invite(&mut self, room_id: &str, user_id: &str) -> Result<(), StoreError>;
    /// A user's pending invites as (room id, inviter), oldest first.
    fn pending_room_invites(&mut self, user_id: &str) -> Result<Vec<(String, String)>, StoreError>;
}

impl RoomsStore for SqliteStore {
    fn rooms(&mut self) -> Result<Vec<StoredRoom>, StoreError> {
        let mut query = self.conn.prepare(
            "SELECT room_id, name, closed, reserved_message_id, creator FROM rooms ORDER BY rowid",
        )?;
        let mut rooms = query
            .query_map([], |r| {
                Ok(StoredRoom {
                    room_id: r.get(0)?,
                    name: r.get(1)?,
                    closed: r.get(2)?,
                    reserved_message_id: r.get::<_, i64>(3)? as u64,
                    creator: r.get(4)?,
                    grants: Vec::new(),
                    pending_invites: Vec::new(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut pending = self.conn.prepare(
            "SELECT user_id, inviter FROM room_pending_invites WHERE room_id = ?1
             ORDER BY invited_at, rowid",
        )?;
        for room in &mut rooms {
            room.pending_invites = pending
                .query_map([&room.room_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
        }
        let mut query = self
            .conn
            .prepare("SELECT user_id, grant FROM room_grants WHERE room_id = ?1")?;
        for room in &mut rooms {
            let grants = query.query_map([&room.room_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for grant in grants {
                let (user, kind) = grant?;
                let grant = Grant::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                    key: "room_grants.grant".into(),
                    value: kind.clone(),
                })?;
                room.grants.push((user, grant));
            }
        }
        Ok(rooms)
    }

    fn create_room(
        &mut self,
        room_id: &str,
        name: &str,
        closed: bool,
        admins: &[String],
        creator: Option<&str>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO rooms (room_id, name, closed, created_at, creator) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![room_id, name, closed, rfc3339(Utc::now()), creator],
        )?;
        for admin in admins {
            tx.execute(
                "INSERT OR IGNORE INTO room_grants (room_id, user_id, grant) VALUES (?1, ?2, 'admin')",
                [room_id, admin.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn set_room_grant(
        &mut self,
        room_id: &str,
        user_id: &str,
        grant: Grant,
        on: bool,
    ) -> Result<(), StoreError> {
        let sql = if on {
            "INSERT OR IGNORE INTO room_grants (room_id, user_id, grant) VALUES (?1, ?2, ?3)"
        } else {
            "DELETE FROM room_grants WHERE room_id = ?1 AND user_id = ?2 AND grant = ?3"
        };
        let tx = self.conn.transaction()?;
        tx.execute(sql, [room_id, user_id, grant.as_str()])?;
        if grant == Grant::Invite && !on {
            // An invite taken back is no longer pending either.
            tx.execute(
                "DELETE FROM room_pending_invites WHERE room_id = ?1 AND user_id = ?2",
                [room_id, user_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn reserve_message_ids(&mut self, room_id: &str, up_to: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rooms SET reserved_message_id = MAX(reserved_message_id, ?2) WHERE room_id = ?1",
            params![room_id, up_to as i64],
        )?;
        Ok(())
    }

    fn invite_to_room(
        &mut self,
        room_id: &str,
        user_id: &str,
        inviter: &str,
        pending: bool,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO room_grants (room_id, user_id, grant) VALUES (?1, ?2, 'invite')",
            [room_id, user_id],
        )?;
        if pending {
            // A new invite to a user with one pending keeps its place in
            // line and names the latest inviter.
            tx.execute(
                "INSERT INTO room_pending_invites (room_id, user_id, inviter, invited_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(room_id, user_id) DO UPDATE SET inviter = excluded.inviter",
                params![room_id, user_id, inviter, rfc3339(Utc::now())],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn use_room_invite(&mut self, room_id: &str, user_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM room_pending_invites WHERE room_id = ?1 AND user_id = ?2",
            [room_id, user_id],
        )?;
        Ok(())
    }

    fn pending_room_invites(&mut self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut query = self.conn.prepare_cached(
            "SELECT p.room_id, p.inviter FROM room_pending_invites p
             JOIN rooms r ON r.room_id = p.room_id
             WHERE p.user_id = ?1 ORDER BY p.invited_at, r.rowid",
        )?;
        let invites = query
            .query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(invites)
    }
}

/// A permissioned room was created.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveRoom {
    /// Its id.
    pub room_id: String,
    /// Its name.
    pub name: String,
    /// Whether only invited users may enter.
    pub closed: bool,
    /// Its first admins.
    pub admins: Vec<String>,
    /// The user who created it (none: the operator's API).
    pub creator: Option<String>,
}

impl Handler<SaveRoom> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveRoom, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "saving a room", |s| {
            s.create_room(
                &msg.room_id,
                &msg.name,
                msg.closed,
                &msg.admins,
                msg.creator.as_deref(),
            )
        })
    }
}

/// A grant in a permissioned room was given or taken back.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveGrant {
    /// The room.
    pub room_id: String,
    /// The user.
    pub user_id: String,
    /// Which grant.
    pub grant: Grant,
    /// Given (else taken back).
    pub on: bool,
}

impl Handler<SaveGrant> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveGrant, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "saving a room grant", |s| {
            s.set_room_grant(&msg.room_id, &msg.user_id, msg.grant, msg.on)
        })
    }
}

/// Message ids up to `up_to` may now be handed out in a room (answered once
/// durable, before any of them is used).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ReserveMessageIds {
    /// The room.
    pub room_id: String,
    /// The new highest id.
    pub up_to: u64,
}

impl Handler<ReserveMessageIds> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: ReserveMessageIds, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "reserving message ids", |s| {
            s.reserve_message_ids(&msg.room_id, msg.up_to)
        })
    }
}

/// A user was invited to a permissioned room (answered once committed).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveInvite {
    /// The room.
    pub room_id: String,
    /// The invitee.
    pub user_id: String,
    /// Who invited.
    pub inviter: String,
    /// Whether the invite waits for the invitee to enter (and is delivered
    /// on each connect until then).
    pub pending: bool,
}

impl Handler<SaveInvite> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: SaveInvite, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "saving a room invite", |s| {
            s.invite_to_room(&msg.room_id, &msg.user_id, &msg.inviter, msg.pending)
        })
    }
}

/// An invitee entered the room: its pending invite there is used.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct UseInvite {
    /// The room.
    pub room_id: String,
    /// The invitee.
    pub user_id: String,
}

impl Handler<UseInvite> for StoreActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: UseInvite, _: &mut Self::Context) -> Self::Result {
        write(&mut self.store, "using a room invite", |s| {
            s.use_room_invite(&msg.room_id, &msg.user_id)
        })
    }
}

/// A user's pending room invites as (room id, inviter), oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, String)>, StoreError>")]
pub struct PendingInvites(pub String);

impl Handler<PendingInvites> for StoreActor {
    type Result = Result<Vec<(String, String)>, StoreError>;
    fn handle(
        &mut self,
        PendingInvites(user): PendingInvites,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.store.pending_room_invites(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_keep_their_grants_and_reserved_ids() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.create_room("r1", "club", true, &["alice".to_owned()], Some("alice"))
            .unwrap();
        s.create_room("r2", "open", false, &[], None).unwrap();
        s.set_room_grant("r1", "bob", Grant::Invite, true).unwrap();
        s.set_room_grant("r1", "bob", Grant::Invite, false).unwrap();
        s.set_room_grant("r1", "bob", Grant::Ban, true).unwrap();
        s.set_room_grant("r1", "bob", Grant::Ban, true).unwrap();
        s.reserve_message_ids("r1", 1000).unwrap();
        s.reserve_message_ids("r1", 500).unwrap();
        let rooms = s.rooms().unwrap();
        assert_eq!(rooms.len(), 2);
        assert_eq!((rooms[0].name.as_str(), rooms[0].closed), ("club", true));
        assert_eq!(rooms[0].reserved_message_id, 1000, "never goes back");
        let mut grants = rooms[0].grants.clone();
        grants.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            grants,
            [
                ("alice".to_owned(), Grant::Admin),
                ("bob".to_owned(), Grant::Ban)
            ]
        );
        assert!(rooms[1].grants.is_empty());
        assert_eq!(rooms[0].creator.as_deref(), Some("alice"));
        assert_eq!(rooms[1].creator, None);
        assert!(s.set_room_grant("nope", "x", Grant::Ban, true).is_err());
    }

    #[test]
    fn pending_invites_last_until_used_or_taken_back() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.create_room("r1", "one", true, &["alice".to_owned()], Some("alice"))
            .unwrap();
        s.create_room("r2", "two", false, &[], None).unwrap();
        s.invite_to_room("r1", "bob", "alice", true).unwrap();
        s.invite_to_room("r2", "bob", "carol", true).unwrap();
        s.invite_to_room("r2", "bob", "dave", true).unwrap();
        s.invite_to_room("r2", "erin", "dave", false).unwrap();
        let pending = |s: &mut SqliteStore, user: &str| s.pending_room_invites(user).unwrap();
        assert_eq!(
            pending(&mut s, "bob"),
            [
                ("r1".to_owned(), "alice".to_owned()),
                ("r2".to_owned(), "dave".to_owned())
            ],
            "oldest first, one per room, the latest inviter"
        );
        assert!(pending(&mut s, "erin").is_empty(), "granted, not pending");
        let rooms = s.rooms().unwrap();
        assert_eq!(
            rooms[0].pending_invites,
            [("bob".to_owned(), "alice".to_owned())]
        );
        assert!(rooms[1]
            .grants
            .contains(&("erin".to_owned(), Grant::Invite)));
        s.use_room_invite("r1", "bob").unwrap();
        assert_eq!(pending(&mut s, "bob").len(), 1);
        assert!(
            s.rooms().unwrap()[0]
                .grants
                .contains(&("bob".to_owned(), Grant::Invite)),
            "entering uses the pending invite, not the grant"
        );
        s.set_room_grant("r2", "bob", Grant::Invite, false).unwrap();
        assert!(pending(&mut s, "bob").is_empty());
        assert!(s.invite_to_room("nope", "bob", "x", true).is_err());
    }
}
