//! The connection actor every protocol shares.
//!
//! [`Connection`] is the one WebSocket actor of the broker: it owns a
//! [`ConnectionCore`] (with the socket's [`Transport`]) and a protocol's own
//! state, and implements everything that is the same for every protocol. The core answers pings, reassembles
//! fragmented messages, enforces the frame-size limit (close 1009) and the
//! inbound rate limit (refusal, then close 1008), judges liveness by
//! heartbeat, owns the bounded outbox and its flush, closes with codes from
//! [the close-code table](crate::close), keeps the metrics and registers the
//! connection with the registry. A protocol supplies only its [`Hooks`]
//! (join, handle a text or binary message, answer a refusal, terminate), as
//! Phoenix channels do with join / handle_in / terminate, and handles its
//! own messages as `Handler<M> for Connection<ItsState>`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::{CloseReason, Item, Message, ProtocolError};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::admission::Ticket;
use crate::limits::{Limits, TokenBucket};
use crate::metrics::{metrics, ProtocolErrorKind, ProtocolMetrics};
use crate::outbox::{Flush, Outbox};
use crate::registry::{Connected, Disconnected, Registry};
use crate::transport::{ReadError, Transport, Upgraded, WebSocketActor};
use crate::Protocol;

/// Identifies one WebSocket connection for the life of the process.
pub type ConnId = u64;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Encoded text frames for a connection to write, in order. Built once per
/// broadcast and shared by every recipient; a batch (a snapshot, a resync)
/// takes one queue slot however many frames it holds.
#[derive(Clone, Debug)]
pub struct Deliver(pub Frames);

/// One frame or a shared batch of frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frames {
    /// A single frame.
    One(ByteString),
    /// Several frames written back to back.
    Many(Arc<[ByteString]>),
}

impl Frames {
    /// The frames, in order.
    pub fn as_slice(&self) -> &[ByteString] {
        match self {
            Frames::One(frame) => std::slice::from_ref(frame),
            Frames::Many(frames) => frames,
        }
    }
}

impl From<ByteString> for Frames {
    fn from(frame: ByteString) -> Self {
        Frames::One(frame)
    }
}

impl From<Vec<ByteString>> for Frames {
    fn from(frames: Vec<ByteString>) -> Self {
        match <[ByteString; 1]>::try_from(frames) {
            Ok([one]) => Frames::One(one),
            Err(many) => Frames::Many(many.into()),
        }
    }
}

/// Tells a connection to close with this code and reason (made by the
/// constructors of the [close-code table](crate::close)).
#[derive(Message, Clone, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// WebSocket close code.
    pub code: u16,
    /// Human-readable reason sent in the close frame.
    pub reason: String,
}

/// How a connection's liveness is judged: the server pings every `interval`
/// and closes with `close` once the client has been silent (no frame, no
/// pong) for `timeout`.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    /// Time between pings.
    pub interval: Duration,
    /// Silence after which the connection is closed.
    pub timeout: Duration,
    /// The close frame sent then.
    pub close: Disconnect,
}

impl Heartbeat {
    /// The broker-wide heartbeat of `[limits]`, closing with 1001.
    pub fn from_limits(limits: &Limits) -> Self {
        Heartbeat {
            interval: limits.heartbeat_interval,
            timeout: limits.heartbeat_timeout,
            close: Disconnect::heartbeat_timeout(),
        }
    }
}

/// What an operator sees of one connection beyond its address: who it is
/// and how much it has said and heard. The connection writes it, the
/// registry reads it for the admin API; sharing atomics spares the hot path
/// a message per frame.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    identity: OnceLock<String>,
}

impl ConnectionStats {
    /// Whole messages received (rate-limited ones included).
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    /// Frames written to the socket.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.load(Ordering::Relaxed)
    }

    /// Payload bytes of the whole messages received.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Payload bytes of the frames written.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// The name the client goes by in its protocol, once it has one.
    pub fn identity(&self) -> Option<&str> {
        self.identity.get().map(String::as_str)
    }
}

/// What a client said of itself in its upgrade request, kept for the
/// operator's view of the connection (`GET /api/admin/connections/{id}`),
/// each cut to [`ClientHeaders::MAX_CHARS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHeaders {
    /// The `Origin` header (sent by browsers).
    pub origin: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl ClientHeaders {
    /// The most characters kept of each header.
    pub const MAX_CHARS: usize = 256;

    /// The headers as given, each cut to [`ClientHeaders::MAX_CHARS`].
    pub fn new(origin: Option<&str>, user_agent: Option<&str>) -> Self {
        let keep = |value: &str| value.chars().take(Self::MAX_CHARS).collect();
        ClientHeaders {
            origin: origin.map(keep),
            user_agent: user_agent.map(keep),
        }
    }
}

