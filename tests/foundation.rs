//! The foundation, end to end: CLI and config, health and metrics, the
//! shared connection limits, restarts and graceful shutdown — each with the
//! real binary over loopback.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{metric, request, wait_for_metric, Broker, Options, RawWs, WsClient};

/// How long a test waits for a gauge to settle.
const WAIT: Duration = Duration::from_secs(5);

fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn check_config(path: &std::path::Path) -> std::process::Output {
    switchboard()
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_shipped_file_and_names_a_misspelt_key() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/switchboard.toml");
    let out = switchboard()
        .args(["check-config", shipped])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("bind = \"0.0.0.0:8080\""), "{printed}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\noutbound_queu = 10\n").unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("outbound_queu"), "{err}");

    std::fs::write(&bad, "[sessions]\nttl = \"forever\"\n").unwrap();
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("ttl"));

    let out = switchboard()
        .args(["check-config", "/nonexistent/switchboard.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_applies_environment_overrides_and_hides_secrets() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/switchboard.toml");
    let out = switchboard()
        .args(["check-config", shipped])
        .env("SWITCHBOARD_SERVER__BIND", "127.0.0.1:9000")
        .env("SWITCHBOARD_LIMITS__WRITE_TIMEOUT", "250ms")
        .env("SWITCHBOARD_ADMIN__API_KEY", "super-secret-key-42")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("bind = \"127.0.0.1:9000\""), "{printed}");
    assert!(printed.contains("write_timeout = \"250ms\""), "{printed}");
    assert!(!printed.contains("super-secret-key-42"), "{printed}");

    let out = switchboard()
        .args(["check-config", shipped])
        .env("SWITCHBOARD_LIMITS__NOPE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("nope"));
}

#[actix_rt::test]
async fn health_readiness_and_metrics_answer() {
    let broker = Broker::start();
    let health = request("GET", &broker.http("/healthz"), None, None).await;
    assert_eq!(health.status, 200);
    let ready = request("GET", &broker.http("/readyz"), None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["status"], "ready");

    let _watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    let metrics = request("GET", &broker.http("/metrics"), None, None).await;
    assert_eq!(metrics.status, 200);
    for series in [
        common::SESSION_CONNECTIONS,
        "switchboard_connections_opened_total{protocol=\"sessions\"}",
        "switchboard_messages_in_total{protocol=\"sessions\"}",
        "switchboard_messages_out_total{protocol=\"sessions\"}",
        "switchboard_messages_dropped_total{protocol=\"sessions\",reason=\"slow\"}",
        "switchboard_listed_sessions",
        "switchboard_actor_restarts_total{actor=\"registry\"}",
    ] {
        assert!(metrics.text.contains(series), "missing {series}");
    }
    // Process series under their conventional names, not a prefixed copy.
    for series in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(
            metrics.text.lines().any(|line| line.starts_with(series)),
            "missing unprefixed {series}"
        );
    }
    wait_for_metric(&broker, common::SESSION_CONNECTIONS, 1.0, WAIT).await;
}

#[actix_rt::test]
async fn the_healthcheck_command_reports_the_broker_state() {
    let broker = Broker::start();
    let url = broker.http("/healthz");
    let ok =
        actix_rt::task::spawn_blocking(move || switchboard().args(["healthcheck", &url]).status())
            .await
            .unwrap()
            .unwrap();
    assert!(ok.success());
    drop(broker);
    let dead = actix_rt::task::spawn_blocking(|| {
        switchboard()
            .args(["healthcheck", "http://127.0.0.1:1/healthz"])
            .status()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!dead.success());
}

#[actix_rt::test]
async fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut broker = Broker::start();
    let mut a = WsClient::connect(&broker.ws_url("/sessions")).await;
    let mut b = WsClient::connect(&broker.ws_url("/sessions")).await;
    for w in [&mut a, &mut b] {
        assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    }
    broker.signal(libc::SIGTERM);
    for w in [&mut a, &mut b] {
        let closed = w.recv_close().await;
        assert_eq!(closed.code, 1001);
        assert_eq!(closed.reason, "server shutting down");
    }
    let status = broker.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", broker.log());
    assert!(broker.log().contains("store flushed"));
}

