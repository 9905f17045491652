//! `bench soak`: every protocol at once for a long `--duration`, while the
//! broker's memory and file descriptors are sampled from its `/metrics`.
//!
//! A broker that runs for months must not creep: the question a soak answers
//! is whether resident memory is flat once the working set is warm. So the
//! scenario runs the other scenarios side by side at steady, moderate rates
//! (chat and concierge fan-out, permissioned rooms when a JWT secret is
//! given, session-list updates when an admin key is given, and connect /
//! leave churn in chat and concierge), and reports memory after warm-up,
//! at the end, its maximum and its slope, beside each part's losses.

use std::time::{Duration, Instant};

use clap::Args;
use futures_util::future::join_all;

use super::churn::{self, ChurnArgs};
use super::client::{self, BenchError, Endpoints};
use super::fanout::{self, FanoutArgs};
use super::report::Report;
use super::sessions::{self, SessionsArgs};
use super::{progress, run_until, Common, Proto, Secrets};

const RSS: &str = "process_resident_memory_bytes";
const FDS: &str = "process_open_fds";
const CONNECTIONS: &str = "switchboard_connections";
/// What the soak reports of each part: its volume and its losses.
const PART_FIGURES: &[&str] = &[
    "messages sent",
    "deliveries",
    "not delivered",
    "broker drops",
    "connections lost",
    "updates sent",
    "failed updates",
    "relisted after ttl",
    "watchers lost",
    "cycles",
    "errors",
    "latency p99",
];
const MIB: f64 = 1024.0 * 1024.0;

/// `bench soak` options.
#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Members of each fan-out venue (chat room, concierge service, room).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Messages per second into each fan-out venue.
    #[arg(long, default_value_t = 20)]
    pub rate: u64,
    /// Session-list watchers (needs `--api-key`).
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Session updates per second (needs `--api-key`).
    #[arg(long, default_value_t = 5)]
    pub updates: u64,
    /// Connect / join / leave / disconnect cycles per second, per churning protocol.
    #[arg(long, default_value_t = 5)]
    pub churn: u64,
    /// Memory is judged from the first sample after this much time.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Time between two samples of the broker's memory.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// The broker's `admin.api_key`; without it the session list is left out.
    #[arg(long, env = "SWITCHBOARD_ADMIN__API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub secrets: Secrets,
}

/// One reading of the broker's `/metrics`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss: f64,
    fds: f64,
    connections: f64,
}

/// Runs the scenario.
pub async fn run(common: &Common, args: SoakArgs) -> Result<Report, BenchError> {
    let endpoints = Endpoints::parse(&common.url)?;
    // The parts run with hidden progress bars; the soak shows its own.
    let quiet = Common {
        json: true,
        ..common.clone()
    };
    let fanout_of = |protocol| FanoutArgs {
        raw: false,
        protocol,
        members: args.members,
        senders: 1,
        rate: args.rate,
        size: 200,
        window: 32,
        connect_concurrency: 16,
        secrets: args.secrets.clone(),
    };
    let churn_of = |protocol| ChurnArgs {
        protocol,
        workers: 4,
        rate: args.churn,
        secrets: args.secrets.clone(),
    };
    let mut parts: Vec<(&str, PartRun)> = vec![
        (
            "chat",
            Box::pin(fanout::run(&quiet, fanout_of(Proto::Chat))),
        ),
        (
            "concierge",
            Box::pin(fanout::run(&quiet, fanout_of(Proto::Concierge))),
        ),
        (
            "chat churn",
            Box::pin(churn::run(&quiet, churn_of(Proto::Chat))),
        ),
        (
            "concierge churn",
            Box::pin(churn::run(&quiet, churn_of(Proto::Concierge))),
        ),
    ];
    if args.secrets.jwt_secret.is_some() {
        parts.push((
            "rooms",
            Box::pin(fanout::run(&quiet, fanout_of(Proto::Rooms))),
        ));
    }
    if let Some(api_key) = args.api_key.clone() {
        let watch = SessionsArgs {
            watchers: args.watchers,
            hosts: 1,
            rate: args.updates,
            connect_concurrency: 16,
            api_key,
        };
        parts.push(("sessions", Box::pin(sessions::run(&quiet, watch))));
    }
    let names: Vec<&str> = parts.iter().map(|(name, _)| *name).collect();

    let started = Instant::now();
    let bar = progress(common, "soak");
    let sampling = sample_until(&endpoints.http, started, common.duration, args.sample_every);
    let watching = async {
        run_until(&bar, started + common.duration, || {
            format!("{} parts", names.len())
        })
        .await
    };
    let (reports, samples, ()) = tokio::join!(
        join_all(parts.into_iter().map(|(_, run)| run)),
        sampling,
        watching
    );
    bar.finish_and_clear();
    let samples = samples?;

    let mut report = Report::new("soak");
    report
        .parameter("url", common.url.clone())
        .parameter("duration_s", common.duration.as_secs_f64())
        .parameter("members", args.members)
        .parameter("rate", args.rate)
        .parameter("churn", args.churn)
        .parameter("warmup_s", args.warmup.as_secs_f64())
        .parameter("parts", names.join(", "));
    memory_figures(&mut report, &samples, args.warmup);
    for (name, part) in names.iter().zip(reports) {
        report.include(name, &part?, PART_FIGURES);
    }
    Ok(report)
}