/// The connection actor: the shared mechanics in `core`, the protocol's
/// per-connection state in `state`.
pub struct Connection<P> {
    /// The shared mechanics.
    pub core: ConnectionCore,
    /// What the protocol knows of this connection.
    pub state: P,
}

/// The context a [`Connection`] runs in.
pub type ConnectionContext<P> = Context<Connection<P>>;

impl<P: Hooks> Connection<P> {
    /// A connection with this core and protocol state (not yet started).
    pub fn new(core: ConnectionCore, state: P) -> Self {
        Connection { core, state }
    }

    /// Starts the connection on the current arbiter, owning the socket of
    /// its upgraded request.
    pub fn start_on(mut self, upgraded: Upgraded) -> Addr<Self> {
        let limits = &self.core.limits;
        // A client that lags is given as much again as its outbox holds.
        let transport = Transport::new(
            upgraded,
            limits.max_frame_bytes(),
            limits.outbound_queue_byte_bound(),
        );
        self.core.transport = Some(transport);
        self.start()
    }
}

/// What a protocol supplies to the shared [`Connection`] actor. Each hook
/// gets the whole connection, so it can reach both the core (to write,
/// close, identify) and its own state.
pub trait Hooks: Sized + Unpin + 'static {
    /// The connection has started: its outbox is open and it is registered,
    /// so the protocol may join feeds and lobbies with its handle.
    fn join(_conn: &mut Connection<Self>, _ctx: &mut ConnectionContext<Self>) {}

    /// A whole text message that passed the shared checks.
    fn handle_text(
        conn: &mut Connection<Self>,
        ctx: &mut ConnectionContext<Self>,
        text: ByteString,
    );

    /// A whole binary message that passed the shared checks.
    fn handle_binary(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>, bytes: Bytes);

    /// A message the rate limit refused (`text` tells its kind): answer it in
    /// the protocol's own words. The connection then closes a client that
    /// keeps ignoring refusals.
    fn rate_limited(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>, text: bool);

    /// The connection has stopped: leave whatever was joined.
    fn terminate(_conn: &mut Connection<Self>) {}
}

impl<P: Hooks> Actor for Connection<P> {
    type Context = ConnectionContext<P>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.core.started(ctx);
        P::join(self, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.core.stopped();
        P::terminate(self);
    }
}

impl<P: Hooks> WebSocketActor for Connection<P> {
    fn transport(&mut self) -> &mut Transport {
        self.core.transport()
    }

    fn received(&mut self, item: Result<Message, ReadError>, ctx: &mut Self::Context) {
        let Some(inbound) = self.core.receive(item, ctx) else {
            return;
        };
        let started = Instant::now();
        match inbound {
            Inbound::Text(text) => P::handle_text(self, ctx, text),
            Inbound::Binary(bytes) => P::handle_binary(self, ctx, bytes),
            Inbound::RateLimited { text } => {
                P::rate_limited(self, ctx, text);
                self.core.close_if_abusive(ctx);
            }
        }
        self.core.observe_handling(started);
    }

    fn writable(&mut self, _: &mut Self::Context) {
        self.core.flush();
    }
}

impl<P: Hooks> Handler<Flush> for Connection<P> {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        self.core.flush();
    }
}

impl<P: Hooks> Handler<Disconnect> for Connection<P> {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        self.core.close(ctx, &msg);
    }
}

/// How others reach a connection: its frames and its close switch.
#[derive(Clone)]
pub struct MemberHandle {
    /// The connection's id.
    pub id: ConnId,
    /// Where encoded frames go (bounded: `try_send` never waits).
    pub deliver: Outbox,
    /// Where a close order goes.
    pub disconnect: Recipient<Disconnect>,
}

/// Writes everything queued in `outbox` to the socket, in order, in one go
/// (on its [`Flush`]); `batch` is empty before and after and keeps its
/// allocation between calls. Answers how many frames and payload bytes
/// were written. Every WebSocket fed through an outbox (connections,
/// consoles) drains it here.
pub fn write_queued(
    transport: &mut Transport,
    outbox: &Outbox,
    batch: &mut VecDeque<Frames>,
) -> (u64, u64) {
    outbox.take(batch);
    batch
        .drain(..)
        .map(|frames| ConnectionCore::write_frames(transport, frames))
        .fold((0, 0), |(f, b), (frames, bytes)| (f + frames, b + bytes))
}

