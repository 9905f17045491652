//! `switchboard bench`, end to end: the real command against a real broker
//! (and against the baseline relay), its `--json` report parsed and its
//! counts checked. Runs are small and short: these tests check that every
//! scenario measures what it says, never how fast anything is.

mod common;

use std::process::{Command, Output};

use common::tokens::{self, JWT_SECRET};
use common::{Broker, ADMIN_KEY};
use serde_json::Value;

/// Runs `switchboard bench ARGS --json` and returns its parsed report.
fn bench(args: &[&str]) -> Value {
    let output = run(args);
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 report");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env_remove("SWITCHBOARD_AUTH__JWT_SECRET")
        .env_remove("SWITCHBOARD_ADMIN__API_KEY")
        .output()
        .expect("run switchboard bench")
}

/// A figure of a report.
fn figure(report: &Value, name: &str) -> f64 {
    report["results"][name]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no figure {name:?} in {report}"))
}

/// Every message reached every receiver, and the latency was measured.
fn assert_all_delivered(report: &Value, members: f64) {
    let sent = figure(report, "messages sent");
    assert!(sent > 0.0, "nothing was sent: {report}");
    assert_eq!(figure(report, "deliveries"), sent * members, "{report}");
    assert_eq!(figure(report, "not delivered"), 0.0, "{report}");
    assert_eq!(figure(report, "connections lost"), 0.0, "{report}");
    assert!(figure(report, "latency p99") > 0.0, "{report}");
    assert!(figure(report, "delivered rate") > 0.0, "{report}");
}

fn fanout(broker: &Broker, protocol: &str) -> Value {
    let url = broker.http("");
    bench(&[
        "fanout",
        "--url",
        &url,
        "--protocol",
        protocol,
        "--members",
        "20",
        "--senders",
        "2",
        "--rate",
        "100",
        "--duration",
        "2s",
        "--jwt-secret",
        JWT_SECRET,
    ])
}

#[test]
fn fanout_in_a_chat_room_reaches_every_member() {
    let broker = Broker::with(tokens::options());
    let report = fanout(&broker, "chat");
    assert_eq!(report["scenario"], "fanout");
    assert_eq!(report["parameters"]["target"], "chat");
    assert_eq!(report["parameters"]["members"], 20);
    assert_all_delivered(&report, 20.0);
    assert_eq!(figure(&report, "broker drops"), 0.0);
}

#[test]
fn fanout_through_a_concierge_service_reaches_every_subscriber() {
    let broker = Broker::start();
    let report = fanout(&broker, "concierge");
    assert_eq!(report["parameters"]["target"], "concierge");
    assert_all_delivered(&report, 20.0);
}

#[test]
fn fanout_in_a_permissioned_room_reaches_every_member() {
    let broker = Broker::with(tokens::options());
    let report = fanout(&broker, "rooms");
    assert_eq!(report["parameters"]["target"], "rooms");
    assert_all_delivered(&report, 20.0);
}

#[test]
fn fanout_flat_out_stops_by_itself_and_loses_nothing() {
    let broker = Broker::with(tokens::options().env("LIMITS__MESSAGES_PER_SECOND", "100000"));
    let url = broker.http("");
    let report = bench(&[
        "fanout",
        "--url",
        &url,
        "--members",
        "10",
        "--window",
        "4",
        "--duration",
        "1s",
    ]);
    assert_eq!(report["parameters"]["rate"], "flat out");
    assert_all_delivered(&report, 10.0);
}

#[test]
fn fanout_raw_drives_the_baseline_relay() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    runtime.spawn(switchboard_relay::serve(listener));
    let url = format!("ws://{addr}");
    let report = bench(&[
        "fanout",
        "--raw",
        "--url",
        &url,
        "--members",
        "20",
        "--rate",
        "100",
        "--duration",
        "2s",
    ]);
    assert_eq!(report["parameters"]["target"], "raw relay");
    assert_all_delivered(&report, 20.0);
    assert!(report["results"].get("broker drops").is_none());
}

