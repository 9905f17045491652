//! The series an operator alerts on (issue 19), end to end: each family
//! appears on `GET /metrics` with exactly the labels it documents once the
//! action that moves it has happened, against the real broker.

mod common;

use std::time::Duration;

use common::chat::{join, message};
use common::rooms::create_by_api;
use common::{
    admin, fail_store_writes, metric, request, slow_store_writes, wait_for_metric, Broker, Options,
    RawWs, WsClient,
};
use serde_json::json;

/// How long one store write takes while the disk is made slow: far above
/// the 0.5 s histogram bucket, so where it lands is certain.
const SLOW_DISK: Duration = Duration::from_millis(800);

/// How long a metric may take to reach its expected value.
const SETTLE: Duration = Duration::from_secs(5);

const COMMITS: &str = "switchboard_store_commit_duration_seconds_count";
const COMMITS_UNDER_HALF_A_SECOND: &str =
    "switchboard_store_commit_duration_seconds_bucket{le=\"0.5\"}";
const COMMITS_ALL: &str = "switchboard_store_commit_duration_seconds_bucket{le=\"+Inf\"}";
const STORE_QUEUE: &str = "switchboard_store_queue_depth";

/// Every sample line of `/metrics` whose name is `family` (any labels).
async fn samples(broker: &Broker, family: &str) -> Vec<String> {
    let reply = request("GET", &broker.http("/metrics"), None, None).await;
    assert_eq!(reply.status, 200);
    reply
        .text
        .lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(str::to_owned)
        .collect()
}

/// The value of `series`, 0 when it is not there yet.
async fn value(broker: &Broker, series: &str) -> f64 {
    metric(broker, series).await.unwrap_or(0.0)
}

