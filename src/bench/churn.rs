//! `bench churn`: `--workers` loops of connect / identify / join / leave /
//! disconnect, each step waiting for the broker's answer; reports complete
//! cycles per second, the cycle time and the errors.
//!
//! This exercises what a steady stream of short visits costs: registry
//! bookkeeping, announcements, the store, and tearing connections down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::client::{self, BenchError, Endpoints};
use super::report::{latency_histogram, Report};
use super::{progress, rate_parameter, run_tag, run_until, Common, Proto, Secrets};

/// `bench churn` options.
#[derive(Args, Debug)]
pub struct ChurnArgs {
    /// The protocol whose visits are measured.
    #[arg(long, value_enum, default_value = "chat")]
    pub protocol: Proto,
    /// Loops running at once.
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    /// The most cycles per second from all workers together; 0 = flat out.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    #[command(flatten)]
    pub secrets: Secrets,
}

/// Where the visitors go: created once, before the loops start.
#[derive(Clone)]
enum Venue {
    /// A chat room to switch into (and back out to `Global`).
    Chat { room: String },
    /// A concierge service to subscribe to; its owner stays connected.
    Concierge { service: String },
    /// A permissioned room to enter and exit.
    Rooms { room_id: String, secret: String },
}

/// Runs the scenario.
pub async fn run(common: &Common, args: ChurnArgs) -> Result<Report, BenchError> {
    let endpoints = Endpoints::parse(&common.url)?;
    let tag = run_tag();
    let secret = args.secrets.concierge_secret.clone();
    // The venue's owner, held open for the whole run.
    let (venue, owner) = match args.protocol {
        Proto::Chat => {
            let room = format!("churn-{tag}");
            let ws = client::chat_join(&endpoints, &room, &format!("o{tag}")).await?;
            (Venue::Chat { room }, ws)
        }
        Proto::Concierge => {
            let service = format!("churn{tag}");
            let mut ws =
                client::concierge_identify(&endpoints, &format!("o{tag}"), secret.as_deref(), None)
                    .await?;
            client::concierge_request(
                &mut ws,
                &json!({"type": "SERVICE_CREATE", "service": service, "nickname": null}),
                "SERVICE_CREATE_RESULT",
            )
            .await?;
            (Venue::Concierge { service }, ws)
        }
        Proto::Rooms => {
            let secret = args.secrets.jwt()?;
            let mut owner =
                client::rooms_connect(&endpoints, &secret, &format!("o{tag}"), None).await?;
            let room_id = owner.create_room(&format!("churn-{tag}")).await?;
            (Venue::Rooms { room_id, secret }, owner.ws)
        }
    };

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let owner = tokio::spawn(client::hold(owner, stopped));

    let cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let next_name = Arc::new(AtomicU64::new(0));
    let bar = progress(common, &format!("churn {}", args.protocol.name()));
    let started = Instant::now();
    let deadline = started + common.duration;
    let workers = args.workers.max(1);
    let per_worker = args.rate as f64 / workers as f64;
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (endpoints, venue, secret) = (endpoints.clone(), venue.clone(), secret.clone());
        let (cycles, errors, next_name, tag) = (
            cycles.clone(),
            errors.clone(),
            next_name.clone(),
            tag.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut times = latency_histogram();
            let mut done = 0u64;
            while Instant::now() < deadline {
                if per_worker > 0.0 {
                    let next = started + Duration::from_secs_f64(done as f64 / per_worker);
                    tokio::time::sleep_until(next.into()).await;
                }
                let name = format!("v{tag}{}", next_name.fetch_add(1, Ordering::Relaxed));
                let began = Instant::now();
                match visit(&endpoints, &venue, &name, secret.as_deref()).await {
                    Ok(()) => {
                        times.saturating_record(began.elapsed().as_micros() as u64);
                        cycles.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("switchboard bench: churn: {e}");
                        }
                    }
                }
                done += 1;
            }
            times
        }));
    }
    run_until(&bar, deadline, || {
        format!("{} cycles", cycles.load(Ordering::Relaxed))
    })
    .await;
    let mut times = latency_histogram();
    for task in tasks {
        if let Ok(h) = task.await {
            let _ = times.add(&h);
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let _ = stop.send(true);
    let _ = owner.await;

    let done = cycles.load(Ordering::Relaxed);
    let mut report = Report::new("churn");
    report
        .parameter("protocol", args.protocol.name())
        .parameter("url", common.url.clone())
        .parameter("workers", workers)
        .parameter("rate", rate_parameter(args.rate))
        .parameter("duration_s", common.duration.as_secs_f64());
    report
        .figure("cycles", done as f64, "cycle")
        .figure("cycle rate", done as f64 / elapsed.as_secs_f64(), "cycle/s")
        .figure(
            "operations rate",
            5.0 * done as f64 / elapsed.as_secs_f64(),
            "op/s",
        )
        .figure("errors", errors.load(Ordering::Relaxed) as f64, "cycle")
        .latency("cycle time", &times);
    Ok(report)
}

/// One visit: connect, identify, join, leave, disconnect.
async fn visit(
    endpoints: &Endpoints,
    venue: &Venue,
    name: &str,
    concierge_secret: Option<&str>,
) -> Result<(), BenchError> {
    match venue {
        Venue::Chat { room } => {
            let mut ws = client::chat_join(endpoints, "Global", name).await?;
            client::chat_switch(&mut ws, room).await?;
            client::chat_switch(&mut ws, "Global").await?;
            client::close(ws).await;
        }
        Venue::Concierge { service } => {
            let mut ws =
                client::concierge_identify(endpoints, name, concierge_secret, None).await?;
            client::concierge_request(
                &mut ws,
                &json!({"type": "SELF_SUBSCRIBE", "service": service}),
                "SELF_SUBSCRIBE_RESULT",
            )
            .await?;
            client::concierge_request(
                &mut ws,
                &json!({"type": "SELF_UNSUBSCRIBE", "service": service}),
                "SELF_UNSUBSCRIBE_RESULT",
            )
            .await?;
            client::close(ws).await;
        }
        Venue::Rooms { room_id, secret } => {
            let mut session = client::rooms_connect(endpoints, secret, name, None).await?;
            session.enter(room_id).await?;
            session.exit(room_id).await?;
            client::close(session.ws).await;
        }
    }
    Ok(())
}
