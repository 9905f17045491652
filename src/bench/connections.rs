//! `bench connections`: opens `--count` identified connections of one
//! protocol (concierge IDENTIFY by default; chat members, live clients, rooms
//! sessions or session-list watchers on request), holds them idle, and
//! reports the handshake + identify rate and the broker's resident memory
//! per connection (from its `/metrics`). Then it drops them all and reads
//! the broker's memory again once they are gone: how much of a join burst's
//! memory went back to the operating system.
//!
//! The concierge announces every arrival to every identified client
//! (`CLIENT_JOINED`), so its ramp costs O(N²) deliveries; the rooms protocol
//! announces nothing, which isolates the cost of a connection itself. Chat
//! members announce themselves to their room, so they are spread over rooms
//! of `--per-room` members.
//!
//! The broker admits at most `limits.max_connections_per_ip` connections
//! from one address, so the connections are spread over several loopback
//! source addresses (127.0.0.1, 127.0.0.2, ...; Linux routes all of
//! 127.0.0.0/8 to `lo`). The held connections keep reading, so the broker's
//! pings are answered and its announcements do not pile up.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, BenchError, Endpoints, Ws};
use super::{progress, run_tag, Common, Secrets};

/// `bench connections` options.
#[derive(Args, Debug)]
pub struct ConnectionsArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Connections per source address (keep under `limits.max_connections_per_ip`).
    #[arg(long, default_value_t = 4000)]
    pub per_source: usize,
    /// What the connections are.
    #[arg(long, value_enum, default_value = "concierge")]
    pub protocol: Held,
    /// Chat members per room (`--protocol chat`); the rooms are named
    /// `bench-held-0`, `bench-held-1`, ... so repeated runs reuse them.
    #[arg(long, default_value_t = 100)]
    pub per_room: usize,
    /// How long after the last connection has gone the broker's memory is
    /// read again (the allocator returns freed memory in the background).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub release_wait: std::time::Duration,
    #[command(flatten)]
    pub secrets: Secrets,
}

/// The kind of connection held.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Concierge clients, each after IDENTIFY -> HELLO.
    Concierge,
    /// Workshop chat members, each after its room announced it (`user_join`).
    Chat,
    /// Live presence clients, each after its JWT upgrade and a `ping` -> `pong`.
    Live,
    /// Permissioned-rooms clients, each after its JWT upgrade and `session`.
    Rooms,
    /// Session-list watchers, each after its `reset`.
    Sessions,
}

impl Held {
    fn name(self) -> &'static str {
        match self {
            Held::Concierge => "concierge",
            Held::Chat => "chat",
            Held::Live => "live",
            Held::Rooms => "rooms",
            Held::Sessions => "sessions",
        }
    }
}

/// Where one connection comes from and who it is.
struct Opening<'a> {
    endpoints: &'a Endpoints,
    name: &'a str,
    secret: Option<&'a str>,
    source: Option<IpAddr>,
    /// The chat room it joins.
    room: usize,
}

/// Opens one connection of `kind` and waits until the broker has identified it.
async fn open(kind: Held, opening: Opening<'_>) -> Result<Ws, BenchError> {
    let Opening {
        endpoints,
        name,
        secret,
        source,
        room,
    } = opening;
    match kind {
        Held::Concierge => client::concierge_identify(endpoints, name, secret, source).await,
        Held::Chat => chat_join(endpoints, &format!("bench-held-{room}"), name, source).await,
        Held::Live => live_connect(endpoints, secret.unwrap_or_default(), name, source).await,
        Held::Rooms => {
            let secret = secret.unwrap_or_default();
            Ok(client::rooms_connect(endpoints, secret, name, source)
                .await?
                .ws)
        }
        Held::Sessions => {
            let url = format!("{}/sessions", endpoints.ws);
            let mut ws = client::connect(&url, source, None).await?;
            let first = tokio::time::timeout(client::STEP_TIMEOUT, ws.next())
                .await
                .map_err(|_| BenchError::Timeout("sessions reset"))?;
            match first {
                Some(Ok(Message::Text(text))) if text.starts_with("reset\n") => Ok(ws),
                other => Err(BenchError::Protocol(format!(
                    "sessions: expected reset, got {other:?}"
                ))),
            }
        }
    }
}

