//! The Watcher: the session-list protocol's state of one connection.
//!
//! It joins the feed on start (the feed answers with the snapshot through
//! the same mailbox as later changes, so nothing can overtake it), records
//! `connect` in the usage metrics, and answers anything else with `error`.

use actix::prelude::*;
use actix_web::web::Bytes;
use bytestring::ByteString;

use super::feed::{SessionFeed, Unwatch, Watch};
use super::wire::{ClientMessage, ServerMessage};
use super::SharedEpoch;
use crate::connection::{Connection, ConnectionContext, Frames, Hooks};
use crate::metrics::metrics;
use crate::Protocol;

/// One watcher of the session list.
pub struct Watcher {
    feed: Addr<SessionFeed>,
    epoch: SharedEpoch,
    version_label: Option<String>,
}

impl Watcher {
    /// A watcher fed by `feed`.
    pub fn new(feed: Addr<SessionFeed>, epoch: SharedEpoch) -> Self {
        Watcher {
            feed,
            epoch,
            version_label: None,
        }
    }
}

impl Connection<Watcher> {
    fn reply_error(&mut self, reason: String) {
        let frame = ServerMessage::Error {
            epoch: self.state.epoch.get(),
            reason,
        }
        .encode();
        self.core.write(Frames::One(frame.into()));
    }

    /// `connect`: records the client's version in the usage metrics.
    fn connect(&mut self, version: &str) {
        if let Some(old) = self.state.version_label.take() {
            metrics().client_left(&old);
        }
        self.state.version_label = Some(metrics().client_connected(version));
    }
}

impl Hooks for Watcher {
    fn join(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>) {
        conn.state.feed.do_send(Watch(conn.core.handle(ctx)));
    }

    fn handle_text(conn: &mut Connection<Self>, _: &mut ConnectionContext<Self>, text: ByteString) {
        match ClientMessage::decode(&text) {
            Ok(ClientMessage::Connect { version, .. }) => conn.connect(&version),
            Err(e) => {
                metrics().protocol_error(Protocol::Sessions, e.kind());
                conn.reply_error(e.to_string());
            }
        }
    }

    fn handle_binary(conn: &mut Connection<Self>, _: &mut ConnectionContext<Self>, _: Bytes) {
        conn.reply_error("binary messages are not part of this protocol".into());
    }

    fn rate_limited(conn: &mut Connection<Self>, _: &mut ConnectionContext<Self>, _text: bool) {
        conn.reply_error("rate limit exceeded".into());
    }

    fn terminate(conn: &mut Connection<Self>) {
        conn.state.feed.do_send(Unwatch(conn.core.id()));
        if let Some(label) = conn.state.version_label.take() {
            metrics().client_left(&label);
        }
    }
}
