//! The operator console: a web page embedded in the binary (served at
//! `/console`, no outside resources, so it works offline) and the WebSocket
//! that pushes it the broker's figures every second.
//!
//! A browser cannot put the admin key in a WebSocket upgrade's headers, and
//! a key in the URL would end up in logs, so the console's socket opens
//! without it and must send `{"key": "..."}` first; until then it gets
//! nothing, and a wrong or missing key closes it with 1008. Until it has
//! sent the key a socket is an ordinary connection for admission (the
//! per-address and total caps); only a console that proved the key takes
//! one of the [`MAX_CONSOLES`] places, so nobody without the key can crowd
//! the operators out.
//!
//! The figures reach a console through a bounded outbox of
//! [`CONSOLE_QUEUE`] pushes, under the broker's one slow-consumer policy: a
//! console that stops reading loses pushes (counted under
//! `protocol="console"`) and is closed with 1013 after a few in a row.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_http::ws::{CloseCode, CloseReason, Message};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use switchboard_actors::admission::Ticket;
use switchboard_actors::close;
use switchboard_actors::connection::{write_queued, Disconnect, Frames};
use switchboard_actors::monitor::{Monitor, Unwatch, Watch};
use switchboard_actors::outbox::{Flush, Outbox};
use switchboard_actors::transport::{ReadError, Transport, WebSocketActor};

use super::admin::is_admin_key;
use super::{ApiError, AppState};

/// Consoles watching at once, at most: each costs a sample a second.
pub const MAX_CONSOLES: usize = 16;

/// Pushes queued for one console at most (a sample each, plus the history).
pub const CONSOLE_QUEUE: usize = 16;

/// Time a console has to send its key.
const KEY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest frame a console may send (its key).
const MAX_CONSOLE_FRAME: usize = 4096;

/// Bytes waiting for a console's socket above which its pushes stay in
/// its outbox (a few samples).
const CONSOLE_HIGH_WATER: usize = 64 * 1024;

/// How often the broker pings a console, so idle proxies keep its socket.
const PING_INTERVAL: Duration = Duration::from_secs(15);

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// The page may load only its own script and style and talk only to its
/// own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Mounts the page and its assets.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let asset = |content_type: &'static str, body: &'static str| {
        move || async move { asset_response(content_type, body) }
    };
    cfg.route(
        "/console",
        web::get().to(asset("text/html; charset=utf-8", INDEX)),
    )
    .route(
        "/console/",
        web::get().to(asset("text/html; charset=utf-8", INDEX)),
    )
    .route(
        "/console/console.js",
        web::get().to(asset("text/javascript; charset=utf-8", SCRIPT)),
    )
    .route(
        "/console/console.css",
        web::get().to(asset("text/css; charset=utf-8", STYLE)),
    );
}

fn asset_response(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// Counts open consoles; a slot is given back when its socket ends.
static OPEN_CONSOLES: AtomicUsize = AtomicUsize::new(0);

struct ConsoleSlot;

impl ConsoleSlot {
    fn take() -> Option<ConsoleSlot> {
        OPEN_CONSOLES
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < MAX_CONSOLES).then_some(open + 1)
            })
            .ok()
            .map(|_| ConsoleSlot)
    }
}

