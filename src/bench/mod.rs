//! `switchboard bench`: the load generator that measures a running broker.
//!
//! It is a client only: it never starts a broker, so what it measures is the
//! broker a user runs (`cargo run --release -- --config config/bench.toml`)
//! or the baseline relay in `benches/relay`. Every scenario is bounded by
//! `--duration` (and, where it sends, `--rate`), prints a table at the end and
//! `--json` for machines.
//!
//! One module per scenario; the WebSocket handshakes and each protocol's
//! join sequence live in [`client`], the figures and their printing in
//! [`report`].

pub mod churn;
pub mod client;
pub mod connections;
pub mod fanout;
pub mod report;
pub mod sessions;
pub mod soak;

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

pub use client::BenchError;
pub use report::Report;

/// `switchboard bench ...`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub common: Common,
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The broker's base URL (`http://` or `ws://`); for `fanout --raw`, the relay's.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// How long the measured phase runs (setup and drain come on top).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Print the report as one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Client worker threads (default: the number of cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

/// What to measure.
#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// One room or service with many members; senders at a rate or flat out.
    Fanout(fanout::FanoutArgs),
    /// Open and hold many identified idle connections; memory per connection.
    Connections(connections::ConnectionsArgs),
    /// Connect / identify / join / leave / disconnect loops.
    Churn(churn::ChurnArgs),
    /// Session-list watchers while a host pushes updates over HTTP.
    Sessions(sessions::SessionsArgs),
    /// Every protocol at once for a long time; is memory flat after warm-up?
    Soak(soak::SoakArgs),
}

/// The broker's secrets a scenario may need (flags or the broker's own
/// environment variables).
#[derive(Args, Debug, Clone)]
pub struct Secrets {
    /// `auth.jwt_secret` of the broker, for `--protocol rooms`.
    #[arg(long, env = "SWITCHBOARD_AUTH__JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// `concierge.secret` of the broker, if it sets one.
    #[arg(long, env = "SWITCHBOARD_CONCIERGE__SECRET", hide_env_values = true)]
    pub concierge_secret: Option<String>,
}

impl Secrets {
    /// The JWT secret, or the error that says how to give it.
    pub fn jwt(&self) -> Result<String, BenchError> {
        self.jwt_secret.clone().ok_or_else(|| {
            BenchError::Usage(
                "--protocol rooms needs --jwt-secret (or SWITCHBOARD_AUTH__JWT_SECRET)".into(),
            )
        })
    }
}

/// A `--rate` as a report parameter: 0 means flat out.
pub fn rate_parameter(rate: u64) -> serde_json::Value {
    if rate == 0 {
        serde_json::json!("flat out")
    } else {
        serde_json::json!(rate)
    }
}

/// Shows progress until `deadline`: elapsed seconds and `status()`.
pub async fn run_until(bar: &ProgressBar, deadline: Instant, status: impl Fn() -> String) {
    let started = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(started.elapsed().as_secs());
        bar.set_message(status());
    }
}

/// Waits until `count` reaches `expected` or has not moved for a second:
/// the drain after the senders stop.
pub async fn drained(count: &std::sync::atomic::AtomicU64, expected: u64) {
    use std::sync::atomic::Ordering;
    let mut seen = count.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while seen < expected && quiet_since.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
}

/// The protocol a scenario drives.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The workshop chat (`/chat/ws/{room}`).
    Chat,
    /// The concierge gateway (`/concierge`), through a service.
    Concierge,
    /// Permissioned rooms (`/rooms`, needs `--jwt-secret`).
    Rooms,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Chat => "chat",
            Proto::Concierge => "concierge",
            Proto::Rooms => "rooms",
        }
    }
}

/// Runs one scenario to completion and prints its report.
pub fn run(args: BenchArgs) -> ExitCode {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.common.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard bench: cannot start the client runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let common = args.common;
    let outcome = runtime.block_on(async {
        match args.scenario {
            Scenario::Fanout(a) => fanout::run(&common, a).await,
            Scenario::Connections(a) => connections::run(&common, a).await,
            Scenario::Churn(a) => churn::run(&common, a).await,
            Scenario::Sessions(a) => sessions::run(&common, a).await,
            Scenario::Soak(a) => soak::run(&common, a).await,
        }
    });
    // Idle connections still held by tasks must not delay the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(report) => {
            if common.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Nanoseconds since the first call: the clock every timestamp a sender puts
/// in a payload is read from, so one process can measure send->receive.
pub fn now_nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A payload of exactly `size` bytes (at least the stamp) that carries the
/// send time: `~{nanos}~` then padding.
pub fn stamped_payload(size: usize) -> String {
    let mut payload = format!("~{}~", now_nanos());
    while payload.len() < size {
        payload.push('x');
    }
    payload
}

/// The send time in a frame that carries a [`stamped_payload`], if any.
pub fn stamp_in(frame: &str) -> Option<u64> {
    let start = frame.find('~')? + 1;
    let len = frame[start..].find('~')?;
    frame[start..start + len].parse().ok()
}

/// A progress bar over the measured phase, hidden for `--json` and when
/// stderr is not a terminal.
pub fn progress(common: &Common, what: &str) -> ProgressBar {
    if common.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(common.duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}s {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// A short random tag that keeps names unique across runs against one broker.
pub fn run_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_payload_has_the_asked_size_and_its_stamp_reads_back() {
        let payload = stamped_payload(100);
        assert_eq!(payload.len(), 100);
        let frame = format!(r#"{{"event_type":"message","message":"{payload}"}}"#);
        let stamp = stamp_in(&frame).expect("a stamp");
        assert!(stamp <= now_nanos());
    }

    #[test]
    fn a_frame_without_a_stamp_has_none() {
        assert_eq!(stamp_in(r#"{"event_type":"user_join"}"#), None);
        assert_eq!(stamp_in("~not a number~"), None);
    }
}
