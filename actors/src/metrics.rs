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
}

impl ActorKind {
    const ALL: [ActorKind; 9] = [
        ActorKind::Registry,
        ActorKind::SessionFeed,
        ActorKind::SessionListing,
        ActorKind::ConciergeLobby,
        ActorKind::ConciergeService,
        ActorKind::ChatLobby,
        ActorKind::ChatRoom,
        ActorKind::LivePresence,
        ActorKind::Room,
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

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry
                .register(c)
                .expect("metric names are unique and valid");
        };
        let labels = &["protocol"];
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge")
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
        };
        let connections = gauge_vec(
            "switchboard_connections",
            "Open WebSocket connections.",
            labels,
        );
        let opened = counter_vec(
            "switchboard_connections_opened_total",
            "WebSocket connections accepted since start.",
            labels,
        );
        let refused = counter_vec(
            "switchboard_connections_refused_total",
            "WebSocket upgrades refused by admission control.",
            labels,
        );
        let messages_in = counter_vec(
            "switchboard_messages_in_total",
            "Messages received from clients.",
            labels,
        );
        let messages_out = counter_vec(
            "switchboard_messages_out_total",
            "Messages written to clients.",
            labels,
        );
        let dropped = counter_vec(
            "switchboard_messages_dropped_total",
            "Messages not delivered or not accepted, by reason (slow: recipient queue full; rate: sender over its rate limit).",
            &["protocol", "reason"],
        );
        let slow = counter_vec(
            "switchboard_slow_consumers_total",
            "Members removed from their rooms because their queue stayed full.",
            labels,
        );
        let published = counter_vec(
            "switchboard_published_total",
            "Server-originated messages published into a room or service through the publish API.",
            labels,
        );
        let fanout = HistogramVec::new(
            HistogramOpts::new("switchboard_fanout_size", "Recipients per broadcast.").buckets(
                vec![
                    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0,
                ],
            ),
            labels,
        )
        .expect("valid histogram");
        let handling = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_handling_seconds",
                "Time to handle one inbound message.",
            )
            .buckets(prometheus::exponential_buckets(0.000_005, 4.0, 10).expect("valid buckets")),
            labels,
        )
        .expect("valid histogram");
        let listed_sessions = IntGauge::new(
            "switchboard_listed_sessions",
            "Sessions currently listed by the session list.",
        )
        .expect("valid gauge");
        let limit_rejections = counter_vec(
            "switchboard_limit_rejections_total",
            "Requests refused because they would pass a configured cap (rooms, files, bytes, invites, creation and HTTP rates), by protocol and cap.",
            &["protocol", "limit"],
        );
        let actor_restarts = counter_vec(
            "switchboard_actor_restarts_total",
            "Restarts of supervised actors.",
            &["actor"],
        );
        let actors = gauge_vec(
            "switchboard_actors",
            "Live long-lived actors (registry, session feed and listings, concierge lobby and services, chat lobby and rooms, live presence, permissioned rooms), by kind.",
            &["kind"],
        );
        let client_versions = gauge_vec(
            "switchboard_session_clients",
            "Session-list watchers that sent `connect`, by client version (at most 32 versions, the rest as `other`).",
            &["version"],
        );

        let concierge_clients = IntGauge::new(
            "switchboard_concierge_clients",
            "Identified concierge clients.",
        )
        .expect("valid gauge");
        let concierge_services = IntGauge::new(
            "switchboard_concierge_services",
            "Concierge services that exist.",
        )
        .expect("valid gauge");
        let concierge_messages = counter_vec(
            "switchboard_concierge_messages_total",
            "Concierge MESSAGE payloads accepted, by target kind.",
            &["target"],
        );
        let concierge = ConciergeMetrics {
            clients: concierge_clients.clone(),
            services: concierge_services.clone(),
            messages: ConciergeMetrics::TARGETS
                .map(|target| concierge_messages.with_label_values(&[target])),
        };

        let chat = ChatMetrics {
            rooms: IntGauge::new("switchboard_chat_rooms", "Chat rooms that exist.")
                .expect("valid gauge"),
            members: IntGauge::new("switchboard_chat_members", "Users joined to a chat room.")
                .expect("valid gauge"),
            messages: IntCounter::new(
                "switchboard_chat_messages_total",
                "Chat messages accepted (WebSocket and HTTP).",
            )
            .expect("valid counter"),
        };

        let live_users = IntGauge::new(
            "switchboard_live_users_online",
            "Distinct live users online (several connections count once).",
        )
        .expect("valid gauge");

        let rooms = RoomsMetrics {
            rooms: IntGauge::new("switchboard_rooms", "Permissioned rooms that exist.")
                .expect("valid gauge"),
            members: IntGauge::new(
                "switchboard_room_members",
                "Connections inside permissioned rooms (one per connection and room).",
            )
            .expect("valid gauge"),
            messages: IntCounter::new(
                "switchboard_room_messages_total",
                "Messages relayed in permissioned rooms (never stored).",
            )
            .expect("valid counter"),
        };

        let series_of = |label: &str| {
            let l = &[label];
            ProtocolMetrics {
                connections: connections.with_label_values(l),
                connections_opened: opened.with_label_values(l),
                connections_refused: refused.with_label_values(l),
                messages_in: messages_in.with_label_values(l),
                messages_out: messages_out.with_label_values(l),
                dropped_slow: dropped.with_label_values(&[label, "slow"]),
                dropped_rate: dropped.with_label_values(&[label, "rate"]),
                slow_consumers: slow.with_label_values(l),
                published: published.with_label_values(l),
                fanout_size: fanout.with_label_values(l),
                handling_seconds: handling.with_label_values(l),
            }
        };
        let per_protocol = Protocol::ALL
            .iter()
            .map(|p| series_of(p.as_str()))
            .collect();
        let console = series_of("console");
        for kind in ActorKind::ALL {
            actor_restarts.with_label_values(&[kind.as_str()]);
            actors.with_label_values(&[kind.as_str()]);
        }

        reg(Box::new(connections));
        reg(Box::new(opened));
        reg(Box::new(refused));
        reg(Box::new(messages_in));
        reg(Box::new(messages_out));
        reg(Box::new(dropped));
        reg(Box::new(slow));
        reg(Box::new(published));
        reg(Box::new(fanout));
        reg(Box::new(handling));
        reg(Box::new(listed_sessions.clone()));
        reg(Box::new(concierge_clients));
        reg(Box::new(concierge_services));
        reg(Box::new(concierge_messages));
        reg(Box::new(chat.rooms.clone()));
        reg(Box::new(chat.members.clone()));
        reg(Box::new(chat.messages.clone()));
        reg(Box::new(live_users.clone()));
        reg(Box::new(rooms.rooms.clone()));
        reg(Box::new(rooms.members.clone()));
        reg(Box::new(rooms.messages.clone()));
        reg(Box::new(limit_rejections.clone()));
        reg(Box::new(actor_restarts.clone()));
        reg(Box::new(actors.clone()));
        reg(Box::new(client_versions.clone()));
        // Unprefixed (`process_resident_memory_bytes`, ...): the names every
        // dashboard and alert for a Prometheus target already expects.
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));

        Metrics {
            registry,
            per_protocol,
            console,
            listed_sessions,
            concierge,
            chat,
            live_users,
            rooms,
            limit_rejections,
            actor_restarts,
            actors,
            client_versions,
            known_versions: Mutex::new(HashSet::new()),
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
