//! `bench connections`: opens `--count` identified connections (concierge
//! IDENTIFY by default; rooms sessions or session-list watchers on request),
//! holds them idle, and reports the handshake + identify rate and the
//! broker's resident memory per connection (from its `/metrics`).
//!
//! The concierge announces every arrival to every identified client
//! (`CLIENT_JOINED`), so its ramp costs O(N²) deliveries; the rooms protocol
//! announces nothing, which isolates the cost of a connection itself.
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
use futures_util::StreamExt;
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
    #[command(flatten)]
    pub secrets: Secrets,
}

/// The kind of connection held.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Concierge clients, each after IDENTIFY -> HELLO.
    Concierge,
    /// Permissioned-rooms clients, each after its JWT upgrade and `session`.
    Rooms,
    /// Session-list watchers, each after its `reset`.
    Sessions,
}

impl Held {
    fn name(self) -> &'static str {
        match self {
            Held::Concierge => "concierge",
            Held::Rooms => "rooms",
            Held::Sessions => "sessions",
        }
    }
}

/// Opens one connection of `kind` and waits until the broker has identified it.
async fn open(
    kind: Held,
    endpoints: &Endpoints,
    name: &str,
    secret: Option<&str>,
    source: Option<IpAddr>,
) -> Result<Ws, BenchError> {
    match kind {
        Held::Concierge => client::concierge_identify(endpoints, name, secret, source).await,
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
        Held::Rooms => Some(args.secrets.jwt()?),
        Held::Sessions => None,
    };
    let kind = args.protocol;
    let tag = run_tag();
    let (stop, stopped) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let failures = Arc::new(AtomicU64::new(0));
    let identified = Arc::new(AtomicU64::new(0));
    let per_source = args.per_source.max(1);
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
            let ws = open(kind, &endpoints, &name, secret.as_deref(), source).await;
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
            // Held: read (and so answer pings) until the run ends.
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    frame = ws.next() => if !matches!(frame, Some(Ok(_))) {
                        failures.fetch_add(1, Ordering::Relaxed);
                        return;
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
        .figure("broker RSS held", rss_after / 1024.0 / 1024.0, "MiB");
    if held > 0.0 {
        report.figure(
            "RSS per connection",
            (rss_after - rss_before) / held / 1024.0,
            "KiB",
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

/// The `n`th loopback source address: 127.0.0.1, 127.0.0.2, ...
fn source_address(n: usize) -> IpAddr {
    let n = u32::try_from(n).unwrap_or(u32::MAX).min(250);
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + n))
}
