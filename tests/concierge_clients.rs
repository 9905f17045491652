//! The concierge as the reference's own clients use it (PROTOCOLS.md §1).
//!
//! Real services lean on behaviours no document spelled out at first: a
//! service owner never hears its own SERVICE messages back (the reference's
//! chat service re-broadcasts everything it receives; its physics service
//! ends its receive loop at its own first message), and a broadcast caused
//! by a request reaches the requester before the request's sequenced reply.
//! These tests play those clients' habits, frame by frame.

mod common;

use std::time::Duration;

use common::concierge::{identify, identify_all, service, Peer};
use common::{metric, wait_for_metric, Broker, Options};
use serde_json::{json, Value};

/// The MESSAGE a recipient gets from `from` through `service`.
fn through_service(from: &Peer, service_name: &str, owner: &Peer, data: Value) -> Value {
    let mut origin = from.info();
    origin["service"] = service(service_name, owner, &[]);
    json!({
        "type": "MESSAGE",
        "origin": origin,
        "target": {"type": "SERVICE", "service": service_name},
        "data": data,
    })
}

/// `owner` creates `name` and subscribes to it itself, as the reference's
/// example services do; `viewers` subscribe too. Everyone's setup frames
/// are read.
async fn service_with_viewers(owner: &mut Peer, viewers: &mut [Peer], name: &str) {
    owner
        .send(json!({"type": "SERVICE_CREATE", "service": name}))
        .await;
    for viewer in viewers.iter_mut() {
        assert_eq!(viewer.ws.recv_json().await["type"], "SERVICE_CREATE_RESULT");
    }
    // The broadcast and the sequenced result, in either order here (the
    // order has its own test below).
    let created = service(name, owner, &[]);
    let mut got = [owner.ws.recv_json().await, owner.ws.recv_json().await];
    got.sort_by_key(|frame| frame.get("seq").is_some());
    assert_eq!(
        got,
        [
            json!({"type": "SERVICE_CREATE_RESULT", "successful": true, "service": created}),
            json!({"seq": 0, "type": "SERVICE_CREATE_RESULT", "successful": true, "service": created}),
        ]
    );
    let mut subscribed: Vec<Value> = Vec::new();
    owner
        .send(json!({"type": "SELF_SUBSCRIBE", "service": name}))
        .await;
    assert_eq!(owner.ws.recv_json().await["type"], "SELF_SUBSCRIBE_RESULT");
    assert_eq!(
        owner.ws.recv_json().await["type"],
        "SERVICE_CLIENT_SUBSCRIBED"
    );
    subscribed.push(json!(owner.uuid));
    for i in 0..viewers.len() {
        let viewer = &mut viewers[i];
        viewer
            .send(json!({"type": "SELF_SUBSCRIBE", "service": name}))
            .await;
        assert_eq!(viewer.ws.recv_json().await["type"], "SELF_SUBSCRIBE_RESULT");
        // Every subscriber so far hears of the new one, the owner included.
        for earlier in viewers[..=i].iter_mut().chain(std::iter::once(&mut *owner)) {
            let heard = earlier.ws.recv_json().await;
            assert_eq!(heard["type"], "SERVICE_CLIENT_SUBSCRIBED", "{heard}");
        }
    }
}

#[actix_rt::test]
async fn a_service_that_rebroadcasts_everything_it_receives_does_not_loop() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["chatsvc", "ann", "ben"]).await;
    let (owner, viewers) = peers.split_first_mut().unwrap();
    service_with_viewers(owner, viewers, "chat").await;

    // The reference's chat service: whatever reaches it goes back out to the
    // whole service. Three lines from each viewer; each viewer sees each
    // line exactly once, and the owner never hears itself, so nothing loops.
    let target = json!({"type": "SERVICE", "service": "chat"});
    for round in 0..3 {
        for from in 0..viewers.len() {
            let viewer = &mut viewers[from];
            let line = format!("{} says {round}", viewer.name);
            viewer
                .send(json!({"type": "MESSAGE", "target": target, "data": line}))
                .await;
            let ok = viewer.ws.recv_json().await;
            assert_eq!(ok["type"], "OK", "{ok}");
            let heard = owner.ws.recv_json().await;
            assert_eq!(heard, through_service(viewer, "chat", owner, json!(line)));
            owner
                .send(json!({"type": "MESSAGE", "target": target, "data": line}))
                .await;
            assert_eq!(owner.ws.recv_json().await["type"], "OK");
            for viewer in viewers.iter_mut() {
                viewer
                    .expect(through_service(owner, "chat", owner, json!(line)))
                    .await;
            }
        }
    }
    for viewer in viewers.iter_mut() {
        viewer.silent().await;
    }
    owner.silent().await;
}

