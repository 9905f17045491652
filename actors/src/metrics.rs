//! The broker's Prometheus metrics, registered once and updated by every actor.
//!
//! Handles for per-protocol series are resolved at start-up, so the hot path
//! touches an atomic and never looks a label up. `GET /metrics` renders
//! [`Metrics::render`].

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::close;
use crate::connection::Inbound;
use crate::Protocol;

/// Most distinct client versions reported as their own label; the rest are
/// counted under `other`, so a client cannot grow the series without bound.
pub const MAX_CLIENT_VERSIONS: usize = 32;

/// The kinds of long-lived actors, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// The registry (one).
    Registry,
    /// The session list's feed (one).
    SessionFeed,
    /// One listed session.
    SessionListing,
    /// The concierge's fan-out to every identified client (one).
    ConciergeLobby,
    /// One concierge service.
    ConciergeService,
    /// The chat's fan-out to every joined user (one).
    ChatLobby,
    /// One chat room.
    ChatRoom,
    /// The live presence (one).
    LivePresence,
    /// One permissioned room.
    Room,
    /// The session list's directory of listings (one).
    ListingDirectory,
    /// The concierge's directory of clients and services (one).
    ConciergeDirectory,
    /// The chat's directory of users and rooms (one).
    ChatDirectory,
    /// The permissioned rooms' directory (one).
    RoomsDirectory,
}

impl ActorKind {
    const ALL: [ActorKind; 13] = [
        ActorKind::Registry,
        ActorKind::SessionFeed,
        ActorKind::SessionListing,
        ActorKind::ConciergeLobby,
        ActorKind::ConciergeService,
        ActorKind::ChatLobby,
        ActorKind::ChatRoom,
        ActorKind::LivePresence,
        ActorKind::Room,
        ActorKind::ListingDirectory,
        ActorKind::ConciergeDirectory,
        ActorKind::ChatDirectory,
        ActorKind::RoomsDirectory,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActorKind::Registry => "registry",
            ActorKind::SessionFeed => "session_feed",
            ActorKind::SessionListing => "session_listing",
            ActorKind::ConciergeLobby => "concierge_lobby",
            ActorKind::ConciergeService => "concierge_service",
            ActorKind::ChatLobby => "chat_lobby",
            ActorKind::ChatRoom => "chat_room",
            ActorKind::LivePresence => "live_presence",
            ActorKind::Room => "room",
            ActorKind::ListingDirectory => "listing_directory",
            ActorKind::ConciergeDirectory => "concierge_directory",
            ActorKind::ChatDirectory => "chat_directory",
            ActorKind::RoomsDirectory => "rooms_directory",
        }
    }
}

/// Holds one place in `switchboard_actors{kind}` for as long as the actor's
/// state lives (a supervised restart keeps it), so a leak shows as a count
/// that never comes down.
pub struct ActorGauge(IntGauge);

impl ActorGauge {
    /// Counts one more live actor of `kind`.
    pub fn new(kind: ActorKind) -> Self {
        let gauge = metrics().actors.with_label_values(&[kind.as_str()]);
        gauge.inc();
        ActorGauge(gauge)
    }
}

impl Drop for ActorGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every series the broker exports.
pub struct Metrics {
    registry: Registry,
    per_protocol: Vec<ProtocolMetrics>,
    /// The operator console's live feed, under `protocol="console"`: its
    /// fan-out follows the same slow-consumer policy as the protocols'.
    console: ProtocolMetrics,
    /// Sessions currently listed by the session list.
    pub listed_sessions: IntGauge,
    /// The concierge's own series.
    pub concierge: ConciergeMetrics,
    /// The chat's own series.
    pub chat: ChatMetrics,
    /// Distinct live users online.
    pub live_users: IntGauge,
    /// The permissioned rooms' series.
    pub rooms: RoomsMetrics,
    /// Requests refused because they would pass a configured cap, by
    /// protocol and cap (see [`Metrics::limit_reached`]).
    limit_rejections: IntCounterVec,
    /// Restarts of supervised actors, by actor kind.
    actor_restarts: IntCounterVec,
    /// Live long-lived actors, by kind.
    actors: IntGaugeVec,
    client_versions: IntGaugeVec,
    known_versions: Mutex<HashSet<String>>,
    /// The store's series.
    pub store: StoreMetrics,
    /// The HTTP API's series.
    pub http: HttpMetrics,
    /// `limits.max_connections`, so an alert can compare the open
    /// connections with the cap without knowing the configuration.
    pub max_connections: IntGauge,
    build_info: IntGaugeVec,
}

