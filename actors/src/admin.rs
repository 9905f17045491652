//! What the operator console asks of the registry: the open connections,
//! page by page, and closing one of them.
//!
//! The figures (counts, rates) come from the metrics themselves
//! ([`crate::metrics::Metrics::snapshot`]); rooms, services and sessions are
//! listed with each protocol's own directory messages; publishing goes
//! through each protocol's room or service actor, like a client's message.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::connection::{ConnId, Disconnect};
use crate::registry::{ConnectionEntry, Registry};
use crate::Protocol;

/// The name a server-originated message goes by where a protocol names its
/// sender (a rooms `user_id`, a concierge origin). No client can hold it:
/// `@` is outside chat and concierge names, and a token whose `sub` is this
/// name is refused.
pub const SERVER_NAME: &str = "@server";

/// Which part of a list to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Items to skip.
    pub offset: usize,
    /// Items to show at most.
    pub limit: usize,
}

/// One window of a list, with how many items matched in all.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// Items that matched, before the window.
    pub total: usize,
    /// The items in the window.
    pub items: Vec<T>,
}

impl<T> Page<T> {
    /// The window of `items` (already filtered and ordered).
    pub fn of(items: impl IntoIterator<Item = T>, window: Window) -> Self {
        let mut items = items.into_iter();
        let skipped = items.by_ref().take(window.offset).count();
        let page: Vec<T> = items.by_ref().take(window.limit).collect();
        let total = skipped + page.len() + items.count();
        Page { total, items: page }
    }
}

/// Whether `haystack` contains `needle`, ignoring ASCII case; `needle` is
/// already lower-case. Allocates nothing: a search runs over every
/// connection.
pub fn matches(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// One open connection as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    /// The connection's id (what `disconnect` takes).
    pub id: ConnId,
    /// Its protocol.
    pub protocol: &'static str,
    /// The peer's address, when known.
    pub peer: Option<String>,
    /// Who the client is in its protocol, once known.
    pub identity: Option<String>,
    /// When the connection opened.
    pub connected_since: DateTime<Utc>,
    /// Whole messages received from the client.
    pub messages_in: u64,
    /// Frames written to the client.
    pub messages_out: u64,
    /// Deliveries waiting in its outbound queue.
    pub queue_depth: usize,
}

impl ConnectionInfo {
    fn of(id: ConnId, entry: &ConnectionEntry) -> Self {
        ConnectionInfo {
            id,
            protocol: entry.protocol.as_str(),
            peer: entry.peer.map(peer_text),
            identity: entry.stats.identity().map(str::to_owned),
            connected_since: entry.since,
            messages_in: entry.stats.messages_in(),
            messages_out: entry.stats.messages_out(),
            queue_depth: entry.outbox.len(),
        }
    }
}

/// One open connection in detail: what the list shows, plus what the
/// client said of itself when it connected and the bytes it moved.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub info: ConnectionInfo,
    /// The upgrade request's `Origin` header, if it had one.
    pub origin: Option<String>,
    /// The upgrade request's `User-Agent` header, if it had one.
    pub user_agent: Option<String>,
    /// Payload bytes of the whole messages received.
    pub bytes_in: u64,
    /// Payload bytes of the frames written.
    pub bytes_out: u64,
}

impl ConnectionDetail {
    fn of(id: ConnId, entry: &ConnectionEntry) -> Self {
        ConnectionDetail {
            info: ConnectionInfo::of(id, entry),
            origin: entry.client.origin.clone(),
            user_agent: entry.client.user_agent.clone(),
            bytes_in: entry.stats.bytes_in(),
            bytes_out: entry.stats.bytes_out(),
        }
    }
}

