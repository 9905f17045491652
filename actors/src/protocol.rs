//! The protocols the broker serves, as one closed set.
//!
//! Used as the `protocol` label of metrics and to tell connections apart in
//! the registry; a new protocol is added here when it lands.

use std::fmt;

/// One of the WebSocket protocols served by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The concierge gateway: identified clients, services, targeted messages, files.
    Concierge,
    /// The workshop chat: rooms, history, typing, presence.
    Chat,
    /// Live presence and friends.
    Live,
    /// Permissioned rooms: invites, kicks, bans, read receipts.
    Rooms,
    /// The session list: game sessions broadcast to watchers as text lines.
    Sessions,
}

impl Protocol {
    /// Every protocol, in a fixed order (metrics are pre-created for each).
    pub const ALL: [Protocol; 5] = [
        Protocol::Concierge,
        Protocol::Chat,
        Protocol::Live,
        Protocol::Rooms,
        Protocol::Sessions,
    ];

    /// The name used in metrics labels, logs and config sections.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Concierge => "concierge",
            Protocol::Chat => "chat",
            Protocol::Live => "live",
            Protocol::Rooms => "rooms",
            Protocol::Sessions => "sessions",
        }
    }

    /// A dense index for per-protocol tables.
    pub const fn index(self) -> usize {
        match self {
            Protocol::Concierge => 0,
            Protocol::Chat => 1,
            Protocol::Live => 2,
            Protocol::Rooms => 3,
            Protocol::Sessions => 4,
        }
    }
}

/// A name that is not one of the protocols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: expected one of concierge, chat, live, rooms, sessions")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| UnknownProtocol(name.to_owned()))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