/// A whole inbound message that passed the shared checks.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A text message (fragments already joined).
    Text(ByteString),
    /// A binary message (fragments already joined).
    Binary(Bytes),
    /// A message refused by the rate limit; the protocol answers with its own
    /// error. `text` tells whether it was a text message.
    RateLimited {
        /// Whether the refused message was text (else binary).
        text: bool,
    },
}

impl Inbound {
    /// The message's payload size in bytes (0 for a refusal).
    pub fn payload_len(&self) -> usize {
        match self {
            Inbound::Text(text) => text.len(),
            Inbound::Binary(bytes) => bytes.len(),
            Inbound::RateLimited { .. } => 0,
        }
    }
}

/// The shared state of one connection.
pub struct ConnectionCore {
    id: ConnId,
    protocol: Protocol,
    peer: Option<SocketAddr>,
    limits: Arc<Limits>,
    heartbeat: Heartbeat,
    registry: Addr<Registry>,
    metrics: &'static ProtocolMetrics,
    last_heard: Instant,
    bucket: TokenBucket,
    refused_in_a_row: u32,
    fragments: Option<Fragments>,
    /// Created when the actor starts (it needs the actor's address).
    outbox: Option<Outbox>,
    /// The batch being written, kept between flushes for its allocation.
    batch: VecDeque<Frames>,
    stats: Arc<ConnectionStats>,
    /// The socket; set when the connection starts (see [`Connection::start_on`]).
    transport: Option<Transport>,
    client: ClientHeaders,
    /// The broker has sent its close frame and waits for the client's.
    closing: bool,
    _ticket: Ticket,
}

/// How long a connection the broker closes waits for the client to answer
/// its close frame before it ends the socket anyway.
const CLOSE_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

struct Fragments {
    text: bool,
    buf: BytesMut,
}

impl ConnectionCore {
    /// A core for a connection admitted with `ticket`.
    pub fn new(
        protocol: Protocol,
        peer: Option<SocketAddr>,
        limits: Arc<Limits>,
        registry: Addr<Registry>,
        ticket: Ticket,
    ) -> Self {
        let bucket = TokenBucket::new(limits.messages_per_second, limits.burst, Instant::now());
        ConnectionCore {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            protocol,
            peer,
            heartbeat: Heartbeat::from_limits(&limits),
            limits,
            registry,
            metrics: metrics().protocol(protocol),
            last_heard: Instant::now(),
            bucket,
            refused_in_a_row: 0,
            fragments: None,
            outbox: None,
            batch: VecDeque::new(),
            stats: Arc::default(),
            transport: None,
            client: ClientHeaders::default(),
            closing: false,
            _ticket: ticket,
        }
    }

    /// Records what the client said of itself in its upgrade request
    /// (before start), for the operator's view of the connection.
    pub fn with_client_headers(mut self, client: ClientHeaders) -> Self {
        self.client = client;
        self
    }

    /// Replaces the broker-wide heartbeat with a protocol's own (before start).
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// The connection's socket. Every connection starts with one
    /// ([`Connection::start_on`]), so the core never runs without it.
    fn transport(&mut self) -> &mut Transport {
        self.transport
            .as_mut()
            .expect("a connection is started with its transport")
    }

    /// The limits this connection runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Records who the client is in its protocol (a username, a user id),
    /// for the admin API. The first identity sticks: a connection is one
    /// client for its whole life.
    pub fn identify(&self, identity: &str) {
        let _ = self.stats.identity.set(identity.to_owned());
    }

    /// The handle others use to reach this connection (once it has started).
    pub fn handle<P: Hooks>(&self, ctx: &ConnectionContext<P>) -> MemberHandle {
        MemberHandle {
            id: self.id,
            deliver: self
                .outbox
                .clone()
                .expect("a connection's handle is taken after its core has started"),
            disconnect: ctx.address().recipient(),
        }
    }