/// The series of one protocol, resolved once.
pub struct ProtocolMetrics {
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// WebSocket connections accepted since start.
    pub connections_opened: IntCounter,
    /// Upgrades refused by admission control (503).
    pub connections_refused: IntCounter,
    /// Messages received from clients.
    pub messages_in: IntCounter,
    /// Messages written to clients.
    pub messages_out: IntCounter,
    /// Messages a fan-out could not queue because the member's mailbox was full.
    pub dropped_slow: IntCounter,
    /// Inbound messages refused by the rate limit.
    pub dropped_rate: IntCounter,
    /// Members removed because they kept dropping messages.
    pub slow_consumers: IntCounter,
    /// Server-originated messages published into a room or service
    /// (`POST /api/publish`).
    pub published: IntCounter,
    /// Recipients per broadcast.
    pub fanout_size: Histogram,
    /// Time to handle one inbound message, in seconds.
    pub handling_seconds: Histogram,
    /// Payload bytes of whole messages received from clients.
    pub received_bytes: IntCounter,
    /// Payload bytes of text frames written to clients.
    pub sent_bytes: IntCounter,
    /// Frames a connection's outbound queue held when it was flushed:
    /// one observation per flush, so the hot path pays once per batch.
    pub outbound_queue_depth: Histogram,
    /// Time one broadcast took to offer a frame to every member, in seconds.
    pub broadcast_seconds: Histogram,
    /// Refused client input, by kind, in [`ProtocolErrorKind::ALL`] order.
    errors: [IntCounter; ProtocolErrorKind::ALL.len()],
    /// `switchboard_connections_closed_total`, resolved per code on use.
    closed: IntCounterVec,
    label: &'static str,
}

impl ProtocolMetrics {
    /// Counts one piece of client input refused as `kind`.
    pub fn protocol_error(&self, kind: ProtocolErrorKind) {
        self.errors[kind as usize].inc();
    }

    /// Counts one connection the broker closed with `code`; codes outside
    /// the close-code table count as `other`, so the label set stays bounded.
    /// A close code means one thing wherever it is sent (see
    /// [`crate::close`]), so a close for bad input also counts its protocol
    /// error: 1002 framing, 1007 not UTF-8, 1009 too big, the concierge's
    /// 4002 malformed.
    pub fn closed_by_server(&self, code: u16) {
        self.closed
            .with_label_values(&[self.label, close_code_label(code)])
            .inc();
        let kind = match code {
            close::PROTOCOL_ERROR => ProtocolErrorKind::Framing,
            close::INVALID_PAYLOAD => ProtocolErrorKind::NotUtf8,
            close::TOO_BIG => ProtocolErrorKind::TooBig,
            close::concierge::FATAL_DECODE => ProtocolErrorKind::Malformed,
            _ => return,
        };
        self.protocol_error(kind);
    }

    /// Counts the payload bytes of one whole inbound message.
    pub fn received(&self, message: &Inbound) {
        self.received_bytes.inc_by(message.payload_len() as u64);
    }

    /// Samples the outbound queue as a flush found it: `frames` written in
    /// one batch (an empty flush is no sample).
    pub fn flushed(&self, frames: u64) {
        if frames > 0 {
            self.outbound_queue_depth.observe(frames as f64);
        }
    }
}