#[actix_rt::test]
async fn a_service_that_stops_at_its_own_message_still_hears_every_viewer() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["physics", "viewer"]).await;
    let (owner, viewers) = peers.split_first_mut().unwrap();
    service_with_viewers(owner, viewers, "sim").await;
    let viewer = &mut viewers[0];
    let target = json!({"type": "SERVICE", "service": "sim"});

    // The reference's physics service broadcasts positions and ends its
    // receive loop at the first MESSAGE whose origin is itself.
    for tick in 0..3 {
        owner
            .send(json!({"type": "MESSAGE", "target": target, "data": {"positions": tick}}))
            .await;
        owner.expect(json!({"seq": 2 + tick, "type": "OK"})).await;
        viewer
            .expect(through_service(
                owner,
                "sim",
                owner,
                json!({"positions": tick}),
            ))
            .await;
    }
    for request in ["FETCH_ENTITIES", "SPAWN_ENTITY"] {
        viewer
            .send(json!({"type": "MESSAGE", "target": target, "data": {"type": request}}))
            .await;
        assert_eq!(viewer.ws.recv_json().await["type"], "OK");
        let heard = owner.ws.recv_json().await;
        assert_eq!(
            heard["origin"]["name"], "viewer",
            "the owner heard itself: {heard}"
        );
        assert_eq!(heard["data"], json!({"type": request}));
    }
    owner.silent().await;
}

#[actix_rt::test]
async fn service_create_and_delete_reach_the_creator_before_its_reply() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["maker", "watcher"]).await;
    let [maker, watcher] = &mut peers[..] else {
        unreachable!()
    };
    let created = service("board", maker, &[]);

    maker
        .send(json!({"type": "SERVICE_CREATE", "service": "board"}))
        .await;
    maker
        .expect(json!({"type": "SERVICE_CREATE_RESULT", "successful": true, "service": created}))
        .await;
    maker
        .expect(json!({"seq": 0, "type": "SERVICE_CREATE_RESULT", "successful": true, "service": created}))
        .await;
    watcher
        .expect(json!({"type": "SERVICE_CREATE_RESULT", "successful": true, "service": created}))
        .await;

    maker
        .send(json!({"type": "SERVICE_DELETE", "service": "board"}))
        .await;
    maker
        .expect(json!({"type": "SERVICE_DELETE_RESULT", "service": created}))
        .await;
    maker
        .expect(json!({"seq": 1, "type": "SERVICE_DELETE_RESULT", "service": created}))
        .await;
    watcher
        .expect(json!({"type": "SERVICE_DELETE_RESULT", "service": created}))
        .await;
    maker.silent().await;
    watcher.silent().await;
}

#[actix_rt::test]
async fn a_message_that_reaches_its_sender_arrives_before_the_ok() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["self", "other"]).await;
    let [me, other] = &mut peers[..] else {
        unreachable!()
    };
    let targets = [
        json!({"type": "ALL"}),
        json!({"type": "NAME", "name": "self"}),
        json!({"type": "UUID", "uuid": me.uuid}),
    ];
    for (seq, target) in targets.into_iter().enumerate() {
        let data = json!({"n": seq});
        me.send(json!({"type": "MESSAGE", "target": target, "data": data}))
            .await;
        let mut origin = me.info();
        origin["service"] = Value::Null;
        let message = json!({"type": "MESSAGE", "origin": origin, "target": target, "data": data});
        me.expect(message.clone()).await;
        me.expect(json!({"seq": seq, "type": "OK"})).await;
        if target["type"] == "ALL" {
            other.expect(message).await;
        }
    }
    other.silent().await;
}

