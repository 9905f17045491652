//! `server.trusted_proxies`: behind a reverse proxy, the client address comes
//! from the proxy's `Forwarded` / `X-Forwarded-For`, read from the right,
//! and only when the TCP peer (here 127.0.0.1) is a trusted proxy. Checked
//! where an operator sees it: the admin API's connection list, the per-IP
//! connection cap (WebSocket upgrades and the console's feed), the chat
//! API's per-address rate limit, the log, and `check-config`.

mod common;

use std::process::Command;
use std::time::Duration;

use awc::error::WsClientError;
use awc::http::StatusCode;
use common::{admin, request_headers, Broker, Options};
use serde_json::Value;

/// How long the admin API may take to list a new connection.
const LISTED_WITHIN: Duration = Duration::from_secs(10);

/// A broker trusting `proxies` (a TOML list), with a per-IP cap of 2.
fn broker(proxies: &str) -> Broker {
    Broker::with(
        Options::default()
            .env("SERVER__TRUSTED_PROXIES", proxies)
            .env("LIMITS__MAX_CONNECTIONS_PER_IP", "2"),
    )
}

/// An open WebSocket whose upgrade carried `headers`.
type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Upgrades `path` with `headers` added; the error of a refused upgrade.
async fn upgrade(
    broker: &Broker,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, WsClientError> {
    let mut request = awc::Client::new().ws(broker.ws_url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Ok(request.connect().await?.1)
}

/// A session-list watcher whose upgrade carried `headers`; panics if refused.
async fn watcher(broker: &Broker, headers: &[(&str, &str)]) -> Socket {
    upgrade(broker, "/sessions", headers)
        .await
        .unwrap_or_else(|e| panic!("upgrade with {headers:?} refused: {e}"))
}

/// Asserts that the upgrade of `path` with `headers` answers 503 (a cap).
async fn assert_refused(broker: &Broker, path: &str, headers: &[(&str, &str)]) {
    match upgrade(broker, path, headers).await {
        Err(WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{headers:?}")
        }
        Err(e) => panic!("upgrade with {headers:?}: {e}"),
        Ok(_) => panic!("upgrade with {headers:?} was admitted"),
    }
}

/// The peers of the open session-list connections in id order, once there
/// are `count` of them.
async fn peers(broker: &Broker, count: usize) -> Vec<String> {
    let url = broker.http("/api/admin/connections?protocol=sessions");
    let deadline = std::time::Instant::now() + LISTED_WITHIN;
    loop {
        let reply = admin("GET", &url, None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let items = reply.json["items"].as_array().cloned().unwrap_or_default();
        if items.len() == count {
            return items
                .iter()
                .map(|item| match &item["peer"] {
                    Value::String(peer) => peer.clone(),
                    other => panic!("peer {other} of {item}"),
                })
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "want {count} connections, listed: {}",
            reply.text
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `peer` is the test's own TCP address, `127.0.0.1:<port>`.
fn is_loopback_peer(peer: &str) -> bool {
    peer.strip_prefix("127.0.0.1:")
        .is_some_and(|port| port.parse::<u16>().is_ok_and(|p| p != 0))
}

#[actix_rt::test]
async fn a_trusted_proxys_forwarded_address_is_the_peer_and_fills_its_per_ip_cap() {
    let broker = broker("[\"127.0.0.1/32\"]");
    let client = [("X-Forwarded-For", "203.0.113.7")];
    let _first = watcher(&broker, &client).await;
    let _second = watcher(&broker, &client).await;
    assert_eq!(peers(&broker, 2).await, ["203.0.113.7", "203.0.113.7"]);

    // 203.0.113.7 has its 2; the proxy's own address and another client
    // behind it are still admitted.
    assert_refused(&broker, "/sessions", &client).await;
    assert_refused(&broker, "/api/admin/live", &client).await;
    let _other = watcher(&broker, &[("X-Forwarded-For", "198.51.100.20")]).await;
    let _direct = watcher(&broker, &[]).await;
    let listed = peers(&broker, 4).await;
    assert_eq!(listed[..3], ["203.0.113.7", "203.0.113.7", "198.51.100.20"]);
    assert!(is_loopback_peer(&listed[3]), "{listed:?}");

    let log = broker.log();
    assert!(
        log.contains("sessions upgrade from Some(203.0.113.7:0) refused"),
        "{log}"
    );
}

#[actix_rt::test]
async fn an_untrusted_peers_forwarding_headers_are_ignored() {
    // A proxy list without 127.0.0.1, then none at all (the default).
    for proxies in ["[\"10.0.0.0/8\", \"::1\"]", "[]"] {
        let broker = broker(proxies);
        let _first = watcher(&broker, &[("X-Forwarded-For", "203.0.113.7")]).await;
        let _second = watcher(&broker, &[("Forwarded", "for=198.51.100.9")]).await;
        let listed = peers(&broker, 2).await;
        assert!(listed.iter().all(|p| is_loopback_peer(p)), "{listed:?}");
        // Both counted against 127.0.0.1, whatever the header claims.
        assert_refused(&broker, "/sessions", &[("X-Forwarded-For", "192.0.2.1")]).await;
    }
}

#[actix_rt::test]
async fn forged_hops_left_of_the_rightmost_untrusted_one_are_ignored() {
    let broker = broker("[\"127.0.0.1/32\", \"10.0.0.0/8\"]");
    let mut open = Vec::new();
    for headers in [
        // The client prepended a fake; the proxy appended the real address.
        [("X-Forwarded-For", "1.2.3.4, 203.0.113.7")],
        // A second trusted proxy (10.1.2.3) in front of the one connecting.
        [("X-Forwarded-For", "198.51.100.9, 10.1.2.3")],
        [("Forwarded", "for=\"[2001:db8::1]:4711\";proto=https")],
        [("X-Forwarded-For", "not an address")],
    ] {
        open.push(watcher(&broker, &headers).await);
    }
    let listed = peers(&broker, 4).await;
    assert_eq!(
        listed[..3],
        ["203.0.113.7", "198.51.100.9", "[2001:db8::1]:4711"]
    );
    assert!(is_loopback_peer(&listed[3]), "{listed:?}");
}

#[actix_rt::test]
async fn the_chat_apis_rate_limit_is_per_forwarded_address() {
    let limited = |proxies: &str| {
        Broker::with(
            Options::default()
                .env("SERVER__TRUSTED_PROXIES", proxies)
                .env("CHAT__HTTP_REQUESTS_PER_SECOND", "1")
                .env("CHAT__HTTP_BURST", "1"),
        )
    };
    let statuses = |broker: Broker| async move {
        let url = broker.http("/chat/rooms");
        let mut got = Vec::new();
        for client in ["203.0.113.7", "203.0.113.7", "198.51.100.20"] {
            let (status, _) = request_headers("GET", &url, &[("X-Forwarded-For", client)]).await;
            got.push(status);
        }
        got
    };
    assert_eq!(statuses(limited("[\"127.0.0.1\"]")).await, [200, 429, 200]);
    assert_eq!(statuses(limited("[\"10.0.0.0/8\"]")).await, [200, 429, 429]);
}

#[test]
fn a_bad_range_fails_check_config_and_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("key `server.trusted_proxies`"), "{err}");
    assert!(err.contains("`10.0.0.0/33`"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env("SWITCHBOARD_SERVER__BIND", "127.0.0.1:0")
        .env(
            "SWITCHBOARD_SERVER__TRUSTED_PROXIES",
            "[\"proxy.internal\"]",
        )
        .env("SWITCHBOARD_STORAGE__PATH", dir.path().join("s.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("key `server.trusted_proxies`"), "{err}");
    assert!(
        err.contains("`proxy.internal` is not an IP address or a CIDR range"),
        "{err}"
    );
}