/// What was wrong with a client's input, as the `kind` label of
/// `switchboard_protocol_errors_total`: a small fixed set, so a client
/// cannot grow the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// A message that is not valid JSON, or lacks a required field.
    Malformed,
    /// A well-formed message of a type the protocol does not know.
    UnknownType,
    /// A message larger than `limits.max_frame_bytes` (close 1009).
    TooBig,
    /// A text message that is not UTF-8 (close 1007).
    NotUtf8,
    /// A WebSocket framing violation (close 1002).
    Framing,
    /// A message refused by the inbound rate limit.
    RateLimited,
    /// A request the client is not allowed to make (no identity, no right).
    Forbidden,
}

impl ProtocolErrorKind {
    /// Every kind, in label order (the index of each is its discriminant).
    pub const ALL: [ProtocolErrorKind; 7] = [
        ProtocolErrorKind::Malformed,
        ProtocolErrorKind::UnknownType,
        ProtocolErrorKind::TooBig,
        ProtocolErrorKind::NotUtf8,
        ProtocolErrorKind::Framing,
        ProtocolErrorKind::RateLimited,
        ProtocolErrorKind::Forbidden,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolErrorKind::Malformed => "malformed",
            ProtocolErrorKind::UnknownType => "unknown_type",
            ProtocolErrorKind::TooBig => "too_big",
            ProtocolErrorKind::NotUtf8 => "not_utf8",
            ProtocolErrorKind::Framing => "framing",
            ProtocolErrorKind::RateLimited => "rate_limited",
            ProtocolErrorKind::Forbidden => "forbidden",
        }
    }
}

/// The `code` label of a close: the codes of RFC 6455 and the concierge's
/// own as numbers, anything else as `other`.
fn close_code_label(code: u16) -> &'static str {
    const LABELS: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    const CONCIERGE: [&str; 10] = [
        "4000", "4001", "4002", "4003", "4004", "4005", "4006", "4007", "4008", "4009",
    ];
    match code {
        1000..=1015 => LABELS[usize::from(code - 1000)],
        4000..=4009 => CONCIERGE[usize::from(code - 4000)],
        _ => "other",
    }
}

/// Why a store operation failed, as the `kind` label of
/// `switchboard_store_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The database was busy or locked past the busy timeout.
    Busy,
    /// The disk is full.
    DiskFull,
    /// A constraint (unique key, foreign key, check) refused the write.
    Constraint,
    /// The disk or the file system failed (SQLite I/O error, a folder that
    /// cannot be created).
    Io,
    /// A stored value did not have the expected form.
    Corrupt,
    /// A write refused by fault injection (test builds).
    Injected,
    /// Any other SQLite error.
    Other,
}

impl StoreErrorKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Busy => "busy",
            StoreErrorKind::DiskFull => "disk_full",
            StoreErrorKind::Constraint => "constraint",
            StoreErrorKind::Io => "io",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Injected => "injected",
            StoreErrorKind::Other => "other",
        }
    }
}

/// The store's series.
pub struct StoreMetrics {
    /// Time one write took, transaction and commit included, in seconds.
    pub commit_seconds: Histogram,
    /// Messages sent to the store actor and not yet taken up by its thread.
    pub queue_depth: IntGauge,
    errors: IntCounterVec,
}

impl StoreMetrics {
    fn register(registry: &Registry) -> Self {
        StoreMetrics {
            commit_seconds: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "switchboard_store_commit_duration_seconds",
                        "Time one store write took, its transaction's commit included.",
                    )
                    .buckets(vec![
                        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
                        0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                )
                .expect("valid histogram"),
            ),
            queue_depth: gauge(
                registry,
                "switchboard_store_queue_depth",
                "Messages waiting for the store actor (sent, not yet taken up by its thread).",
            ),
            errors: counter_vec(
                registry,
                "switchboard_store_errors_total",
                "Store operations that failed, by kind (busy, disk_full, constraint, io, corrupt, injected, other).",
                &["kind"],
            ),
        }
    }

    /// Counts one failed store operation.
    pub fn error(&self, kind: StoreErrorKind) {
        self.errors.with_label_values(&[kind.as_str()]).inc();
    }
}