/// Waits until the store has handled everything sent to it so far: the
/// readiness probe pings the store, which answers in order.
async fn store_settled(broker: &Broker) {
    let reply = request("GET", &broker.http("/readyz"), None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[actix_rt::test]
async fn build_info_names_the_version_and_the_commit() {
    let broker = Broker::with(Options::default().env("LIMITS__MAX_CONNECTIONS", "1234"));
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8(out.stdout).unwrap().trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(
        samples(&broker, "switchboard_build_info").await,
        [format!(
            "switchboard_build_info{{commit=\"{commit}\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )]
    );
    assert_eq!(
        samples(&broker, "switchboard_max_connections").await,
        ["switchboard_max_connections 1234"]
    );
}

#[actix_rt::test]
async fn http_requests_are_counted_by_route_pattern_and_status() {
    let broker = Broker::start();
    assert_eq!(
        admin("GET", &broker.http("/api/admin/overview"), None)
            .await
            .status,
        200
    );
    for id in ["987654", "123456"] {
        let path = format!("/api/admin/connections/{id}");
        assert_eq!(admin("GET", &broker.http(&path), None).await.status, 404);
    }
    assert_eq!(
        request("GET", &broker.http("/no/such/path-31337"), None, None)
            .await
            .status,
        404
    );
    let room = create_by_api(&broker, "lobby", false).await;
    assert!(!room.is_empty());

    let requests = samples(&broker, "switchboard_http_requests_total").await;
    for want in [
        "switchboard_http_requests_total{method=\"GET\",route=\"/api/admin/overview\",status=\"200\"} 1",
        "switchboard_http_requests_total{method=\"GET\",route=\"/api/admin/connections/{id}\",status=\"404\"} 2",
        "switchboard_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "switchboard_http_requests_total{method=\"POST\",route=\"/api/rooms\",status=\"201\"} 1",
    ] {
        assert!(
            requests.iter().any(|line| line == want),
            "missing {want} in {requests:#?}"
        );
    }
    // Bounded labels: no raw path, no id, ever becomes a label value.
    for line in &requests {
        for raw in ["987654", "123456", "31337", &room] {
            assert!(!line.contains(raw), "raw path in {line}");
        }
    }
    assert_eq!(
        metric(
            &broker,
            "switchboard_http_request_duration_seconds_count{method=\"GET\",route=\"/api/admin/connections/{id}\"}"
        )
        .await,
        Some(2.0)
    );
}

#[actix_rt::test]
async fn store_commits_are_timed_and_a_waiting_write_shows_in_the_queue() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    store_settled(&broker).await;
    let commits = value(&broker, COMMITS).await;
    let fast = value(&broker, COMMITS_UNDER_HALF_A_SECOND).await;
    assert_eq!(metric(&broker, STORE_QUEUE).await, Some(0.0));

    slow_store_writes(&broker, SLOW_DISK).await;
    alice.send(&message("alice", "first").to_string()).await;
    // The chat's commit holds the store's thread; a room created through
    // the API meanwhile waits in the store's queue.
    let rooms_api = broker.http("/api/rooms");
    let lobby = json!({"name": "lobby"});
    let create = admin("POST", &rooms_api, Some(&lobby));
    let watch = async {
        wait_for_metric(&broker, STORE_QUEUE, 1.0, SETTLE).await;
    };
    let (created, ()) = futures_util::future::join(create, watch).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(alice.recv_json().await, message("alice", "first"));
    slow_store_writes(&broker, Duration::ZERO).await;
    wait_for_metric(&broker, STORE_QUEUE, 0.0, SETTLE).await;

    // Both writes were observed, both above half a second.
    assert_eq!(value(&broker, COMMITS).await, commits + 2.0);
    assert_eq!(value(&broker, COMMITS_ALL).await, commits + 2.0);
    assert_eq!(value(&broker, COMMITS_UNDER_HALF_A_SECOND).await, fast);
    assert!(samples(&broker, "switchboard_store_errors_total")
        .await
        .is_empty());
}

#[actix_rt::test]
async fn a_failed_store_write_is_counted_by_kind() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    fail_store_writes(&broker, true).await;
    alice.send(&message("alice", "lost").to_string()).await;
    let refused = alice.recv_json().await;
    assert_eq!(refused["event_type"], "system", "{refused}");
    fail_store_writes(&broker, false).await;
    assert_eq!(
        samples(&broker, "switchboard_store_errors_total").await,
        ["switchboard_store_errors_total{kind=\"injected\"} 1"]
    );
}

#[actix_rt::test]
async fn a_broadcast_is_timed_and_the_recipients_queue_sampled() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    let mut bob = join(&broker, "bob", None).await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "user_join", "username": "bob"})
    );
    let broadcasts = "switchboard_broadcast_duration_seconds_count{protocol=\"chat\"}";
    let flushes = "switchboard_outbound_queue_depth_count{protocol=\"chat\"}";
    // Each join was broadcast once (the room observes after its members
    // were offered the frame, so the sample may trail the frame a little).
    wait_for_metric(&broker, broadcasts, 2.0, SETTLE).await;
    let flushed = value(&broker, flushes).await;

    alice.send(&message("alice", "hello").to_string()).await;
    assert_eq!(alice.recv_json().await, message("alice", "hello"));
    assert_eq!(bob.recv_json().await, message("alice", "hello"));
    wait_for_metric(&broker, broadcasts, 3.0, SETTLE).await;
    // Each recipient flushed its queue with the frame in it: two samples,
    // none of them empty.
    let deadline = std::time::Instant::now() + SETTLE;
    while value(&broker, flushes).await < flushed + 2.0 {
        assert!(std::time::Instant::now() < deadline, "no flush sampled");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let depth_sum = value(
        &broker,
        "switchboard_outbound_queue_depth_sum{protocol=\"chat\"}",
    )
    .await;
    assert!(
        depth_sum >= value(&broker, flushes).await,
        "an empty flush was sampled"
    );
}

#[actix_rt::test]
async fn an_oversized_message_counts_a_1009_close_and_a_too_big_error() {
    let broker = Broker::with(Options::default().env("LIMITS__MAX_FRAME_SIZE", "1KiB"));
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    w.send(&"x".repeat(2048)).await;
    assert_eq!(w.recv_close().await.code, 1009);
    assert_eq!(
        samples(&broker, "switchboard_connections_closed_total").await,
        ["switchboard_connections_closed_total{code=\"1009\",protocol=\"sessions\"} 1"]
    );
    let errors = samples(&broker, "switchboard_protocol_errors_total").await;
    let moved: Vec<_> = errors.iter().filter(|l| !l.ends_with(" 0")).collect();
    assert_eq!(
        moved,
        ["switchboard_protocol_errors_total{kind=\"too_big\",protocol=\"sessions\"} 1"]
    );
    // Every kind of every protocol is there from the start, at zero.
    assert!(errors.contains(
        &"switchboard_protocol_errors_total{kind=\"malformed\",protocol=\"chat\"} 0".to_owned()
    ));
}

