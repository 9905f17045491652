//! Live presence and friends (PROTOCOLS.md §4, seed `001`): who of your
//! friends is online and what they play, and the friend-request flow.
//!
//! - [`wire`]: the exact JSON frames, pure.
//! - [`LiveClient`]: one authenticated user's state in its
//!   [`Connection`](crate::connection::Connection) (the JWT is checked at
//!   the upgrade, see [`crate::auth`]).
//! - [`Presence`]: one actor that knows who is online on which connections
//!   and what they play; it delivers the popups, encoded once.
//! - the friend graph (users, friendships, requests) lives in the store and
//!   every change to it is one transaction on the store thread.

mod client;
mod presence;
pub mod store;
pub mod wire;

pub use client::LiveClient;
pub use presence::{OnlineCount, OnlineUser, OnlineUsers, Presence};

/// A user as the JWT names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUser {
    /// The account's id (`sub`).
    pub id: String,
    /// The account's username (`name`).
    pub name: String,
}

/// Why a friend-graph change was refused; the text goes back to the client
/// in `{type:"error", message}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FriendError {
    /// No user has that username.
    #[error("unknown user")]
    UnknownUser,
    /// A request to oneself.
    #[error("you cannot send a friend request to yourself")]
    Yourself,
    /// They are friends already.
    #[error("already friends")]
    AlreadyFriends,
    /// A request from the sender to the target is pending already.
    #[error("friend request already pending")]
    AlreadyPending,
    /// Accepting or rejecting something that is not an incoming pending request.
    #[error("no pending friend request from that user")]
    NoSuchRequest,
    /// Removing someone who is not a friend.
    #[error("not a friend")]
    NotFriends,
}

/// What a successful friend request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentRequest {
    /// A request is now pending for the target (its user id).
    Pending(String),
    /// The target had asked first: they are friends now (its user id).
    BecameFriends(String),
}