/// Joins chat `room` as `name` from `source`; returns once the room has
/// announced the member.
async fn chat_join(
    endpoints: &Endpoints,
    room: &str,
    name: &str,
    source: Option<IpAddr>,
) -> Result<Ws, BenchError> {
    let url = format!("{}/chat/ws/{room}", endpoints.ws);
    let mut ws = client::connect(&url, source, None).await?;
    let request = json!({"event_type": "connection_request", "username": name});
    client::send_json(&mut ws, &request).await?;
    client::expect_json(
        &mut ws,
        "chat user_join",
        |v| text_field(v, "event_type") == "user_join" && text_field(v, "username") == name,
        |v| {
            (text_field(v, "event_type") == "connection_reject")
                .then(|| text_field(v, "message").to_owned())
        },
    )
    .await?;
    Ok(ws)
}

/// Connects a live client (a new user with a random id) and waits for the
/// answer to its first `ping`, which proves the broker has set it up.
async fn live_connect(
    endpoints: &Endpoints,
    secret: &str,
    name: &str,
    source: Option<IpAddr>,
) -> Result<Ws, BenchError> {
    let user_id = uuid::Uuid::new_v4().to_string();
    let keys = switchboard_actors::auth::TokenKeys::new(secret.as_bytes());
    let token = keys.mint(&user_id, name, std::time::Duration::from_secs(3600));
    let url = format!("{}/live?token={token}", endpoints.ws);
    let mut ws = client::connect(&url, source, None).await?;
    client::send_json(&mut ws, &json!({"type": "ping"})).await?;
    client::expect_json(
        &mut ws,
        "live pong",
        |v| text_field(v, "type") == "pong",
        |v| (text_field(v, "type") == "error").then(|| text_field(v, "message").to_owned()),
    )
    .await?;
    Ok(ws)
}