/// The operator's HTTP API series (every HTTP request, WebSocket upgrades
/// included), labelled by route pattern so the label set stays bounded.
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// The `method` label: the standard methods by name, anything else as `OTHER`.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("OTHER")
}

impl HttpMetrics {
    fn register(registry: &Registry) -> Self {
        HttpMetrics {
            requests: counter_vec(
                registry,
                "switchboard_http_requests_total",
                "HTTP requests answered, by method, route pattern (`unmatched` when no route took it) and status.",
                &["method", "route", "status"],
            ),
            duration: histogram_vec(
                registry,
                HistogramOpts::new(
                    "switchboard_http_request_duration_seconds",
                    "Time from a request's arrival to its response's head, by method and route pattern.",
                )
                .buckets(vec![
                    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0,
                ]),
                &["method", "route"],
            ),
        }
    }

    /// Records one answered request. `route` must be a route pattern (e.g.
    /// `/api/rooms/{id}`) or `unmatched`, never a raw path.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

/// The operator's figures at one instant (see [`Metrics::snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Open connections per protocol, indexed by [`Protocol::index`].
    pub connections: [u64; 5],
    /// Chat rooms (Global included).
    pub chat_rooms: u64,
    /// Permissioned rooms.
    pub rooms: u64,
    /// Concierge services.
    pub services: u64,
    /// Listed game sessions.
    pub sessions: u64,
    /// Messages received from clients since start.
    pub messages_in: u64,
    /// Messages written to clients since start.
    pub messages_out: u64,
    /// Messages dropped (slow recipients and rate limits) since start.
    pub dropped: u64,
    /// Messages published through the publish API since start.
    pub published: u64,
    /// Restarts of supervised actors since start.
    pub actor_restarts: u64,
}

/// The concierge gateway's series.
pub struct ConciergeMetrics {
    /// Identified concierge clients.
    pub clients: IntGauge,
    /// Concierge services that exist.
    pub services: IntGauge,
    /// MESSAGE payloads accepted, by target kind (`NAME`, `UUID`, `SERVICE`,
    /// `SERVICE_CLIENT_UUID`, `ALL`), resolved once in that order.
    messages: [IntCounter; 5],
}

