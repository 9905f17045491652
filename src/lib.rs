//! Switchboard: one long-running broker process serving real-time WebSocket
//! protocols from one actix actor system.
//!
//! This crate is the server around the actor system
//! ([`switchboard_actors`]): configuration, the HTTP surface, WebSocket
//! upgrades, shutdown, and the command line (`src/main.rs`).

pub mod bench;
pub mod client_addr;
pub mod config;
pub mod http;
pub mod server;
pub mod ws;