fn text_field<'v>(value: &'v serde_json::Value, key: &str) -> &'v str {
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// Runs the scenario; `--duration` is how long the connections are held
/// after the last one identified, before memory is read.
pub async fn run(
    common: &Common,
    args: ConnectionsArgs,
) -> Result<crate::bench::Report, BenchError> {
    let endpoints = Endpoints::parse(&common.url)?;
    let rss = "process_resident_memory_bytes";
    let before = settled(&endpoints).await?;
    let rss_before = client::metric(&before, rss)
        .ok_or_else(|| BenchError::Http(format!("{rss} is not in /metrics")))?;
    let conns_before = client::metric(&before, "switchboard_connections").unwrap_or(0.0);

    let secret = match args.protocol {
        Held::Concierge => args.secrets.concierge_secret.clone(),
        Held::Rooms | Held::Live => Some(args.secrets.jwt()?),
        Held::Sessions | Held::Chat => None,
    };
    let kind = args.protocol;
    let tag = run_tag();
    let (stop, stopped) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let failures = Arc::new(AtomicU64::new(0));
    let identified = Arc::new(AtomicU64::new(0));
    let per_source = args.per_source.max(1);
    let per_room = args.per_room.max(1);
    let loopback = endpoints.ws.contains("://127.") || endpoints.ws.contains("://localhost");
    let bar = progress(common, "connections");
    bar.set_length(args.count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("a valid template"),
    );

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let source = loopback.then(|| source_address(i / per_source));
        let (endpoints, secret) = (endpoints.clone(), secret.clone());
        let (failures, identified, mut stopped) =
            (failures.clone(), identified.clone(), stopped.clone());
        let bar = bar.clone();
        let name = format!("c{tag}{i}");
        tasks.push(tokio::spawn(async move {
            let opening = Opening {
                endpoints: &endpoints,
                name: &name,
                secret: secret.as_deref(),
                source,
                room: i / per_room,
            };
            let ws = open(kind, opening).await;
            let mut ws = match ws {
                Ok(ws) => ws,
                Err(e) => {
                    if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("switchboard bench: connection {i}: {e}");
                    }
                    return;
                }
            };
            identified.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            bar.inc(1);
            // Held: read (and so answer WebSocket and rooms pings) until
            // the run ends.
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    frame = ws.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(pong) = client::rooms_pong(&text) {
                                let _ = ws.send(Message::text(pong)).await;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }));
    }
    // Every handshake has finished when all permits are back.
    let _all = permits
        .acquire_many(args.concurrency.max(1) as u32)
        .await
        .expect("never closed");
    let ramp = started.elapsed();
    bar.finish_and_clear();
    let opened = identified.load(Ordering::Relaxed);

    tokio::time::sleep(common.duration).await;
    let after = client::scrape_async(&endpoints.http).await?;
    let rss_after = client::metric(&after, rss).unwrap_or(rss_before);
    let conns_after = client::metric(&after, "switchboard_connections").unwrap_or(0.0);
    let lost = failures.load(Ordering::Relaxed);
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    gone(&endpoints, conns_before).await?;
    tokio::time::sleep(args.release_wait).await;
    let released = client::scrape_async(&endpoints.http).await?;
    let rss_released = client::metric(&released, rss).unwrap_or(rss_after);

    let mut report = crate::bench::Report::new("connections");
    report
        .parameter("protocol", kind.name())
        .parameter("url", common.url.clone())
        .parameter("count", args.count)
        .parameter("concurrency", args.concurrency)
        .parameter("hold_s", common.duration.as_secs_f64());
    let held = (conns_after - conns_before).max(0.0);
    report
        .figure("identified", opened as f64, "conn")
        .figure("failed or dropped", lost as f64, "conn")
        .figure("ramp", ramp.as_secs_f64(), "s")
        .figure(
            "handshake+identify rate",
            opened as f64 / ramp.as_secs_f64(),
            "conn/s",
        )
        .figure("broker connections held", held, "conn")
        .figure("broker RSS before", rss_before / 1024.0 / 1024.0, "MiB")
        .figure("broker RSS held", rss_after / 1024.0 / 1024.0, "MiB")
        .figure(
            "broker RSS after all closed",
            rss_released / 1024.0 / 1024.0,
            "MiB",
        );
    if held > 0.0 {
        report.figure(
            "RSS per connection",
            (rss_after - rss_before) / held / 1024.0,
            "KiB",
        );
    }
    if rss_after > rss_before {
        report.figure(
            "burst memory returned",
            100.0 * (rss_after - rss_released) / (rss_after - rss_before),
            "%",
        );
    }
    Ok(report)
}

/// The broker's `/metrics` once its connection count has stopped moving
/// (connections of an earlier run may still be closing), or after 30 s.
async fn settled(endpoints: &Endpoints) -> Result<String, BenchError> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let mut last = client::scrape_async(&endpoints.http).await?;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = client::scrape_async(&endpoints.http).await?;
        let count = |text: &str| client::metric(text, "switchboard_connections");
        if count(&now) == count(&last) || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Waits (at most 60 s) until the broker holds no more connections than
/// `before`.
async fn gone(endpoints: &Endpoints, before: f64) -> Result<(), BenchError> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while Instant::now() < deadline {
        let now = client::scrape_async(&endpoints.http).await?;
        if client::metric(&now, "switchboard_connections").unwrap_or(0.0) <= before {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    Err(BenchError::Timeout(
        "the broker to close the dropped connections",
    ))
}

/// The `n`th loopback source address: 127.0.0.1, 127.0.0.2, ...
fn source_address(n: usize) -> IpAddr {
    let n = u32::try_from(n).unwrap_or(u32::MAX).min(250);
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + n))
}
