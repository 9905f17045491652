//! The Watcher: the connection actor of one session-list client.
//!
//! It joins the feed on start (the feed answers with the snapshot through
//! the same mailbox as later changes, so nothing can overtake it), records
//! `connect` in the usage metrics, and answers anything else with `error`.

use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws::{self, ProtocolError, WebsocketContext};

use super::feed::{SessionFeed, Unwatch, Watch};
use super::wire::{ClientMessage, ServerMessage};
use super::SharedEpoch;
use crate::connection::{ConnectionCore, Frames, Inbound, WsConnection};
use crate::metrics::metrics;

/// One watcher of the session list.
pub struct Watcher {
    core: ConnectionCore,
    feed: Addr<SessionFeed>,
    epoch: SharedEpoch,
    version_label: Option<String>,
}

impl Watcher {
    /// A watcher fed by `feed`.
    pub fn new(core: ConnectionCore, feed: Addr<SessionFeed>, epoch: SharedEpoch) -> Self {
        Watcher {
            core,
            feed,
            epoch,
            version_label: None,
        }
    }

    fn reply_error(&mut self, ctx: &mut WebsocketContext<Self>, reason: String) {
        let frame = ServerMessage::Error {
            epoch: self.epoch.get(),
            reason,
        }
        .encode();
        self.core.write(ctx, Frames::One(frame.into()));
    }

    fn handle_text(&mut self, ctx: &mut WebsocketContext<Self>, text: &str) {
        match ClientMessage::decode(text) {
            Ok(ClientMessage::Connect { version, .. }) => {
                if let Some(old) = self.version_label.take() {
                    metrics().client_left(&old);
                }
                self.version_label = Some(metrics().client_connected(&version));
            }
            Err(e) => self.reply_error(ctx, e.to_string()),
        }
    }
}

impl WsConnection for Watcher {
    fn core(&mut self) -> &mut ConnectionCore {
        &mut self.core
    }
}

crate::connection_handlers!(Watcher);

impl Actor for Watcher {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.core.started(ctx);
        self.feed.do_send(Watch(self.core.handle(ctx)));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.core.stopped();
        self.feed.do_send(Unwatch(self.core.id()));
        if let Some(label) = self.version_label.take() {
            metrics().client_left(&label);
        }
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for Watcher {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        let Some(inbound) = self.core.receive(item, ctx) else {
            return;
        };
        let started = Instant::now();
        match inbound {
            Inbound::Text(text) => self.handle_text(ctx, &text),
            Inbound::Binary(_) => {
                self.reply_error(ctx, "binary messages are not part of this protocol".into())
            }
            Inbound::RateLimited { .. } => {
                self.reply_error(ctx, "rate limit exceeded".into());
                self.core.close_if_abusive(ctx);
            }
        }
        self.core.observe_handling(started);
    }
}
