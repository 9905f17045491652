//! The Monitor actor: samples the broker's figures once a second (by
//! default: `admin.console_interval`) for the operator console.
//!
//! Each tick reads [`Metrics::snapshot`](crate::metrics::Metrics::snapshot),
//! turns the counters into per-second rates, keeps the last
//! [`HISTORY`] samples (so a console that opens draws its charts at once)
//! and pushes the sample, encoded once, to every console watching. The
//! pushes go through the shared [`FanOut`]: each console has a bounded
//! outbox, a full one counts a drop (`protocol="console"`), and a console
//! that keeps dropping is closed like any slow consumer. The overview of
//! the admin API is the same sample taken on demand.
//!
//! The runtime figures ([`Runtime`], `GET /api/admin/runtime`) are asked
//! for apart from the sample, whose fields clients already rely on: the
//! process's own figures (resident memory, CPU seconds, open descriptors,
//! read from `/proc/self` by prometheus's process collector), the store's
//! latency (the round trip of a `Ping` through the store actor's queue,
//! probed once a tick and never two at a time, so a stuck store shows as a
//! growing figure) and the connections closed by the server per close code,
//! summed over protocols from the series
//! `switchboard_connections_closed_total{protocol,code}`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::connection::{ConnId, Disconnect, Frames, MemberHandle};
use crate::fanout::FanOut;
use crate::metrics::{metrics, Snapshot};
use crate::outbox::Outbox;
use crate::store::{self, StoreHandle};
use crate::Protocol;
use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;

/// Samples kept for a console that opens: five minutes at one a second.
pub const HISTORY: usize = 300;

/// Pushes a console may miss in a row (its outbox full) before it is closed.
pub const CONSOLE_EVICT_AFTER: u32 = 5;

/// The series whose values are summed per close code into
/// [`Sample::closes_by_code`].
pub const CLOSES_SERIES: &str = "switchboard_connections_closed_total";

/// The broker's figures at one instant, as the console and
/// `GET /api/admin/overview` show them.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When it was taken (RFC 3339, milliseconds).
    pub time: String,
    /// The broker's version.
    pub version: &'static str,
    /// When the broker started (RFC 3339).
    pub started_at: String,
    /// Whole seconds since then.
    pub uptime_seconds: u64,
    /// Open connections, in all and per protocol.
    pub connections: Connections,
    /// Chat rooms (Global included).
    pub chat_rooms: u64,
    /// Permissioned rooms.
    pub rooms: u64,
    /// Concierge services.
    pub services: u64,
    /// Listed game sessions.
    pub sessions: u64,
    /// Messages received per second over the last tick.
    pub messages_in_per_second: f64,
    /// Messages written per second over the last tick.
    pub messages_out_per_second: f64,
    /// Messages received since start.
    pub messages_in_total: u64,
    /// Messages written since start.
    pub messages_out_total: u64,
    /// Messages dropped (slow recipients, rate limits) since start.
    pub dropped_total: u64,
    /// Supervised actor restarts since start.
    pub actor_restarts_total: u64,
    /// Messages published through the publish API since start.
    pub published_total: u64,
}

/// The process and the store as `GET /api/admin/runtime` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeFigures {
    /// The process's resident memory, in bytes.
    pub rss_bytes: u64,
    /// CPU time the process has used (user and system), in seconds.
    pub cpu_seconds: f64,
    /// The process's open file descriptors (sockets included).
    pub open_fds: u64,
    /// The store's latency in milliseconds: the last `Ping` round trip, or
    /// the age of one still unanswered if that is longer; none before the
    /// first probe.
    pub store_latency_ms: Option<f64>,
    /// Connections closed by the server since start, per close code (all
    /// protocols together).
    pub closes_by_code: BTreeMap<String, u64>,
}

/// The process's own figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessFigures {
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// CPU seconds used.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
}

impl ProcessFigures {
    /// Reads them from `/proc/self` (zeros where the collector has none).
    fn read(collector: &ProcessCollector) -> Self {
        let mut figures = ProcessFigures::default();
        for family in collector.collect() {
            let Some(metric) = family.get_metric().first() else {
                continue;
            };
            match family.name() {
                "process_resident_memory_bytes" => {
                    figures.rss_bytes = metric.get_gauge().get_value() as u64;
                }
                "process_cpu_seconds_total" => {
                    figures.cpu_seconds = round2(metric.get_counter().get_value());
                }
                "process_open_fds" => figures.open_fds = metric.get_gauge().get_value() as u64,
                _ => {}
            }
        }
        figures
    }
}

/// Sums [`CLOSES_SERIES`] per `code` label in the text format `exposition`.
pub fn closes_by_code(exposition: &str) -> BTreeMap<String, u64> {
    let mut closes = BTreeMap::new();
    let prefix = format!("{CLOSES_SERIES}{{");
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let code = labels.split(',').find_map(|label| {
            label
                .strip_prefix("code=\"")
                .and_then(|v| v.strip_suffix('"'))
        });
        if let (Some(code), Ok(value)) = (code, value.trim().parse::<f64>()) {
            *closes.entry(code.to_owned()).or_insert(0) += value as u64;
        }
    }
    closes
}