type PartRun<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Report, BenchError>> + 'a>>;

/// Reads the broker's memory, fds and connections every `every` until
/// `duration` has passed since `started` (one more reading at the end).
async fn sample_until(
    http: &str,
    started: Instant,
    duration: Duration,
    every: Duration,
) -> Result<Vec<Sample>, BenchError> {
    let mut samples = Vec::new();
    loop {
        let text = client::scrape_async(http).await?;
        samples.push(Sample {
            at: started.elapsed(),
            rss: client::metric(&text, RSS).unwrap_or(0.0),
            fds: client::metric(&text, FDS).unwrap_or(0.0),
            connections: client::metric(&text, CONNECTIONS).unwrap_or(0.0),
        });
        if started.elapsed() >= duration {
            return Ok(samples);
        }
        let next = (started.elapsed() + every).min(duration);
        tokio::time::sleep_until((started + next).into()).await;
    }
}

/// Memory after warm-up, at the end, at most, its growth and its slope.
fn memory_figures(report: &mut Report, samples: &[Sample], warmup: Duration) {
    let warm: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup).collect();
    let (Some(first), Some(last)) = (warm.first(), warm.last()) else {
        return;
    };
    let max = warm.iter().map(|s| s.rss).fold(0.0, f64::max);
    report
        .figure("samples after warm-up", warm.len() as f64, "")
        .figure("rss after warm-up", first.rss / MIB, "MiB")
        .figure("rss at end", last.rss / MIB, "MiB")
        .figure("rss max after warm-up", max / MIB, "MiB")
        .figure(
            "rss growth after warm-up",
            100.0 * (last.rss - first.rss) / first.rss.max(1.0),
            "%",
        )
        .figure("rss slope", slope_per_hour(&warm) / MIB, "MiB/h")
        .figure("open fds after warm-up", first.fds, "")
        .figure("open fds at end", last.fds, "")
        .figure("connections after warm-up", first.connections, "")
        .figure("connections at end", last.connections, "");
}

/// Least-squares slope of RSS over time, in bytes per hour.
fn slope_per_hour(samples: &[&Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let hours = |s: &Sample| s.at.as_secs_f64() / 3600.0;
    let mean_t = samples.iter().map(|s| hours(s)).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        let dt = hours(s) - mean_t;
        num += dt * (s.rss - mean_r);
        den += dt * dt;
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: u64, rss: f64) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            rss,
            fds: 10.0,
            connections: 5.0,
        }
    }

    #[test]
    fn flat_memory_has_no_slope_and_growth_is_measured_from_warm_up() {
        let samples = [sample(0, 1.0), sample(60, 100.0), sample(120, 100.0)];
        let mut report = Report::new("soak");
        memory_figures(&mut report, &samples, Duration::from_secs(60));
        assert_eq!(report.get("rss slope"), Some(0.0));
        assert_eq!(report.get("rss growth after warm-up"), Some(0.0));
        assert_eq!(report.get("samples after warm-up"), Some(2.0));
    }

    #[test]
    fn a_steady_climb_has_its_slope_per_hour() {
        // One MiB per minute is 60 MiB per hour.
        let samples: Vec<Sample> = (0..10).map(|m| sample(m * 60, m as f64 * MIB)).collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        assert!((slope_per_hour(&refs) / MIB - 60.0).abs() < 1e-6);
    }
}
