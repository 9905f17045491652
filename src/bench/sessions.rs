//! `bench sessions`: `--watchers` session-list clients while `--hosts` game
//! hosts push updates through the host API (`PATCH /api/sessions/{id}`);
//! reports updates delivered per second and update->watcher latency.
//!
//! The hosts are plain blocking HTTP clients on their own threads, as game
//! servers would be; each update's session name carries its send time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{stream, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, BenchError, Endpoints, Ws};
use super::report::{latency_histogram, Report};
use super::{drained, now_nanos, progress, rate_parameter, run_tag, run_until, stamp_in, Common};

/// `bench sessions` options.
#[derive(Args, Debug)]
pub struct SessionsArgs {
    /// Session-list watchers.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Host threads sending updates.
    #[arg(long, default_value_t = 2)]
    pub hosts: usize,
    /// Updates per second from all hosts together; 0 = flat out.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Connections set up at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// The broker's `admin.api_key`.
    #[arg(long, env = "SWITCHBOARD_ADMIN__API_KEY", hide_env_values = true)]
    pub api_key: String,
}

/// Runs the scenario.
pub async fn run(common: &Common, args: SessionsArgs) -> Result<Report, BenchError> {
    let endpoints = Endpoints::parse(&common.url)?;
    let hosts = args.hosts.max(1);
    let tag = run_tag();
    let sessions: Vec<String> = (0..hosts).map(|i| format!("bench-{tag}-{i}")).collect();
    for id in &sessions {
        put_session(&endpoints.http, &args.api_key, id).await?;
    }

    let url = format!("{}/sessions", endpoints.ws);
    let watchers: Vec<Ws> = stream::iter(0..args.watchers)
        .map(|_| client::connect(&url, None, None))
        .buffer_unordered(args.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let received = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let watching: Vec<_> = watchers
        .into_iter()
        .map(|ws| {
            tokio::spawn(watch_list(
                ws,
                received.clone(),
                lost.clone(),
                stopped.clone(),
            ))
        })
        .collect();

    let bar = progress(common, "sessions");
    let started = Instant::now();
    let deadline = started + common.duration;
    let hosting = Arc::new(Hosting::default());
    let per_host = args.rate as f64 / hosts as f64;
    let host_threads: Vec<_> = sessions
        .iter()
        .map(|id| {
            let (http, key, id) = (endpoints.http.clone(), args.api_key.clone(), id.clone());
            let hosting = hosting.clone();
            std::thread::spawn(move || host(&http, &key, &id, per_host, deadline, &hosting))
        })
        .collect();
    run_until(&bar, deadline, || {
        format!("{} updates delivered", received.load(Ordering::Relaxed))
    })
    .await;
    let host_time = started.elapsed();
    hosting.halt.store(true, Ordering::Relaxed);
    for thread in host_threads {
        let _ = thread.join();
    }
    bar.finish_and_clear();

    let updates = hosting.sent.load(Ordering::Relaxed);
    let expected = updates * args.watchers as u64;
    drained(&received, expected).await;
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let mut latency = latency_histogram();
    let mut delivered = 0u64;
    for task in watching {
        if let Ok((count, h)) = task.await {
            delivered += count;
            let _ = latency.add(&h);
        }
    }
    for id in &sessions {
        let _ = delete_session(&endpoints.http, &args.api_key, id).await;
    }

    let mut report = Report::new("sessions");
    report
        .parameter("url", common.url.clone())
        .parameter("watchers", args.watchers)
        .parameter("hosts", hosts)
        .parameter("rate", rate_parameter(args.rate))
        .parameter("duration_s", common.duration.as_secs_f64());
    report
        .figure("updates sent", updates as f64, "update")
        .figure(
            "update rate",
            updates as f64 / host_time.as_secs_f64(),
            "update/s",
        )
        .figure(
            "failed updates",
            hosting.failed.load(Ordering::Relaxed) as f64,
            "update",
        )
        .figure(
            "relisted after ttl",
            hosting.relisted.load(Ordering::Relaxed) as f64,
            "session",
        )
        .figure("deliveries", delivered as f64, "msg")
        .figure(
            "delivered rate",
            delivered as f64 / elapsed.as_secs_f64(),
            "msg/s",
        )
        .figure(
            "not delivered",
            expected.saturating_sub(delivered) as f64,
            "msg",
        )
        .figure("watchers lost", lost.load(Ordering::Relaxed) as f64, "conn")
        .latency("latency", &latency);
    Ok(report)
}

/// A watcher: counts stamped `update` lines until the run ends.
async fn watch_list(
    mut ws: Ws,
    received: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) -> (u64, Histogram<u64>) {
    let mut latency = latency_histogram();
    let mut count = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if !text.starts_with("update\n") {
                        continue;
                    }
                    if let Some(stamp) = stamp_in(&text) {
                        latency.saturating_record(now_nanos().saturating_sub(stamp) / 1000);
                        count += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    lost.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    (count, latency)
}

/// What the host threads share: their counts and the order to stop.
#[derive(Default)]
struct Hosting {
    sent: AtomicU64,
    failed: AtomicU64,
    /// Listings put again after the broker removed them (`sessions.ttl`).
    relisted: AtomicU64,
    halt: AtomicBool,
}

/// One host thread: PATCHes its session's name (carrying the send time)
/// at `per_second`, or back to back when it is 0.
fn host(http: &str, key: &str, id: &str, per_second: f64, deadline: Instant, hosting: &Hosting) {
    let agent = client::http_agent();
    let url = format!("{http}/api/sessions/{id}");
    let started = Instant::now();
    let mut done = 0u64;
    while Instant::now() < deadline && !hosting.halt.load(Ordering::Relaxed) {
        if per_second > 0.0 {
            let next = started + Duration::from_secs_f64(done as f64 / per_second);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let patch = || {
            let body = json!({"session_name": format!("~{}~", now_nanos())}).to_string();
            agent
                .patch(&url)
                .header("authorization", &format!("Bearer {key}"))
                .header("content-type", "application/json")
                .send(body.as_str())
                .map(|r| r.status().as_u16())
        };
        let mut status = patch();
        // Only a PUT refreshes a listing: past `sessions.ttl` the broker has
        // removed it, and a host lists it again, as a real host would.
        if matches!(status, Ok(404)) && put(&agent, &url, key).is_ok_and(|s| s == 201) {
            hosting.relisted.fetch_add(1, Ordering::Relaxed);
            status = patch();
        }
        if status.is_ok_and(|s| s == 200) {
            hosting.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            hosting.failed.fetch_add(1, Ordering::Relaxed);
        }
        done += 1;
    }
}

/// PUTs the listing of session `url` (the whole session) and answers the status.
fn put(agent: &ureq::Agent, url: &str, key: &str) -> Result<u16, ureq::Error> {
    let body = json!({
        "session_name": "bench", "active_users": 1, "joined_users": 1,
        "host_username": "bench", "host_registration_date": "2020-01-01T00:00:00Z",
        "host_is_patron": false, "host_is_mentor": false,
        "session_begin_time": "2020-01-01T00:00:00Z", "users": []
    })
    .to_string();
    agent
        .put(url)
        .header("authorization", &format!("Bearer {key}"))
        .header("content-type", "application/json")
        .send(body.as_str())
        .map(|r| r.status().as_u16())
}

async fn put_session(http: &str, key: &str, id: &str) -> Result<(), BenchError> {
    let (url, key) = (format!("{http}/api/sessions/{id}"), key.to_owned());
    let status = client::blocking(move || put(&client::http_agent(), &url, &key)).await?;
    if status == 200 || status == 201 {
        Ok(())
    } else {
        Err(BenchError::Http(format!(
            "PUT /api/sessions/{id} answered {status} (is --api-key the broker's admin.api_key?)"
        )))
    }
}

async fn delete_session(http: &str, key: &str, id: &str) -> Result<(), BenchError> {
    let (url, key) = (format!("{http}/api/sessions/{id}"), key.to_owned());
    client::blocking(move || {
        client::http_agent()
            .delete(&url)
            .header("authorization", &format!("Bearer {key}"))
            .call()
            .map(drop)
    })
    .await
}