#[actix_rt::test]
async fn direct_messages_to_a_client_that_stopped_reading_follow_the_slow_consumer_policy() {
    let broker = Broker::with(
        Options::default()
            .env("LIMITS__OUTBOUND_QUEUE", "8")
            .env("LIMITS__SLOW_CONSUMER_DROPS", "4")
            .env("LIMITS__MESSAGES_PER_SECOND", "100000")
            .env("LIMITS__BURST", "100000"),
    );
    let mut sender = identify(&broker, "sender").await;
    let mut stalled = common::stalled_socket(&broker.addr, "/concierge");
    common::send_raw_text(
        &mut stalled,
        r#"{"type":"IDENTIFY","name":"stalled","version":"0.2.0"}"#,
    );
    let joined = sender.ws.recv_json().await;
    assert_eq!(joined["type"], "CLIENT_JOINED", "{joined}");

    // Its socket and then its queue fill; after four drops in a row it is
    // removed like any slow consumer, and the sender is told it is gone.
    let data = "x".repeat(16 * 1024);
    let target = json!({"type": "NAME", "name": "stalled"});
    let mut replies = Vec::new();
    for seq in 0..4000u64 {
        sender
            .send(json!({"type": "MESSAGE", "target": target, "data": data}))
            .await;
        let reply = sender.ws.recv_json().await;
        assert_eq!(reply["seq"], seq, "{reply}");
        let kind = reply["type"].as_str().unwrap().to_owned();
        let done = kind == "INVALID_NAME";
        replies.push(kind);
        if done {
            break;
        }
    }
    assert_eq!(
        replies.last().map(String::as_str),
        Some("INVALID_NAME"),
        "the stalled client was never removed ({} OKs)",
        replies.len()
    );
    assert!(replies[..replies.len() - 1].iter().all(|r| r == "OK"));
    wait_for_metric(
        &broker,
        "switchboard_slow_consumers_total{protocol=\"concierge\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    let dropped = metric(
        &broker,
        "switchboard_messages_dropped_total{protocol=\"concierge\",reason=\"slow\"}",
    )
    .await;
    assert_eq!(dropped, Some(4.0), "each drop counted, then the removal");
    drop(stalled);
}

#[actix_rt::test]
async fn an_identity_too_large_to_rebroadcast_is_refused_with_4008() {
    let broker = Broker::with(Options::default().env("CONCIERGE__MAX_IDENTITY_BYTES", "64"));
    let mut watcher = identify(&broker, "watcher").await;
    // 64 bytes of nickname and tags together pass; 65 do not.
    let cases = [
        (json!("n".repeat(60)), json!(["abcd"]), None),
        (json!("n".repeat(65)), json!([]), Some(4008)),
        (
            json!(null),
            json!(["t".repeat(40), "u".repeat(25)]),
            Some(4008),
        ),
    ];
    let mut accepted = Vec::new();
    for (i, (nickname, tags, refused)) in cases.into_iter().enumerate() {
        let name = format!("big{i}");
        let mut ws = common::concierge::connect(&broker).await;
        let identify = json!({"type": "IDENTIFY", "name": name, "version": "0.2.0", "nickname": nickname, "tags": tags});
        ws.send(&identify.to_string()).await;
        match refused {
            Some(code) => {
                let closed = ws.recv_close().await;
                assert_eq!(closed.code, code);
                assert_eq!(
                    closed.reason,
                    "nickname and tags must hold at most 64 bytes together"
                );
            }
            None => {
                assert_eq!(ws.recv_json().await["type"], "HELLO");
                let joined = watcher.ws.recv_json().await;
                assert_eq!(joined["type"], "CLIENT_JOINED");
                assert_eq!(joined["client"]["name"], name);
                accepted.push(ws);
            }
        }
    }
    // Nobody heard of the refused clients; the gateway still works.
    watcher.silent().await;
    watcher.send(json!({"type": "CLIENT_FETCH_ALL"})).await;
    let all = watcher.ws.recv_json().await;
    let names: Vec<&str> = all["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big0", "watcher"], "{all}");
    assert_eq!(
        metric(
            &broker,
            "switchboard_limit_rejections_total{limit=\"max_identity_bytes\",protocol=\"concierge\"}"
        )
        .await,
        Some(2.0)
    );
}