impl ConciergeMetrics {
    /// The wire names of the target kinds, in the order of `messages`.
    pub const TARGETS: [&'static str; 5] =
        ["NAME", "UUID", "SERVICE", "SERVICE_CLIENT_UUID", "ALL"];

    /// Counts one MESSAGE to a target of `kind` (one of [`Self::TARGETS`]).
    pub fn message(&self, kind: &str) {
        if let Some(i) = Self::TARGETS.iter().position(|t| *t == kind) {
            self.messages[i].inc();
        }
    }
}

/// The workshop chat's series.
pub struct ChatMetrics {
    /// Chat rooms that exist (Global included).
    pub rooms: IntGauge,
    /// Users joined to a chat room.
    pub members: IntGauge,
    /// Chat messages accepted (WebSocket and HTTP).
    pub messages: IntCounter,
}

/// The permissioned rooms' series.
pub struct RoomsMetrics {
    /// Rooms that exist.
    pub rooms: IntGauge,
    /// Connections inside permissioned rooms (one per connection and room).
    pub members: IntGauge,
    /// Messages relayed.
    pub messages: IntCounter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Registers `collector` in `registry` and hands it back (a clone shares
/// the same series), so each family registers its series where it builds
/// them.
fn registered<C>(registry: &Registry, collector: C) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique and valid");
    collector
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help).expect("valid gauge"))
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(
        registry,
        IntCounter::new(name, help).expect("valid counter"),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    registered(registry, vec)
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registered(registry, vec)
}

fn histogram_vec(registry: &Registry, opts: HistogramOpts, labels: &[&str]) -> HistogramVec {
    registered(
        registry,
        HistogramVec::new(opts, labels).expect("valid histogram"),
    )
}

/// The families every protocol has, labelled `protocol`; resolved per
/// protocol into a [`ProtocolMetrics`].
struct ProtocolFamilies {
    connections: IntGaugeVec,
    opened: IntCounterVec,
    refused: IntCounterVec,
    messages_in: IntCounterVec,
    messages_out: IntCounterVec,
    dropped: IntCounterVec,
    slow: IntCounterVec,
    published: IntCounterVec,
    fanout: HistogramVec,
    handling: HistogramVec,
    received_bytes: IntCounterVec,
    sent_bytes: IntCounterVec,
    queue_depth: HistogramVec,
    broadcast: HistogramVec,
    errors: IntCounterVec,
    closed: IntCounterVec,
}

impl ProtocolFamilies {
    fn register(registry: &Registry) -> Self {
        let labels = &["protocol"];
        ProtocolFamilies {
            connections: gauge_vec(
                registry,
                "switchboard_connections",
                "Open WebSocket connections.",
                labels,
            ),
            opened: counter_vec(
                registry,
                "switchboard_connections_opened_total",
                "WebSocket connections accepted since start.",
                labels,
            ),
            refused: counter_vec(
                registry,
                "switchboard_connections_refused_total",
                "WebSocket upgrades refused by admission control.",
                labels,
            ),
            messages_in: counter_vec(
                registry,
                "switchboard_messages_in_total",
                "Messages received from clients.",
                labels,
            ),
            messages_out: counter_vec(
                registry,
                "switchboard_messages_out_total",
                "Messages written to clients.",
                labels,
            ),
            dropped: counter_vec(
                registry,
                "switchboard_messages_dropped_total",
                "Messages not delivered or not accepted, by reason (slow: recipient queue full; rate: sender over its rate limit).",
                &["protocol", "reason"],
            ),
            slow: counter_vec(
                registry,
                "switchboard_slow_consumers_total",
                "Members removed from their rooms because their queue stayed full.",
                labels,
            ),
            published: counter_vec(
                registry,
                "switchboard_published_total",
                "Server-originated messages published into a room or service through the publish API.",
                labels,
            ),
            fanout: histogram_vec(
                registry,
                HistogramOpts::new("switchboard_fanout_size", "Recipients per broadcast.").buckets(
                    vec![
                        1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0,
                    ],
                ),
                labels,
            ),
            handling: histogram_vec(
                registry,
                HistogramOpts::new(
                    "switchboard_handling_seconds",
                    "Time to handle one inbound message.",
                )
                .buckets(
                    prometheus::exponential_buckets(0.000_005, 4.0, 10).expect("valid buckets"),
                ),
                labels,
            ),
            received_bytes: counter_vec(
                registry,
                "switchboard_received_bytes_total",
                "Payload bytes of whole messages received from clients.",
                labels,
            ),
            sent_bytes: counter_vec(
                registry,
                "switchboard_sent_bytes_total",
                "Payload bytes of frames written to clients.",
                labels,
            ),
            queue_depth: histogram_vec(
                registry,
                HistogramOpts::new(
                    "switchboard_outbound_queue_depth",
                    "Frames waiting in a connection's outbound queue when it was flushed.",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
                labels,
            ),
            broadcast: histogram_vec(
                registry,
                HistogramOpts::new(
                    "switchboard_broadcast_duration_seconds",
                    "Time one broadcast took to offer its frames to every member.",
                )
                .buckets(
                    prometheus::exponential_buckets(0.000_001, 4.0, 12).expect("valid buckets"),
                ),
                labels,
            ),
            errors: counter_vec(
                registry,
                "switchboard_protocol_errors_total",
                "Client input refused, by kind (malformed, unknown_type, too_big, not_utf8, framing, rate_limited, forbidden).",
                &["protocol", "kind"],
            ),
            closed: counter_vec(
                registry,
                "switchboard_connections_closed_total",
                "WebSocket connections the broker closed, by close code (codes outside 1000-1015 and 4000-4009 as `other`).",
                &["protocol", "code"],
            ),
        }
    }

    /// The series of the protocol (or fan-out) called `label`.
    fn of(&self, label: &'static str) -> ProtocolMetrics {
        let l = &[label];
        ProtocolMetrics {
            connections: self.connections.with_label_values(l),
            connections_opened: self.opened.with_label_values(l),
            connections_refused: self.refused.with_label_values(l),
            messages_in: self.messages_in.with_label_values(l),
            messages_out: self.messages_out.with_label_values(l),
            dropped_slow: self.dropped.with_label_values(&[label, "slow"]),
            dropped_rate: self.dropped.with_label_values(&[label, "rate"]),
            slow_consumers: self.slow.with_label_values(l),
            published: self.published.with_label_values(l),
            fanout_size: self.fanout.with_label_values(l),
            handling_seconds: self.handling.with_label_values(l),
            received_bytes: self.received_bytes.with_label_values(l),
            sent_bytes: self.sent_bytes.with_label_values(l),
            outbound_queue_depth: self.queue_depth.with_label_values(l),
            broadcast_seconds: self.broadcast.with_label_values(l),
            errors: ProtocolErrorKind::ALL
                .map(|kind| self.errors.with_label_values(&[label, kind.as_str()])),
            closed: self.closed.clone(),
            label,
        }
    }
}

impl ConciergeMetrics {
    fn register(registry: &Registry) -> Self {
        let messages = counter_vec(
            registry,
            "switchboard_concierge_messages_total",
            "Concierge MESSAGE payloads accepted, by target kind.",
            &["target"],
        );
        ConciergeMetrics {
            clients: gauge(
                registry,
                "switchboard_concierge_clients",
                "Identified concierge clients.",
            ),
            services: gauge(
                registry,
                "switchboard_concierge_services",
                "Concierge services that exist.",
            ),
            messages: Self::TARGETS.map(|target| messages.with_label_values(&[target])),
        }
    }
}

impl ChatMetrics {
    fn register(registry: &Registry) -> Self {
        ChatMetrics {
            rooms: gauge(registry, "switchboard_chat_rooms", "Chat rooms that exist."),
            members: gauge(
                registry,
                "switchboard_chat_members",
                "Users joined to a chat room.",
            ),
            messages: counter(
                registry,
                "switchboard_chat_messages_total",
                "Chat messages accepted (WebSocket and HTTP).",
            ),
        }
    }
}

impl RoomsMetrics {
    fn register(registry: &Registry) -> Self {
        RoomsMetrics {
            rooms: gauge(
                registry,
                "switchboard_rooms",
                "Permissioned rooms that exist.",
            ),
            members: gauge(
                registry,
                "switchboard_room_members",
                "Connections inside permissioned rooms (one per connection and room).",
            ),
            messages: counter(
                registry,
                "switchboard_room_messages_total",
                "Messages relayed in permissioned rooms (never stored).",
            ),
        }
    }
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let families = ProtocolFamilies::register(&registry);
        let per_protocol = Protocol::ALL
            .iter()
            .map(|p| families.of(p.as_str()))
            .collect();
        let actor_restarts = counter_vec(
            &registry,
            "switchboard_actor_restarts_total",
            "Restarts of supervised actors.",
            &["actor"],
        );
        let actors = gauge_vec(
            &registry,
            "switchboard_actors",
            "Live long-lived actors (registry, session feed and listings, concierge lobby and services, chat lobby and rooms, live presence, permissioned rooms), by kind.",
            &["kind"],
        );
        for kind in ActorKind::ALL {
            actor_restarts.with_label_values(&[kind.as_str()]);
            actors.with_label_values(&[kind.as_str()]);
        }
        // Unprefixed (`process_resident_memory_bytes`, ...): the names every
        // dashboard and alert for a Prometheus target already expects.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metric names are unique");
        Metrics {
            per_protocol,
            console: families.of("console"),
            listed_sessions: gauge(
                &registry,
                "switchboard_listed_sessions",
                "Sessions currently listed by the session list.",
            ),
            concierge: ConciergeMetrics::register(&registry),
            chat: ChatMetrics::register(&registry),
            live_users: gauge(
                &registry,
                "switchboard_live_users_online",
                "Distinct live users online (several connections count once).",
            ),
            rooms: RoomsMetrics::register(&registry),
            limit_rejections: counter_vec(
                &registry,
                "switchboard_limit_rejections_total",
                "Requests refused because they would pass a configured cap (rooms, files, bytes, invites, creation and HTTP rates), by protocol and cap.",
                &["protocol", "limit"],
            ),
            actor_restarts,
            actors,
            client_versions: gauge_vec(
                &registry,
                "switchboard_session_clients",
                "Session-list watchers that sent `connect`, by client version (at most 32 versions, the rest as `other`).",
                &["version"],
            ),
            known_versions: Mutex::new(HashSet::new()),
            store: StoreMetrics::register(&registry),
            http: HttpMetrics::register(&registry),
            max_connections: gauge(
                &registry,
                "switchboard_max_connections",
                "The configured cap on open WebSocket connections (limits.max_connections).",
            ),
            build_info: gauge_vec(
                &registry,
                "switchboard_build_info",
                "Always 1: the version and git commit of the running build.",
                &["version", "commit"],
            ),
            registry,
        }
    }