/// Open connections, in all and per protocol.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Connections {
    /// Every protocol together.
    pub total: u64,
    /// Concierge clients.
    pub concierge: u64,
    /// Chat users.
    pub chat: u64,
    /// Session-list watchers.
    pub sessions: u64,
    /// Live-presence clients.
    pub live: u64,
    /// Permissioned-rooms clients.
    pub rooms: u64,
}

impl Connections {
    fn of(snapshot: &Snapshot) -> Self {
        let of = |p: Protocol| snapshot.connections[p.index()];
        Connections {
            total: snapshot.connections.iter().sum(),
            concierge: of(Protocol::Concierge),
            chat: of(Protocol::Chat),
            sessions: of(Protocol::Sessions),
            live: of(Protocol::Live),
            rooms: of(Protocol::Rooms),
        }
    }
}

/// The monitor actor (one per broker).
pub struct Monitor {
    started: DateTime<Utc>,
    since: Instant,
    last: (Instant, Snapshot),
    /// Rates of the last tick (in, out).
    rates: (f64, f64),
    history: VecDeque<Sample>,
    interval: Duration,
    watchers: FanOut,
    next_watcher: ConnId,
    process: ProcessCollector,
    /// Probed once a tick, once [`ProbeStore`] gave it.
    store: Option<StoreHandle>,
    /// The last probe's round trip.
    store_latency: Option<Duration>,
    /// When the probe in flight was sent.
    probe_sent: Option<Instant>,
}

impl Monitor {
    /// A monitor whose clock starts now, sampling every `interval`.
    pub fn new(interval: Duration) -> Self {
        Monitor {
            interval,
            started: Utc::now(),
            since: Instant::now(),
            last: (Instant::now(), metrics().snapshot()),
            rates: (0.0, 0.0),
            history: VecDeque::with_capacity(HISTORY),
            watchers: FanOut::metered("console", metrics().console(), CONSOLE_EVICT_AFTER),
            next_watcher: 1,
            process: ProcessCollector::for_self(),
            store: None,
            store_latency: None,
            probe_sent: None,
        }
    }

    /// The store's latency as [`Sample::store_latency_ms`] reports it.
    fn store_latency_ms(&self) -> Option<f64> {
        let waiting = self.probe_sent.map(|sent| sent.elapsed());
        let latency = match (self.store_latency, waiting) {
            (Some(last), Some(waiting)) => Some(last.max(waiting)),
            (last, waiting) => last.or(waiting),
        };
        latency.map(|d| round2(d.as_secs_f64() * 1000.0))
    }

    /// Sends the store a `Ping` unless one is still unanswered, and records
    /// its round trip.
    fn probe_store(&mut self, ctx: &mut Context<Self>) {
        let Some(store) = &self.store else {
            return;
        };
        if self.probe_sent.is_some() {
            return;
        }
        let sent = Instant::now();
        self.probe_sent = Some(sent);
        let answer = store.send(store::Ping);
        ctx.spawn(answer.into_actor(self).map(move |answer, monitor, _| {
            monitor.probe_sent = None;
            monitor.store_latency = match answer {
                Ok(Ok(())) => Some(sent.elapsed()),
                _ => None,
            };
        }));
    }

    fn sample(&self, snapshot: &Snapshot) -> Sample {
        Sample {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started.to_rfc3339_opts(SecondsFormat::Secs, true),
            uptime_seconds: self.since.elapsed().as_secs(),
            connections: Connections::of(snapshot),
            chat_rooms: snapshot.chat_rooms,
            rooms: snapshot.rooms,
            services: snapshot.services,
            sessions: snapshot.sessions,
            messages_in_per_second: self.rates.0,
            messages_out_per_second: self.rates.1,
            messages_in_total: snapshot.messages_in,
            messages_out_total: snapshot.messages_out,
            dropped_total: snapshot.dropped,
            actor_restarts_total: snapshot.actor_restarts,
            published_total: snapshot.published,
        }
    }

    fn runtime(&self) -> RuntimeFigures {
        let process = ProcessFigures::read(&self.process);
        RuntimeFigures {
            rss_bytes: process.rss_bytes,
            cpu_seconds: process.cpu_seconds,
            open_fds: process.open_fds,
            store_latency_ms: self.store_latency_ms(),
            closes_by_code: closes_by_code(&metrics().render()),
        }
    }