#[actix_rt::test]
async fn text_that_is_not_utf8_counts_a_1007_close_and_a_not_utf8_error() {
    let broker = Broker::start();
    let mut raw = RawWs::connect(&broker.addr, "/sessions");
    assert_eq!(raw.next_frame(), (0x1, b"reset\n1\n1.0.0".to_vec()));
    raw.send_frame(0x1, &[b'o', b'k', 0xff, 0xfe]);
    assert_eq!(raw.read_until_close().1, 1007);
    wait_for_metric(
        &broker,
        "switchboard_connections_closed_total{code=\"1007\",protocol=\"sessions\"}",
        1.0,
        SETTLE,
    )
    .await;
    assert_eq!(
        metric(
            &broker,
            "switchboard_protocol_errors_total{kind=\"not_utf8\",protocol=\"sessions\"}"
        )
        .await,
        Some(1.0)
    );
}

#[actix_rt::test]
async fn bytes_in_and_out_are_counted_per_protocol() {
    let broker = Broker::start();
    let received = "switchboard_received_bytes_total{protocol=\"sessions\"}";
    let sent = "switchboard_sent_bytes_total{protocol=\"sessions\"}";
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    let reset = w.recv().await;
    assert_eq!(reset, "reset\n1\n1.0.0");
    let (in_before, out_before) = (value(&broker, received).await, value(&broker, sent).await);
    assert!(out_before >= reset.len() as f64, "the reset was counted");

    let command = "no-such-command ".repeat(40);
    w.send(&command).await;
    let answer = w.recv().await;
    assert!(answer.starts_with("error\n"), "{answer}");
    assert_eq!(
        value(&broker, received).await,
        in_before + command.len() as f64
    );
    assert_eq!(value(&broker, sent).await, out_before + answer.len() as f64);
    assert_eq!(
        value(
            &broker,
            "switchboard_received_bytes_total{protocol=\"chat\"}"
        )
        .await,
        0.0
    );
}

/// The `switchboard_protocol_errors_total` series that moved, in label order.
async fn moved_errors(broker: &Broker) -> Vec<String> {
    samples(broker, "switchboard_protocol_errors_total")
        .await
        .into_iter()
        .filter(|line| !line.ends_with(" 0"))
        .collect()
}

/// Each protocol counts what it refuses by kind: a message it cannot read
/// (`malformed`), a type it does not know (`unknown_type`), and a request
/// the client has no right to make (`forbidden`), while the connection
/// stays open.
#[actix_rt::test]
async fn refused_messages_are_counted_by_protocol_and_kind() {
    let broker = Broker::with(common::rooms::options());

    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(watcher.recv().await, "reset\n1\n1.0.0");
    watcher.send("foo").await;
    assert_eq!(watcher.recv().await, "error\n1\nunknown command `foo`");

    let mut chat = join(&broker, "alice", None).await;
    chat.send("{not json").await;
    assert_eq!(
        chat.recv_json().await,
        json!({"event_type": "system", "severity": "error", "message": "Invalid message format"})
    );
    chat.send(&message("mallory", "hi").to_string()).await;

    let mut alice = common::rooms::RoomsUser::connect(&broker, common::rooms::ALICE).await;
    let mut bob = common::rooms::RoomsUser::connect(&broker, common::rooms::BOB).await;
    let club = alice.create("club", true).await;
    bob.send(json!({"type": "nope"})).await;
    bob.expect_error("unknown type `nope`").await;
    bob.send(json!({"type": "enter"})).await;
    bob.expect_error("invalid `enter` command: missing field `room_id`")
        .await;
    bob.send(json!({"type": "enter", "room_id": club})).await;
    bob.expect_error("the room is closed: you need an invite")
        .await;

    let deadline = std::time::Instant::now() + SETTLE;
    let want = [
        "switchboard_protocol_errors_total{kind=\"forbidden\",protocol=\"chat\"} 1",
        "switchboard_protocol_errors_total{kind=\"forbidden\",protocol=\"rooms\"} 1",
        "switchboard_protocol_errors_total{kind=\"malformed\",protocol=\"chat\"} 1",
        "switchboard_protocol_errors_total{kind=\"malformed\",protocol=\"rooms\"} 1",
        "switchboard_protocol_errors_total{kind=\"unknown_type\",protocol=\"rooms\"} 1",
        "switchboard_protocol_errors_total{kind=\"unknown_type\",protocol=\"sessions\"} 1",
    ];
    loop {
        let mut moved = moved_errors(&broker).await;
        moved.sort();
        if moved == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{moved:#?}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