#[actix_rt::test]
async fn sigint_shuts_down_the_same_way() {
    let mut broker = Broker::start();
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    broker.signal(libc::SIGINT);
    assert_eq!(w.recv_close().await.code, 1001);
    assert_eq!(broker.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[actix_rt::test]
async fn a_restart_on_the_same_store_starts_a_new_epoch() {
    let broker = Broker::start();
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    drop(w);
    let data = broker.stop();

    let broker = Broker::with(Options::default().data(&data.path));
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n2\n1.0.0");
    let resync = common::admin(
        "PUT",
        &broker.http("/api/sessions"),
        Some(&serde_json::json!([])),
    )
    .await;
    assert_eq!(resync.json["epoch"], 3);
    assert_eq!(w.recv().await, "reset\n3\n1.0.0");
    drop(w);
    let data = broker.stop();

    // The resync's epoch was stored too.
    let broker = Broker::with(Options::default().data(&data.path));
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n4\n1.0.0");
}

#[actix_rt::test]
async fn a_message_over_the_frame_limit_closes_with_1009() {
    let broker = Broker::with(Options::default().env("LIMITS__MAX_FRAME_SIZE", "1KiB"));
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    w.send(&"x".repeat(1000)).await;
    assert!(
        w.recv().await.starts_with("error\n1\nunknown command"),
        "under the limit: served"
    );
    w.send(&"x".repeat(2048)).await;
    assert_eq!(w.recv_close().await.code, 1009);
}

#[actix_rt::test]
async fn a_fragmented_message_over_the_limit_closes_with_1009() {
    use awc::ws::Message;
    let broker = Broker::with(Options::default().env("LIMITS__MAX_FRAME_SIZE", "1KiB"));
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    // A small message in fragments is joined and served whole.
    w.send_message(Message::Continuation(actix_http::ws::Item::FirstText(
        "conn".into(),
    )))
    .await;
    w.send_message(Message::Continuation(actix_http::ws::Item::Continue(
        "ect\nu1\nal".into(),
    )))
    .await;
    w.send_message(Message::Continuation(actix_http::ws::Item::Last(
        "ice\n1.0.0".into(),
    )))
    .await;
    w.send("ping?").await;
    assert_eq!(
        w.recv().await,
        "error\n1\nunknown command `ping?`",
        "the joined `connect` got no reply"
    );
    // Many small fragments adding up past the limit.
    w.send_message(Message::Continuation(actix_http::ws::Item::FirstText(
        vec![b'x'; 600].into(),
    )))
    .await;
    w.send_message(Message::Continuation(actix_http::ws::Item::Last(
        vec![b'x'; 600].into(),
    )))
    .await;
    assert_eq!(w.recv_close().await.code, 1009);
}

#[actix_rt::test]
async fn a_client_over_its_rate_is_refused_then_closed_with_1008() {
    let broker = Broker::with(
        Options::default()
            .env("LIMITS__MESSAGES_PER_SECOND", "1")
            .env("LIMITS__BURST", "2"),
    );
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    // Sent back to back, so no token comes back in between.
    for _ in 0..5 {
        w.send("spam").await;
    }
    for _ in 0..2 {
        assert_eq!(w.recv().await, "error\n1\nunknown command `spam`");
    }
    for _ in 0..3 {
        assert_eq!(w.recv().await, "error\n1\nrate limit exceeded");
    }
    let closed = w.recv_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "rate limit exceeded")
    );
    assert!(
        metric(
            &broker,
            "switchboard_messages_dropped_total{protocol=\"sessions\",reason=\"rate\"}"
        )
        .await
        .unwrap()
            >= 3.0
    );
}

