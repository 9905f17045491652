//! Back-pressure, end to end: a watcher whose process really stops reading
//! its socket (tiny receive buffer, zero window) while the session list is
//! flooded. The broker must remove it, count it, keep serving everyone else
//! in order, and free its socket within `limits.write_timeout`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{admin, metric, wait_for_metric, Broker, Options, WsClient};
use serde_json::json;
use socket2::{Domain, Socket, Type};

/// Opens a WebSocket to `/sessions` with a 4 KiB receive buffer, reads the
/// handshake answer, and returns the socket, which the caller never reads.
fn stalled_watcher(addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    write!(
        stream,
        "GET /sessions HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A session whose name is 16 KiB, so each `update` is a big frame.
fn name(i: usize) -> String {
    format!("{i:05}-{}", "x".repeat(16 * 1024))
}

/// Lists the session `flood` and returns its host API URL.
async fn create_flood_session(broker: &Broker) -> String {
    let url = broker.http("/api/sessions/flood");
    let created = admin(
        "PUT",
        &url,
        Some(&json!({
            "session_name": name(0), "active_users": 0, "joined_users": 0,
            "host_username": "h", "host_registration_date": "2020-01-01T00:00:00Z",
            "host_is_patron": false, "host_is_mentor": false,
            "session_begin_time": "2025-01-01T00:00:00Z",
        })),
    )
    .await;
    assert_eq!(created.status, 201);
    url
}

/// Renames the session `updates` times: `updates` × 16 KiB broadcast.
async fn flood(url: &str, updates: usize) {
    for i in 1..=updates {
        let body = json!({"session_name": name(i), "active_users": i});
        assert_eq!(admin("PATCH", url, Some(&body)).await.status, 200);
    }
}

/// A broker with small mailboxes listing the session `flood`, one watcher
/// that reads everything (past its snapshot) and one that never reads.
struct Scene {
    broker: Broker,
    url: String,
    healthy: WsClient,
    stalled: TcpStream,
}

async fn scene(options: Options) -> Scene {
    let broker = Broker::with(options.env("LIMITS__OUTBOUND_QUEUE", "8"));
    let url = create_flood_session(&broker).await;
    let mut healthy = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(healthy.recv().await, "reset\n1\n1.0.0");
    assert!(healthy.recv().await.starts_with("add\n1\nflood\n"));
    let stalled = stalled_watcher(&broker.addr);
    wait_for_metric(
        &broker,
        common::SESSION_CONNECTIONS,
        2.0,
        Duration::from_secs(10),
    )
    .await;
    Scene {
        broker,
        url,
        healthy,
        stalled,
    }
}

#[actix_rt::test]
async fn a_watcher_that_stops_reading_is_removed_and_its_socket_freed() {
    // Long enough that the fan-out notices the full mailbox before the kernel
    // gives up on the socket, even on a loaded machine.
    let write_timeout = Duration::from_secs(5);
    let Scene {
        broker,
        url,
        mut healthy,
        stalled,
    } = scene(Options::default().env("LIMITS__WRITE_TIMEOUT", "5s")).await;

    // 8 MiB of updates: far more than the socket buffers and the mailbox hold.
    let updates = 500;
    let reader = actix_rt::spawn(async move {
        for i in 1..=updates {
            let frame = healthy.recv().await;
            assert_eq!(
                frame,
                format!("update\n1\nflood\n{}\n{i}\n0", name(i)),
                "update {i}"
            );
        }
        healthy
    });
    for i in 1..=updates {
        let reply = admin(
            "PATCH",
            &url,
            Some(&json!({"session_name": name(i), "active_users": i})),
        )
        .await;
        assert_eq!(reply.status, 200);
    }
    let mut healthy = reader
        .await
        .expect("the healthy watcher got every update in order");

    // The stalled watcher was removed as a slow consumer and counted...
    wait_for_metric(
        &broker,
        "switchboard_slow_consumers_total{protocol=\"sessions\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    let slow = metric(
        &broker,
        "switchboard_messages_dropped_total{protocol=\"sessions\",reason=\"slow\"}",
    )
    .await;
    assert!(slow >= Some(1.0), "{slow:?}");
    // ...and the kernel deadline aborted its socket although its actor is frozen.
    wait_for_metric(
        &broker,
        common::SESSION_CONNECTIONS,
        1.0,
        write_timeout + Duration::from_secs(10),
    )
    .await;
    drop(stalled);

    // The broker still serves the healthy watcher.
    let reply = admin("PATCH", &url, Some(&json!({"joined_users": 7}))).await;
    assert_eq!(reply.status, 200);
    assert!(healthy.recv().await.ends_with(&format!("\n{updates}\n7")));
}

#[actix_rt::test]
async fn shutdown_is_not_held_up_by_a_client_that_stopped_reading() {
    // The kernel deadline is far away: only the shutdown deadline can end this.
    let Scene {
        mut broker,
        url,
        mut healthy,
        stalled: _stalled,
    } = scene(
        Options::default()
            .env("LIMITS__WRITE_TIMEOUT", "10m")
            .env("SERVER__SHUTDOWN_TIMEOUT", "1s"),
    )
    .await;
    let reader = actix_rt::spawn(async move {
        loop {
            match healthy.next_frame().await {
                awc::ws::Frame::Close(reason) => return reason,
                _ => continue,
            }
        }
    });
    flood(&url, 300).await;

    broker.signal(libc::SIGTERM);
    let reason = reader.await.unwrap().expect("a close reason");
    assert_eq!(u16::from(reason.code), 1001);
    let status = broker.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", broker.log());
    assert!(
        broker.log().contains("still open at the shutdown deadline"),
        "{}",
        broker.log()
    );
}