impl Drop for ConsoleSlot {
    fn drop(&mut self) {
        OPEN_CONSOLES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /api/admin/live`: the console's feed (key in the first frame).
pub async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if !same_origin(&req) {
        crate::ws::check_origin(&req, &state)?;
    }
    let ticket = state
        .broker
        .admission
        .admit(crate::client_addr::client_ip(&req))
        .map_err(|refused| ApiError::Unavailable(refused.to_string()))?;
    let state = state.into_inner();
    crate::ws::accept(&req, None, move |upgraded| {
        ConsoleWatcher {
            state,
            watching: None,
            slot: None,
            outbox: None,
            batch: VecDeque::new(),
            transport: Transport::new(upgraded, MAX_CONSOLE_FRAME, CONSOLE_HIGH_WATER),
            _ticket: ticket,
        }
        .start();
    })
}

/// Whether the upgrade comes from a page of the broker's own origin (the
/// console itself), which `server.allowed_origins` need not list; a request
/// without `Origin` is not from a page and passes too.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = req.connection_info().host().to_owned();
    origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(&host))
}

/// One console's socket.
struct ConsoleWatcher {
    state: Arc<AppState>,
    /// The monitor's id for this console, once it sent the key.
    watching: Option<u64>,
    /// Its place among the consoles, once it sent the key.
    slot: Option<ConsoleSlot>,
    /// Where the monitor queues its pushes (made when the actor starts).
    outbox: Option<Outbox>,
    /// The pushes being written, kept between flushes for its allocation.
    batch: VecDeque<Frames>,
    transport: Transport,
    _ticket: Ticket,
}

/// The console's first frame.
#[derive(Deserialize)]
struct KeyFrame {
    key: String,
}

impl ConsoleWatcher {
    fn write_queued(&mut self) {
        if let Some(outbox) = &self.outbox {
            write_queued(&mut self.transport, outbox, &mut self.batch);
        }
    }

    fn monitor(&self) -> &Addr<Monitor> {
        &self.state.broker.monitor
    }

    /// Closes with `code` (from [the close-code table](switchboard_actors::close)).
    fn refuse(&mut self, code: u16, reason: &str) {
        self.transport.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.to_owned()),
        }));
        self.transport.end();
    }

    fn unlock(&mut self, text: &str, ctx: &mut Context<Self>) {
        let key = serde_json::from_str::<KeyFrame>(text).map(|frame| frame.key);
        if !key.is_ok_and(|key| is_admin_key(&self.state, &key)) {
            log::warn!("console refused: invalid admin key");
            return self.refuse(close::POLICY, "invalid admin key");
        }
        let Some(slot) = ConsoleSlot::take() else {
            return self.refuse(
                close::TRY_AGAIN_LATER,
                &format!("at most {MAX_CONSOLES} consoles may watch at once"),
            );
        };
        self.slot = Some(slot);
        let Some(deliver) = self.outbox.clone() else {
            return ctx.stop();
        };
        let watch = Watch {
            deliver,
            disconnect: ctx.address().recipient(),
        };
        self.monitor()
            .send(watch)
            .into_actor(self)
            .map(|watching, console, ctx| match watching {
                Ok(id) => console.watching = Some(id),
                Err(_) => ctx.stop(),
            })
            .wait(ctx);
    }
}

impl Actor for ConsoleWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        Transport::start(ctx);
        self.outbox = Some(Outbox::new(CONSOLE_QUEUE, ctx.address().recipient()));
        ctx.run_later(KEY_TIMEOUT, |console, _| {
            if console.slot.is_none() {
                console.refuse(close::POLICY, "no key");
            }
        });
        ctx.run_interval(PING_INTERVAL, |console, _| console.transport.ping(b""));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(outbox) = &self.outbox {
            outbox.close();
        }
        if let Some(id) = self.watching {
            self.monitor().do_send(Unwatch(id));
        }
    }
}

impl Handler<Flush> for ConsoleWatcher {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        // A console that does not read leaves its pushes in the outbox,
        // whose bound is the slow-consumer policy.
        if !self.transport.is_behind() {
            self.write_queued();
        }
    }
}

impl Handler<Disconnect> for ConsoleWatcher {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        self.refuse(msg.code, &msg.reason);
    }
}

impl WebSocketActor for ConsoleWatcher {
    fn transport(&mut self) -> &mut Transport {
        &mut self.transport
    }

    fn received(&mut self, item: Result<Message, ReadError>, ctx: &mut Self::Context) {
        match item {
            Ok(Message::Text(text)) if self.slot.is_none() => self.unlock(&text, ctx),
            Ok(Message::Ping(payload)) => self.transport.pong(payload),
            Ok(Message::Close(reason)) => {
                self.transport.close(reason);
                self.transport.end();
            }
            Ok(_) => {}
            Err(e) => {
                log::debug!("console socket error: {e}");
                ctx.stop();
            }
        }
    }

    fn writable(&mut self, _: &mut Self::Context) {
        self.write_queued();
    }
}