    /// From [`Connection`]'s `started`: starts the transport, opens the
    /// bounded outbox, starts the heartbeat and registers the connection.
    pub fn started<P: Hooks>(&mut self, ctx: &mut ConnectionContext<P>) {
        Transport::start(ctx);
        let outbox = Outbox::bounded(
            self.limits.outbound_queue,
            self.limits.outbound_queue_byte_bound(),
            ctx.address().recipient(),
        );
        self.outbox = Some(outbox.clone());
        self.metrics.connections.inc();
        self.metrics.connections_opened.inc();
        self.registry.do_send(Connected {
            id: self.id,
            protocol: self.protocol,
            peer: self.peer,
            disconnect: ctx.address().recipient(),
            outbox,
            stats: Arc::clone(&self.stats),
            client: std::mem::take(&mut self.client),
        });
        let Heartbeat {
            interval,
            timeout,
            close,
        } = self.heartbeat.clone();
        ctx.run_interval(interval, move |conn, ctx| {
            let core = &mut conn.core;
            if core.last_heard.elapsed() > timeout {
                core.close(ctx, &close);
            } else {
                core.transport().ping(b"");
            }
        });
    }

    /// From [`Connection`]'s `stopped`: unregisters the connection.
    pub fn stopped(&mut self) {
        if let Some(outbox) = &self.outbox {
            outbox.close();
        }
        self.metrics.connections.dec();
        self.registry.do_send(Disconnected { id: self.id });
    }

    /// Handles one item of the WebSocket stream; returns a whole message for
    /// the protocol, or `None` when the core dealt with it (control frames,
    /// fragments, violations that close the socket).
    pub fn receive<A: WebSocketActor>(
        &mut self,
        item: Result<Message, ReadError>,
        ctx: &mut Context<A>,
    ) -> Option<Inbound> {
        self.last_heard = Instant::now();
        if self.closing {
            // Only the answer to our close matters now: it ends the socket.
            if let Ok(Message::Close(_)) = item {
                self.transport().end();
            }
            return None;
        }
        let message = match item {
            Ok(message) => message,
            Err(ReadError::Protocol(ProtocolError::Overflow)) => {
                self.close(ctx, &Disconnect::too_big());
                return None;
            }
            Err(ReadError::NotUtf8) => {
                self.close(ctx, &Disconnect::not_utf8());
                return None;
            }
            Err(ReadError::Protocol(e)) => {
                self.close(ctx, &Disconnect::protocol_error(e.to_string()));
                return None;
            }
            Err(ReadError::Io(e)) => {
                log::debug!("{} connection {}: {e}", self.protocol, self.id);
                ctx.stop();
                return None;
            }
        };
        match message {
            Message::Text(text) => self.admit(Inbound::Text(text)),
            Message::Binary(bytes) => self.admit(Inbound::Binary(bytes)),
            Message::Continuation(item) => self.fragment(item, ctx),
            Message::Ping(payload) => {
                self.transport().pong(payload);
                None
            }
            Message::Pong(_) | Message::Nop => None,
            Message::Close(reason) => {
                // The client closed: answer, and end the connection once the
                // answer is written instead of waiting for its hang-up.
                let transport = self.transport();
                transport.close(reason);
                transport.end();
                None
            }
        }
    }

    /// Writes text frames to this connection's socket (nothing once the
    /// close frame is sent: it is the last frame).
    pub fn write(&mut self, frames: Frames) {
        if self.closing {
            return;
        }
        let (written, bytes) = Self::write_frames(self.transport(), frames);
        self.count_out(written, bytes);
    }

    fn count_out(&self, written: u64, bytes: u64) {
        self.stats.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.metrics.messages_out.inc_by(written);
        self.metrics.sent_bytes.inc_by(bytes);
        self.stats
            .messages_out
            .fetch_add(written, Ordering::Relaxed);
    }

    /// Queues `frames` and says how many there were and their payload
    /// bytes. A single frame is moved, not cloned: its shared bytes are
    /// touched by every recipient's thread, so each reference-count change
    /// costs.
    fn write_frames(transport: &mut Transport, frames: Frames) -> (u64, u64) {
        match frames {
            Frames::One(frame) => {
                let bytes = frame.len() as u64;
                transport.text(frame);
                (1, bytes)
            }
            Frames::Many(frames) => {
                let mut bytes = 0;
                for frame in frames.iter() {
                    bytes += frame.len() as u64;
                    transport.text(frame.clone());
                }
                (frames.len() as u64, bytes)
            }
        }
    }

    /// Writes a reply after everything already queued for this connection, so
    /// a broadcast that the request itself caused (queued before the answer
    /// came back) reaches the client before the reply, as the concierge's
    /// clients expect.
    pub fn write_behind_queued(&mut self, frames: Frames) {
        self.drain_outbox();
        self.write(frames);
    }

