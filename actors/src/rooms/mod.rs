//! Permissioned rooms (PROTOCOLS.md §5, seed `004`): closed rooms, admins,
//! invites, kicks and permanent bans, read receipts; messages are relayed
//! and never stored.
//!
//! - [`wire`]: the exact JSON frames, pure.
//! - [`RoomsClient`]: the protocol's hooks and state in the shared
//!   connection actor of one authenticated user; its session key, the JSON
//!   ping/pong liveness check, and every command. It holds the address of
//!   each room it entered and queues its in-room commands there without
//!   waiting for each (the directory is asked only about rooms it is not
//!   in).
//! - [`Room`]: one actor per room; who is in it and who may do what, and
//!   the message ids (strictly increasing, reserved in the store in blocks so
//!   they keep increasing across restarts without storing any message). It
//!   queues its refusals to the asking connection in its own order, among
//!   its broadcasts.
//! - [`RoomsDirectory`]: its own supervised actor; the rooms, how many each
//!   user created, and each online user's connections (for invites, also
//!   those made while it was offline).

mod directory;
mod member;
mod room;
pub mod store;
pub mod wire;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::metrics::{metrics, ProtocolErrorKind};
use crate::Protocol;

pub use directory::{AllRooms, CreateRoom, Creator, FindRoom, RoomsDirectory};
pub use member::RoomsClient;
pub use room::{DescribeRoom, Kick, Kicker, LiftBan, ListBans, Room, RoomSummary, ServerSay};

/// Now as the protocol's `time`: UNIX milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Settings of the permissioned rooms (`[rooms]` in the config).
#[derive(Debug, Clone)]
pub struct RoomsSettings {
    /// How often the server sends `ping {time}`.
    pub ping_interval: Duration,
    /// How long a client has to answer with the same `time`.
    pub pong_timeout: Duration,
    /// Invites not used yet that one room may hold (each is stored and
    /// delivered on every connect of its invitee).
    pub max_pending_invites: usize,
    /// Rooms one user may create over the WebSocket (rooms are never
    /// deleted, and each is an actor and a row for good).
    pub max_rooms_per_creator: usize,
    /// Whether a token's `sub` and an invite's `user_id` must be UUIDs
    /// (PROTOCOLS.md §5); off only for account systems with other ids.
    pub require_uuid_user_ids: bool,
}

impl RoomsSettings {
    /// The user id a token's `sub` or an invite's `user_id` names: with
    /// UUIDs required, only a hyphenated UUID (any case), in its canonical
    /// lowercase form so one user has one id; otherwise the text as it is.
    pub fn user_id(&self, text: &str) -> Option<String> {
        if !self.require_uuid_user_ids {
            return Some(text.to_owned());
        }
        if text.len() != 36 {
            return None;
        }
        Uuid::try_parse(text)
            .ok()
            .map(|id| id.hyphenated().to_string())
    }
}

/// What a user may do in a room beyond the default, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    /// May invite to a closed room and kick.
    Admin,
    /// May enter the closed room.
    Invite,
    /// May never enter again (a permanent kick).
    Ban,
}

impl Grant {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Grant::Admin => "admin",
            Grant::Invite => "invite",
            Grant::Ban => "ban",
        }
    }

    /// The grant of a stored name.
    pub fn parse(name: &str) -> Option<Grant> {
        match name {
            "admin" => Some(Grant::Admin),
            "invite" => Some(Grant::Invite),
            "ban" => Some(Grant::Ban),
            _ => None,
        }
    }
}

/// A room as the store keeps it, read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    /// Its id (a UUID).
    pub room_id: String,
    /// Its name.
    pub name: String,
    /// Whether only invited users may enter.
    pub closed: bool,
    /// The highest message id that may have been handed out.
    pub reserved_message_id: u64,
    /// Who created it over the WebSocket (none: the operator's API).
    pub creator: Option<String>,
    /// Who has which grant.
    pub grants: Vec<(String, Grant)>,
    /// The invites not used yet, as (invitee, inviter), oldest first.
    pub pending_invites: Vec<(String, String)>,
}

/// Why a room refused a command; the text goes back in `{type:"error"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No room has that id.
    #[error("unknown room")]
    UnknownRoom,
    /// A closed room, and the user is neither invited nor an admin.
    #[error("the room is closed: you need an invite")]
    Closed,
    /// The user was kicked for good.
    #[error("you are banned from this room")]
    Banned,
    /// The user tried to invite someone who is banned.
    #[error("that user is banned from this room")]
    TargetBanned,
    /// The connection has not entered the room.
    #[error("you have not entered this room")]
    NotInRoom,
    /// The user to act on has not entered the room.
    #[error("that user is not in this room")]
    TargetNotInRoom,
    /// The connection is in the room already.
    #[error("you are already in this room")]
    AlreadyIn,
    /// Only admins may do this.
    #[error("only the room's admins may do that")]
    NotAdmin,
    /// A read receipt for an id the room never handed out.
    #[error("unknown message_id")]
    UnknownMessage,
    /// The store could not reserve message ids.
    #[error("internal error")]
    Internal,
    /// The connection is in `limits.max_rooms_per_client` rooms already.
    #[error("you are in too many rooms: at most {0} at once")]
    TooManyRooms(usize),
    /// The room holds `rooms.max_pending_invites` unused invites already.
    #[error("this room has too many pending invites: at most {0} until invitees enter")]
    TooManyPendingInvites(usize),
    /// The user created `rooms.max_rooms_per_creator` rooms already.
    #[error("you have created too many rooms: at most {0}")]
    TooManyRoomsCreated(usize),
    /// The store refused to save a new room; nothing was created.
    #[error("the room could not be saved, so it was not created; try again later")]
    RoomNotSaved,
    /// An invite's `user_id` is not a UUID.
    #[error("user_id must be a UUID")]
    UserIdNotUuid,
}

impl Refusal {
    /// Whether the user asked for something it has no right to (a closed
    /// room without an invite, a ban, an admin's command), as opposed to a
    /// mistake or a failure.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Refusal::Closed | Refusal::Banned | Refusal::NotAdmin)
    }

    /// Counts the refusal in `switchboard_protocol_errors_total` when it is
    /// [forbidden](Refusal::is_forbidden); called once per refusal sent.
    pub(crate) fn record(&self) {
        if self.is_forbidden() {
            metrics().protocol_error(Protocol::Rooms, ProtocolErrorKind::Forbidden);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(require_uuid_user_ids: bool) -> RoomsSettings {
        RoomsSettings {
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            max_pending_invites: 1,
            max_rooms_per_creator: 1,
            require_uuid_user_ids,
        }
    }

    #[test]
    fn user_ids_are_hyphenated_uuids_in_lower_case() {
        let strict = settings(true);
        let id = "a11ce000-0000-4000-8000-00000000000a";
        assert_eq!(strict.user_id(id).as_deref(), Some(id));
        assert_eq!(strict.user_id(&id.to_uppercase()).as_deref(), Some(id));
        for bad in [
            "alice",
            "",
            "a11ce0000000400080000000000000000a",
            "{a11ce000-0000-4000-8000-00000000000a}",
            "a11ce000-0000-4000-8000-00000000000g",
        ] {
            assert_eq!(strict.user_id(bad), None, "{bad}");
        }
        assert_eq!(settings(false).user_id("alice").as_deref(), Some("alice"));
    }
}