impl ConnectionEntry {
    /// Whether the search text (lower-case) finds this connection by id,
    /// protocol, peer or identity.
    fn found_by(&self, id: ConnId, search: &str, scratch: &mut String) -> bool {
        use std::fmt::Write;
        if matches(self.protocol.as_str(), search)
            || self.stats.identity().is_some_and(|i| matches(i, search))
        {
            return true;
        }
        scratch.clear();
        let _ = write!(scratch, "{id}");
        if matches(scratch, search) {
            return true;
        }
        scratch.clear();
        if let Some(addr) = self.peer {
            scratch.push_str(&peer_text(addr));
        }
        matches(scratch, search)
    }
}

/// A peer as an operator reads it: `ip:port`, or the bare IP when the port
/// is 0 (a client named by a trusted proxy's `X-Forwarded-For`, which gives
/// no port).
fn peer_text(addr: std::net::SocketAddr) -> String {
    if addr.port() == 0 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

/// The open connections in id order, optionally of one protocol and
/// matching a search (id, protocol, peer or identity, ignoring case).
#[derive(Message)]
#[rtype(result = "Page<ConnectionInfo>")]
pub struct ListConnections {
    /// Only this protocol's connections.
    pub protocol: Option<Protocol>,
    /// Text to look for.
    pub search: Option<String>,
    /// The window to answer.
    pub window: Window,
}

impl Handler<ListConnections> for Registry {
    type Result = MessageResult<ListConnections>;
    fn handle(&mut self, msg: ListConnections, _: &mut Self::Context) -> Self::Result {
        let search = msg.search.map(|s| s.to_ascii_lowercase());
        let mut scratch = String::new();
        let found = self
            .connections
            .iter()
            .filter(|(_, entry)| msg.protocol.is_none_or(|p| p == entry.protocol))
            .filter(|(&id, entry)| {
                search
                    .as_deref()
                    .is_none_or(|s| entry.found_by(id, s, &mut scratch))
            });
        // Only the window's connections are described; the rest are counted.
        let page = Page::of(found, msg.window);
        MessageResult(Page {
            total: page.total,
            items: page
                .items
                .into_iter()
                .map(|(&id, entry)| ConnectionInfo::of(id, entry))
                .collect(),
        })
    }
}

/// One open connection by id (the console's detail view), or none when no
/// open connection has it.
#[derive(Message)]
#[rtype(result = "Option<ConnectionDetail>")]
pub struct DescribeConnection(pub ConnId);

impl Handler<DescribeConnection> for Registry {
    type Result = MessageResult<DescribeConnection>;
    fn handle(
        &mut self,
        DescribeConnection(id): DescribeConnection,
        _: &mut Self::Context,
    ) -> Self::Result {
        MessageResult(
            self.connections
                .get(&id)
                .map(|entry| ConnectionDetail::of(id, entry)),
        )
    }
}

/// Closes one connection with the given close frame; answers whether it
/// was open.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct DisconnectConnection {
    /// The connection.
    pub id: ConnId,
    /// The close frame it gets.
    pub close: Disconnect,
}

impl Handler<DisconnectConnection> for Registry {
    type Result = bool;
    fn handle(&mut self, msg: DisconnectConnection, _: &mut Self::Context) -> bool {
        let Some(entry) = self.connections.get(&msg.id) else {
            return false;
        };
        log::info!(
            "{} connection {} disconnected by an operator: {}",
            entry.protocol,
            msg.id,
            msg.close.reason
        );
        entry.disconnect.do_send(msg.close);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_counts_every_match_and_shows_its_window() {
        let page = Page::of(
            1..=7,
            Window {
                offset: 5,
                limit: 3,
            },
        );
        assert_eq!((page.total, page.items), (7, vec![6, 7]));
        let past_the_end = Page::of(
            1..=7,
            Window {
                offset: 9,
                limit: 3,
            },
        );
        assert_eq!((past_the_end.total, past_the_end.items), (7, vec![]));
    }

    #[test]
    fn search_ignores_case() {
        assert!(matches("Alice", "ali"));
        assert!(matches("127.0.0.1:5000", "0.1:5"));
        assert!(matches("anything", ""));
        assert!(!matches("Bob", "ali"));
        assert!(!matches("al", "ali"));
    }
}
