//! The Switchboard actor system.
//!
//! Every WebSocket connection, room, service and listed session is an actix
//! actor. The [`registry::Registry`] is the directory that creates, finds and
//! removes them and hands their addresses out, so the hot path of a message
//! never passes through it. Mechanics that every protocol shares (per-socket
//! limits and heartbeats, encode-once fan-out, admission, metrics, the store)
//! live once at this level; each protocol has its own folder with a `wire.rs`
//! holding its exact wire format.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod broker;
pub mod chat;
pub mod close;
pub mod concierge;
pub mod connection;
pub mod fanout;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod limits;
pub mod live;
pub mod lobby;
pub mod metrics;
pub mod monitor;
pub mod outbox;
pub mod pool;
pub mod protocol;
pub mod registry;
pub mod rooms;
pub mod sessions;
pub mod store;
pub mod timestamp;
pub mod transport;

pub use broker::{Broker, BrokerSettings};
pub use protocol::Protocol;