    fn tick(&mut self) {
        let (now, snapshot) = (Instant::now(), metrics().snapshot());
        let (then, before) = std::mem::replace(&mut self.last, (now, snapshot));
        let seconds = now.duration_since(then).as_secs_f64().max(f64::EPSILON);
        let rate = |after: u64, before: u64| round2(after.saturating_sub(before) as f64 / seconds);
        self.rates = (
            rate(snapshot.messages_in, before.messages_in),
            rate(snapshot.messages_out, before.messages_out),
        );
        let sample = self.sample(&snapshot);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(sample.clone());
        if self.watchers.is_empty() {
            return;
        }
        let frame = Frames::One(encode(&Tagged {
            kind: "sample",
            sample: &sample,
        }));
        self.watchers.broadcast(&frame);
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[derive(Serialize)]
struct Tagged<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    sample: &'a Sample,
}

#[derive(Serialize)]
struct History<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    samples: &'a VecDeque<Sample>,
}

fn encode<T: Serialize>(value: &T) -> ByteString {
    serde_json::to_string(value)
        .expect("samples always encode")
        .into()
}

impl Actor for Monitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |monitor, ctx| {
            monitor.tick();
            monitor.probe_store(ctx);
        });
    }
}

/// Gives the monitor the store to probe for [`Sample::store_latency_ms`]
/// (sent once, when the server starts).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeStore(pub StoreHandle);

impl Handler<ProbeStore> for Monitor {
    type Result = ();
    fn handle(&mut self, ProbeStore(store): ProbeStore, ctx: &mut Self::Context) {
        self.store = Some(store);
        self.probe_store(ctx);
    }
}

/// The overview now: counts as they are, rates of the last tick.
#[derive(Message)]
#[rtype(result = "Sample")]
pub struct Overview;

impl Handler<Overview> for Monitor {
    type Result = MessageResult<Overview>;
    fn handle(&mut self, _: Overview, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.sample(&metrics().snapshot()))
    }
}

/// The runtime figures now (the store's latency as of the last probe).
#[derive(Message)]
#[rtype(result = "RuntimeFigures")]
pub struct Runtime;

impl Handler<Runtime> for Monitor {
    type Result = MessageResult<Runtime>;
    fn handle(&mut self, _: Runtime, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.runtime())
    }
}

/// A console starts watching: it is sent the samples kept so far at once
/// (`{"type":"history","samples":[...]}`), then every new one, through its
/// outbox. Answers the console's id among the watchers.
#[derive(Message)]
#[rtype(result = "ConnId")]
pub struct Watch {
    /// The console's bounded outbox.
    pub deliver: Outbox,
    /// Where a slow console's close order goes.
    pub disconnect: Recipient<Disconnect>,
}

impl Handler<Watch> for Monitor {
    type Result = ConnId;
    fn handle(&mut self, watch: Watch, _: &mut Self::Context) -> ConnId {
        let id = self.next_watcher;
        self.next_watcher += 1;
        self.watchers.join(MemberHandle {
            id,
            deliver: watch.deliver,
            disconnect: watch.disconnect,
        });
        let history = Frames::One(encode(&History {
            kind: "history",
            samples: &self.history,
        }));
        self.watchers.send_to(id, &history);
        id
    }
}

/// A console stopped watching (the id [`Watch`] answered).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch(pub ConnId);

impl Handler<Unwatch> for Monitor {
    type Result = ();
    fn handle(&mut self, Unwatch(id): Unwatch, _: &mut Self::Context) {
        self.watchers.leave(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_tagged_for_the_wire_is_flat() {
        let monitor = Monitor::new(Duration::from_secs(1));
        let sample = monitor.sample(&Snapshot {
            connections: [1, 2, 0, 0, 3],
            ..Snapshot::default()
        });
        let text = encode(&Tagged {
            kind: "sample",
            sample: &sample,
        });
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "sample");
        assert_eq!(
            value["connections"],
            serde_json::json!({"total": 6, "concierge": 1, "chat": 2, "sessions": 3, "live": 0, "rooms": 0})
        );
        assert_eq!(value["messages_in_per_second"], 0.0);
    }

    #[test]
    fn runtime_figures_read_the_process() {
        let runtime = Monitor::new(Duration::from_secs(1)).runtime();
        assert!(runtime.rss_bytes > 0, "{runtime:?}");
        assert!(runtime.open_fds > 0, "{runtime:?}");
        assert_eq!(runtime.store_latency_ms, None, "not probed yet");
    }

    #[test]
    fn closes_are_summed_per_code_over_protocols() {
        let text = "# TYPE switchboard_connections_closed_total counter\n\
            switchboard_connections_closed_total{code=\"1000\",protocol=\"chat\"} 3\n\
            switchboard_connections_closed_total{code=\"1008\",protocol=\"chat\"} 1\n\
            switchboard_connections_closed_total{code=\"1000\",protocol=\"rooms\"} 2\n\
            switchboard_connections_closed_totally{code=\"1000\"} 9\n\
            switchboard_connections{protocol=\"chat\"} 4\n";
        let closes = closes_by_code(text);
        assert_eq!(
            closes.into_iter().collect::<Vec<_>>(),
            [("1000".to_owned(), 5), ("1008".to_owned(), 1)]
        );
    }
}