#[test]
fn connections_are_held_and_measured() {
    let broker = Broker::with(tokens::options());
    let url = broker.http("");
    for protocol in ["concierge", "rooms", "sessions"] {
        let report = bench(&[
            "connections",
            "--url",
            &url,
            "--protocol",
            protocol,
            "--count",
            "40",
            "--per-source",
            "15",
            "--duration",
            "500ms",
            "--jwt-secret",
            JWT_SECRET,
        ]);
        assert_eq!(report["parameters"]["protocol"], protocol);
        assert_eq!(figure(&report, "identified"), 40.0, "{report}");
        assert_eq!(figure(&report, "failed or dropped"), 0.0, "{report}");
        assert_eq!(figure(&report, "broker connections held"), 40.0, "{report}");
        assert!(figure(&report, "handshake+identify rate") > 0.0);
        assert!(figure(&report, "broker RSS held") > 0.0);
        report["results"]["RSS per connection"]["value"]
            .as_f64()
            .expect("RSS per connection");
    }
}

#[test]
fn churn_cycles_without_errors_in_every_protocol() {
    let broker = Broker::with(tokens::options());
    let url = broker.http("");
    for protocol in ["chat", "concierge", "rooms"] {
        let report = bench(&[
            "churn",
            "--url",
            &url,
            "--protocol",
            protocol,
            "--workers",
            "4",
            "--duration",
            "1s",
            "--jwt-secret",
            JWT_SECRET,
        ]);
        assert_eq!(report["parameters"]["protocol"], protocol);
        assert!(figure(&report, "cycles") > 0.0, "{report}");
        assert_eq!(figure(&report, "errors"), 0.0, "{report}");
    }
}

#[test]
fn sessions_updates_reach_every_watcher() {
    let broker = Broker::start();
    let url = broker.http("");
    let report = bench(&[
        "sessions",
        "--url",
        &url,
        "--watchers",
        "15",
        "--hosts",
        "2",
        "--rate",
        "50",
        "--duration",
        "2s",
        "--api-key",
        ADMIN_KEY,
    ]);
    let updates = figure(&report, "updates sent");
    assert!(updates > 0.0);
    assert_eq!(figure(&report, "failed updates"), 0.0, "{report}");
    assert_eq!(figure(&report, "deliveries"), updates * 15.0, "{report}");
    assert_eq!(figure(&report, "watchers lost"), 0.0, "{report}");
}

#[test]
fn a_wrong_api_key_or_a_missing_secret_is_a_clear_error() {
    let broker = Broker::start();
    let url = broker.http("");
    let output = run(&[
        "sessions",
        "--url",
        &url,
        "--api-key",
        "wrong-key-0123456789",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("answered 401"), "{stderr}");

    let output = run(&["fanout", "--url", &url, "--protocol", "rooms"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs --jwt-secret"));

    let output = run(&["fanout", "--url", "127.0.0.1:1"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--url must start with"));
}

#[test]
fn soak_runs_every_protocol_at_once_and_samples_memory() {
    let broker = Broker::with(tokens::options());
    let url = broker.http("");
    let report = bench(&[
        "soak",
        "--url",
        &url,
        "--members",
        "5",
        "--rate",
        "10",
        "--watchers",
        "5",
        "--churn",
        "2",
        "--duration",
        "4s",
        "--warmup",
        "1s",
        "--sample-every",
        "500ms",
        "--api-key",
        ADMIN_KEY,
        "--jwt-secret",
        JWT_SECRET,
    ]);
    assert_eq!(
        report["parameters"]["parts"],
        "chat, concierge, chat churn, concierge churn, rooms, sessions"
    );
    for part in ["chat", "concierge", "rooms"] {
        let sent = figure(&report, &format!("{part} messages sent"));
        assert!(sent > 0.0, "{part}: {report}");
        assert_eq!(figure(&report, &format!("{part} deliveries")), sent * 5.0);
        assert_eq!(figure(&report, &format!("{part} not delivered")), 0.0);
        assert_eq!(figure(&report, &format!("{part} connections lost")), 0.0);
    }
    for part in ["chat churn", "concierge churn"] {
        assert!(figure(&report, &format!("{part} cycles")) > 0.0, "{report}");
        assert_eq!(figure(&report, &format!("{part} errors")), 0.0, "{report}");
    }
    let updates = figure(&report, "sessions updates sent");
    assert_eq!(figure(&report, "sessions deliveries"), updates * 5.0);
    assert!(figure(&report, "samples after warm-up") >= 2.0, "{report}");
    assert!(figure(&report, "rss after warm-up") > 1.0, "{report}");
    assert!(figure(&report, "rss max after warm-up") >= figure(&report, "rss at end"));
    assert!(figure(&report, "open fds at end") > 0.0, "{report}");
}