    /// The series of one protocol.
    pub fn protocol(&self, protocol: Protocol) -> &ProtocolMetrics {
        &self.per_protocol[protocol.index()]
    }

    /// The series of the operator console's live feed (`protocol="console"`).
    pub fn console(&self) -> &ProtocolMetrics {
        &self.console
    }

    /// The figures an operator watches, read from the series themselves so
    /// the console and `/metrics` never disagree.
    pub fn snapshot(&self) -> Snapshot {
        let sum = |f: fn(&ProtocolMetrics) -> u64| self.per_protocol.iter().map(f).sum::<u64>();
        let gauge = |g: &IntGauge| u64::try_from(g.get()).unwrap_or(0);
        Snapshot {
            connections: Protocol::ALL.map(|p| gauge(&self.protocol(p).connections)),
            chat_rooms: gauge(&self.chat.rooms),
            rooms: gauge(&self.rooms.rooms),
            services: gauge(&self.concierge.services),
            sessions: gauge(&self.listed_sessions),
            messages_in: sum(|p| p.messages_in.get()),
            messages_out: sum(|p| p.messages_out.get()),
            dropped: sum(|p| p.dropped_slow.get() + p.dropped_rate.get()),
            published: sum(|p| p.published.get()),
            actor_restarts: ActorKind::ALL
                .iter()
                .map(|k| self.actor_restarts.with_label_values(&[k.as_str()]).get())
                .sum(),
        }
    }

