//! Supervision end to end: a fault injected into one chat room actor (the
//! test-only `fault-injection` feature) restarts it under its supervisor.
//! The restart is counted, the room keeps its members and history, and
//! every other room and connection carries on untouched.

mod common;

use std::time::Duration;

use common::{admin, metric, request, Broker, WsClient};
use serde_json::{json, Value};

const RESTARTS: &str = "switchboard_actor_restarts_total{actor=\"chat_room\"}";
const CHAT_CONNECTIONS: &str = "switchboard_connections{protocol=\"chat\"}";

/// Joins `room` as `name` and reads up to its own `user_join`.
async fn join(broker: &Broker, name: &str, room: &str) -> WsClient {
    let mut ws = WsClient::connect(&broker.ws_url(&format!("/chat/ws/{room}"))).await;
    ws.send(&json!({"event_type": "connection_request", "username": name}).to_string())
        .await;
    let own_join = json!({"event_type": "user_join", "username": name});
    while ws.recv_json().await != own_join {}
    ws
}

fn message(name: &str, text: &str) -> Value {
    json!({"event_type": "message", "username": name, "message": text})
}

/// `name` says `text` through `from`; it and every one of `others` get it.
async fn say(from: &mut WsClient, name: &str, text: &str, others: &mut [&mut WsClient]) {
    from.send(&message(name, text).to_string()).await;
    assert_eq!(from.recv_json().await, message(name, text));
    for ws in others.iter_mut() {
        assert_eq!(ws.recv_json().await, message(name, text));
    }
}

#[actix_rt::test]
async fn a_failed_room_restarts_and_nothing_else_notices() {
    let broker = Broker::start();
    let mut carol = join(&broker, "carol", "beta").await;
    let mut alice = join(&broker, "alice", "alpha").await;
    assert_eq!(carol.recv_json().await["event_type"], "room_create");
    let mut bob = join(&broker, "bob", "alpha").await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "user_join", "username": "bob"})
    );
    say(&mut alice, "alice", "before", &mut [&mut bob]).await;
    assert_eq!(metric(&broker, RESTARTS).await, Some(0.0));

    let fault = admin("POST", &broker.http("/api/debug/fault/chat/alpha"), None).await;
    assert_eq!(fault.status, 202);
    common::wait_for_metric(&broker, RESTARTS, 1.0, Duration::from_secs(10)).await;

    // The restarted room still has its members and its history...
    say(&mut bob, "bob", "after", &mut [&mut alice]).await;
    assert_eq!(
        common::chat_history(&broker, "alpha").await,
        ["before", "after"]
    );
    // ...the other room and every connection never noticed.
    say(&mut carol, "carol", "unaffected", &mut []).await;
    alice.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(metric(&broker, CHAT_CONNECTIONS).await, Some(3.0));
    assert_eq!(metric(&broker, RESTARTS).await, Some(1.0));

    // An unknown room is a 404, and the route needs the admin key.
    let unknown = admin("POST", &broker.http("/api/debug/fault/chat/nowhere"), None).await;
    assert_eq!(unknown.status, 404);
    let keyless = request(
        "POST",
        &broker.http("/api/debug/fault/chat/alpha"),
        None,
        None,
    )
    .await;
    assert_eq!(keyless.status, 401);
}