#[actix_rt::test]
async fn upgrades_over_the_connection_caps_get_503() {
    let broker = Broker::with(Options::default().env("LIMITS__MAX_CONNECTIONS_PER_IP", "2"));
    let url = broker.ws_url("/sessions");
    let _a = WsClient::connect(&url).await;
    let mut b = WsClient::connect(&url).await;
    assert_eq!(b.recv().await, "reset\n1\n1.0.0");
    match WsClient::try_connect(&url).await {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 503),
        Err(e) => panic!("expected 503, got {e}"),
        Ok(_) => panic!("a third connection from one address was admitted"),
    }
    assert_eq!(
        metric(
            &broker,
            "switchboard_connections_refused_total{protocol=\"sessions\"}"
        )
        .await,
        Some(1.0)
    );
    // A place frees up when a connection closes.
    b.send_message(awc::ws::Message::Close(None)).await;
    assert!(b.ended().await);
    for _ in 0..100 {
        if WsClient::try_connect(&url).await.is_ok() {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the freed place was never given back");
}

#[actix_rt::test]
async fn a_silent_client_is_closed_after_the_heartbeat_timeout() {
    let broker = Broker::with(
        Options::default()
            .env("LIMITS__HEARTBEAT_INTERVAL", "100ms")
            .env("LIMITS__HEARTBEAT_TIMEOUT", "400ms"),
    );
    let url = broker.ws_url("/sessions");
    let (_, mut raw) = awc::Client::new().ws(&url).connect().await.unwrap();
    use futures_util::StreamExt;
    let mut pings = 0;
    loop {
        let frame = actix_rt::time::timeout(Duration::from_secs(10), raw.next())
            .await
            .expect("no close within 10s")
            .expect("stream ended")
            .expect("protocol error");
        match frame {
            awc::ws::Frame::Ping(_) => pings += 1,
            awc::ws::Frame::Close(Some(reason)) => {
                assert_eq!(u16::from(reason.code), 1001);
                assert_eq!(reason.description.as_deref(), Some("heartbeat timeout"));
                break;
            }
            awc::ws::Frame::Text(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 1, "the server pings while it waits");
}

#[actix_rt::test]
async fn text_that_is_not_utf8_closes_with_1007() {
    let broker = Broker::start();
    let mut raw = RawWs::connect(&broker.addr, "/sessions");
    assert_eq!(raw.next_frame(), (0x1, b"reset\n1\n1.0.0".to_vec()));
    raw.send_frame(0x1, &[b'o', b'k', 0xff, 0xfe]);
    let (before, code) = raw.read_until_close();
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(code, 1007);

    // The same when the bad bytes arrive in fragments.
    use actix_http::ws::Item;
    use awc::ws::Message;
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    w.send_message(Message::Continuation(Item::FirstText(vec![b'a'].into())))
        .await;
    w.send_message(Message::Continuation(Item::Last(vec![0xc3].into())))
        .await;
    assert_eq!(w.recv_close().await.code, 1007);
}

#[actix_rt::test]
async fn a_continuation_without_a_first_fragment_closes_with_1002() {
    let broker = Broker::start();
    let mut raw = RawWs::connect(&broker.addr, "/sessions");
    assert_eq!(raw.next_frame(), (0x1, b"reset\n1\n1.0.0".to_vec()));
    raw.send_frame(0x0, b"stray");
    let (before, code) = raw.read_until_close();
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(code, 1002);
}

#[actix_rt::test]
async fn a_client_close_is_answered_and_the_connection_released() {
    let broker = Broker::start();
    let mut w = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    w.send_message(awc::ws::Message::Close(Some(
        awc::ws::CloseCode::Normal.into(),
    )))
    .await;
    assert_eq!(w.recv_close().await.code, 1000, "the close is echoed");
    assert!(w.ended().await);
    wait_for_metric(&broker, common::SESSION_CONNECTIONS, 0.0, WAIT).await;
}

#[actix_rt::test]
async fn http_errors_are_json_with_a_fitting_status() {
    let broker = Broker::start();
    let cases = [
        ("GET", "/nowhere", None, 404),
        ("POST", "/api/sessions/s1", None, 405),
        ("POST", "/api/sessions", None, 405),
        ("GET", "/api/sessions/missing", None, 404),
    ];
    for (method, path, key, status) in cases {
        let reply = request(method, &broker.http(path), key, None).await;
        assert_eq!(reply.status, status, "{method} {path}");
        assert!(
            reply.json["error"].is_string(),
            "{method} {path}: {}",
            reply.text
        );
    }
}

#[actix_rt::test]
async fn broken_and_oversized_json_bodies_are_refused() {
    let broker = Broker::start();
    let client = awc::Client::default();
    let url = broker.http("/api/sessions/s1");
    let send = |body: Vec<u8>| {
        client
            .put(&url)
            .insert_header(("Authorization", format!("Bearer {}", common::ADMIN_KEY)))
            .insert_header(("content-type", "application/json"))
            .send_body(body)
    };
    let mut resp = send(b"{\"session_name\": ".to_vec()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].is_string());

    let mut resp = send(vec![b' '; 5 * 1024 * 1024]).await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("larger"), "{body}");

    assert_eq!(
        metric(&broker, "switchboard_listed_sessions").await,
        Some(0.0),
        "nothing was listed"
    );
}

#[actix_rt::test]
async fn upgrades_over_the_total_cap_get_503_whatever_the_protocol() {
    let broker = Broker::with(Options::default().env("LIMITS__MAX_CONNECTIONS", "2"));
    let _a = WsClient::connect(&broker.ws_url("/sessions")).await;
    let _b = WsClient::connect(&broker.ws_url("/chat/ws")).await;
    for path in ["/sessions", "/chat/ws", "/concierge"] {
        match WsClient::try_connect(&broker.ws_url(path)).await {
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => {
                assert_eq!(s.as_u16(), 503, "{path}")
            }
            Err(e) => panic!("{path}: expected 503, got {e}"),
            Ok(_) => panic!("{path}: a third connection was admitted over the total cap"),
        }
    }
}