    /// Counts one request refused by the cap named `limit` (a fixed name,
    /// the config key's last part, e.g. `max_rooms`), so the label set stays
    /// bounded.
    pub fn limit_reached(&self, protocol: Protocol, limit: &'static str) {
        self.limit_rejections
            .with_label_values(&[protocol.as_str(), limit])
            .inc();
    }

    /// Counts one connection of `protocol` the broker closed with `code`.
    pub fn closed_by_server(&self, protocol: Protocol, code: u16) {
        self.protocol(protocol).closed_by_server(code);
    }

    /// Counts one piece of `protocol` client input refused as `kind`.
    pub fn protocol_error(&self, protocol: Protocol, kind: ProtocolErrorKind) {
        self.protocol(protocol).protocol_error(kind);
    }

    /// Records which build is running (`switchboard_build_info`); the
    /// binary calls it once with its version and git commit.
    pub fn set_build_info(&self, version: &str, commit: &str) {
        self.build_info.reset();
        self.build_info.with_label_values(&[version, commit]).set(1);
    }

    /// Counts one restart of a supervised actor.
    pub fn actor_restarted(&self, kind: ActorKind) {
        self.actor_restarts
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Records a session-list client of `version` as connected and returns
    /// the label it was counted under (pass it to [`Metrics::client_left`]).
    pub fn client_connected(&self, version: &str) -> String {
        let label = self.version_label(version);
        self.client_versions.with_label_values(&[&label]).inc();
        label
    }

    /// Undoes [`Metrics::client_connected`] for a label it returned.
    pub fn client_left(&self, label: &str) {
        self.client_versions.with_label_values(&[label]).dec();
    }

    fn version_label(&self, version: &str) -> String {
        let clean: String = version
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(32)
            .collect();
        if clean.is_empty() {
            return "unknown".into();
        }
        let mut known = self
            .known_versions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.contains(&clean) || known.len() < MAX_CLIENT_VERSIONS {
            known.insert(clean.clone());
            clean
        } else {
            "other".into()
        }
    }

    /// All series in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_versions_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_CLIENT_VERSIONS {
            assert_eq!(m.client_connected(&format!("1.0.{i}")), format!("1.0.{i}"));
        }
        assert_eq!(m.client_connected("9.9.9"), "other");
        assert_eq!(
            m.client_connected("1.0.0"),
            "1.0.0",
            "known versions keep their label"
        );
        assert_eq!(m.client_connected("\n\r"), "unknown");
    }