    /// Writes what is queued in the outbox (on its [`Flush`]), unless the
    /// socket is already behind: then the frames wait in the outbox, where
    /// a client that does not read runs into the outbox's bounds, until the
    /// transport calls for more.
    pub fn flush(&mut self) {
        if self.transport().is_behind() {
            return;
        }
        self.drain_outbox();
    }

    /// Writes everything queued in the outbox.
    fn drain_outbox(&mut self) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        if self.closing {
            outbox.take(&mut self.batch);
            self.batch.clear();
            return;
        }
        let transport = self
            .transport
            .as_mut()
            .expect("a connection is started with its transport");
        // One update of the shared counters per batch, not per frame.
        let (written, bytes) = write_queued(transport, outbox, &mut self.batch);
        self.metrics.flushed(written);
        self.count_out(written, bytes);
    }

    /// Sends the close frame, then waits for the client's answer (which
    /// ends the socket, see [`ConnectionCore::receive`]) for at most
    /// [`CLOSE_ANSWER_TIMEOUT`]. Meanwhile nothing else is written or
    /// handed to the protocol. Per RFC 6455 the side that closes first waits
    /// for the other's close frame; a client that never answers, or whose
    /// stream broke (no answer can be read), is ended without it: what is
    /// queued, the close frame last, is still written (a client that does
    /// not read at all is cut off by the socket's write timeout).
    pub fn close<A: WebSocketActor>(&mut self, ctx: &mut Context<A>, close: &Disconnect) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.metrics.closed_by_server(close.code);
        log::debug!(
            "{} connection {} closed by the broker: {} {}",
            self.protocol,
            self.id,
            close.code,
            close.reason
        );
        let transport = self.transport();
        transport.close(Some(CloseReason {
            code: close.close_code(),
            description: Some(close.reason.clone()),
        }));
        if transport.is_broken() {
            transport.end();
            return;
        }
        ctx.run_later(CLOSE_ANSWER_TIMEOUT, |act, _| act.transport().end());
    }

    fn fragment<A: WebSocketActor>(&mut self, item: Item, ctx: &mut Context<A>) -> Option<Inbound> {
        let (first, chunk, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        match (first, self.fragments.as_mut()) {
            (Some(text), None) => {
                self.fragments = Some(Fragments {
                    text,
                    buf: BytesMut::new(),
                })
            }
            (None, Some(_)) => {}
            _ => {
                self.close(
                    ctx,
                    &Disconnect::protocol_error("unexpected continuation frame"),
                );
                return None;
            }
        }
        let fragments = self.fragments.as_mut()?;
        if fragments.buf.len() + chunk.len() > self.limits.max_frame_bytes() {
            self.close(ctx, &Disconnect::too_big());
            return None;
        }
        fragments.buf.extend_from_slice(&chunk);
        if !last {
            return None;
        }
        let Fragments { text, buf } = self.fragments.take()?;
        if !text {
            return self.admit(Inbound::Binary(buf.freeze()));
        }
        match ByteString::try_from(buf.freeze()) {
            Ok(text) => self.admit(Inbound::Text(text)),
            Err(_) => {
                self.close(ctx, &Disconnect::not_utf8());
                None
            }
        }
    }

    /// Counts a whole inbound message against the rate limit. A client that
    /// keeps sending after `burst` refusals in a row is closed with 1008.
    fn admit(&mut self, message: Inbound) -> Option<Inbound> {
        self.metrics.received(&message);
        self.metrics.messages_in.inc();
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
        if self.bucket.take(Instant::now()) {
            self.refused_in_a_row = 0;
            return Some(message);
        }
        self.metrics.dropped_rate.inc();
        self.metrics.protocol_error(ProtocolErrorKind::RateLimited);
        self.refused_in_a_row += 1;
        Some(Inbound::RateLimited {
            text: matches!(message, Inbound::Text(_)),
        })
    }

    /// Whether the client has ignored the rate limit long enough to be closed
    /// (call after answering an [`Inbound::RateLimited`]).
    pub fn close_if_abusive<A: WebSocketActor>(&mut self, ctx: &mut Context<A>) -> bool {
        if self.refused_in_a_row > self.limits.burst {
            self.close(ctx, &Disconnect::rate_limited());
            return true;
        }
        false
    }

    /// The handling-latency histogram of this protocol, for a timer around
    /// protocol work.
    pub fn observe_handling(&self, started: Instant) {
        self.metrics
            .handling_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}