    #[test]
    fn close_codes_and_methods_are_bounded_labels() {
        assert_eq!(close_code_label(1009), "1009");
        assert_eq!(close_code_label(1015), "1015");
        assert_eq!(close_code_label(4007), "4007");
        for code in [0, 999, 1016, 3000, 4010, 65535] {
            assert_eq!(close_code_label(code), "other", "{code}");
        }
        assert_eq!(method_label("DELETE"), "DELETE");
        assert_eq!(method_label("PROPFIND"), "OTHER");
        assert_eq!(method_label("get"), "OTHER");
    }

    #[test]
    fn every_protocol_error_kind_is_its_own_series() {
        let m = Metrics::new();
        m.protocol_error(Protocol::Rooms, ProtocolErrorKind::UnknownType);
        m.protocol_error(Protocol::Rooms, ProtocolErrorKind::UnknownType);
        m.closed_by_server(Protocol::Rooms, 1013);
        m.closed_by_server(Protocol::Rooms, 2999);
        let text = m.render();
        for kind in ProtocolErrorKind::ALL {
            let zero = format!(
                "switchboard_protocol_errors_total{{kind=\"{}\",protocol=\"chat\"}} 0",
                kind.as_str()
            );
            assert!(text.contains(&zero), "missing {zero}");
        }
        for line in [
            "switchboard_protocol_errors_total{kind=\"unknown_type\",protocol=\"rooms\"} 2",
            "switchboard_connections_closed_total{code=\"1013\",protocol=\"rooms\"} 1",
            "switchboard_connections_closed_total{code=\"other\",protocol=\"rooms\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn build_info_keeps_one_series() {
        let m = Metrics::new();
        m.set_build_info("0.1.0", "abc1234");
        m.set_build_info("0.1.0", "def5678");
        let text = m.render();
        let lines: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("switchboard_build_info{"))
            .collect();
        assert_eq!(
            lines,
            ["switchboard_build_info{commit=\"def5678\",version=\"0.1.0\"} 1"]
        );
    }

    #[test]
    fn render_lists_the_switchboard_series() {
        let text = metrics().render();
        for name in [
            "switchboard_connections{protocol=\"sessions\"}",
            "switchboard_messages_in_total",
            "switchboard_messages_dropped_total{protocol=\"sessions\",reason=\"slow\"}",
            "switchboard_listed_sessions",
            "switchboard_actor_restarts_total",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
