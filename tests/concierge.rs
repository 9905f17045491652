//! The concierge gateway end to end (PROTOCOLS.md §1): real clients on a
//! real broker, asserting exact frames and close codes.

mod common;

use std::time::Duration;

use awc::ws;
use common::concierge::{
    connect, identify, identify_all, identify_payload, service, Peer, VERSION,
};
use common::{metric, wait_for_metric, Broker, Closed, Options, WsClient};
use serde_json::{json, Value};

/// Sends `text` as the first payload and returns the close.
async fn first_payload_closes(broker: &Broker, text: &str) -> Closed {
    let mut ws = connect(broker).await;
    ws.send(text).await;
    ws.recv_close().await
}

#[actix_rt::test]
async fn identify_echoes_the_subprotocol_and_answers_hello() {
    let broker = Broker::start();
    let url = broker.ws_url("/concierge");
    let (mut ws, chosen) = WsClient::connect_with_protocols(&url, &["ert-concierge"])
        .await
        .expect("upgrade");
    assert_eq!(chosen.as_deref(), Some("ert-concierge"));
    ws.send(&identify_payload("alice")).await;
    let hello = ws.recv().await;
    let uuid = serde_json::from_str::<Value>(&hello).unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        hello,
        format!(r#"{{"type":"HELLO","uuid":"{uuid}","version":"0.2.0"}}"#),
        "HELLO is unsequenced and byte-compatible"
    );
    wait_for_metric(
        &broker,
        "switchboard_concierge_clients",
        1.0,
        Duration::from_secs(5),
    )
    .await;
}

#[actix_rt::test]
async fn every_identification_failure_closes_with_its_code() {
    let broker = Broker::with(
        Options::default()
            .env("CONCIERGE__SECRET", "open-sesame")
            .env("CONCIERGE__IDENTIFY_TIMEOUT", "300ms"),
    );
    let identify = |name: &str, version: &str, secret: Option<&str>| {
        json!({"type": "IDENTIFY", "name": name, "version": version, "secret": secret}).to_string()
    };
    let cases = [
        ("not json at all".to_owned(), 4002),
        (r#"{"type":"IDENTIFY","name":"x"}"#.to_owned(), 4002),
        (r#"{"type":"NO_SUCH_TYPE"}"#.to_owned(), 4002),
        (r#"{"type":"SELF_FETCH"}"#.to_owned(), 4003),
        (identify("alice", VERSION, None), 4006),
        (identify("alice", VERSION, Some("wrong")), 4006),
        (identify("alice", "0.1.9", Some("open-sesame")), 4007),
        (identify("alice", "1.0.0", Some("open-sesame")), 4007),
        (identify("alice", "banana", Some("open-sesame")), 4007),
        (identify("a-b", VERSION, Some("open-sesame")), 4008),
        (identify("", VERSION, Some("open-sesame")), 4008),
        (identify("../etc", VERSION, Some("open-sesame")), 4008),
    ];
    for (payload, code) in cases {
        let closed = first_payload_closes(&broker, &payload).await;
        assert_eq!(closed.code, code, "{payload} -> {closed:?}");
        assert!(!closed.reason.is_empty());
    }

    // A binary first frame cannot be decoded either.
    let mut ws = connect(&broker).await;
    ws.send_message(ws::Message::Binary(vec![1, 2, 3].into()))
        .await;
    assert_eq!(ws.recv_close().await.code, 4002);

    // Silence past the identify timeout.
    let mut ws = connect(&broker).await;
    assert_eq!(ws.recv_close().await.code, 4004);

    // The right secret works, and the name is then taken.
    let mut first = connect(&broker).await;
    first
        .send(&identify("alice", VERSION, Some("open-sesame")))
        .await;
    assert_eq!(first.recv_json().await["type"], "HELLO");
    let closed =
        first_payload_closes(&broker, &identify("alice", "0.2.7", Some("open-sesame"))).await;
    assert_eq!(closed.code, 4005);
    // Nothing above hurt the server: the first client is still served.
    first.send(r#"{"type":"SELF_SET_SEQ","seq":7}"#).await;
    assert_eq!(first.recv().await, r#"{"seq":7,"type":"OK"}"#);
}

#[actix_rt::test]
async fn a_silent_client_is_closed_with_4009() {
    let broker = Broker::with(Options::default().env("CONCIERGE__HEARTBEAT_TIMEOUT", "1s"));
    let mut peer = identify(&broker, "sleepy").await;
    // Read nothing (so answer no ping) for longer than the timeout.
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    let closed = peer.ws.recv_close().await;
    assert_eq!(closed.code, 4009, "{closed:?}");

    // A client that answers pings stays.
    let mut awake = identify(&broker, "awake").await;
    awake.silent().await;
    awake.ws.expect_silence(Duration::from_millis(2500)).await;
    awake
        .ask(
            json!({"type": "SELF_SET_SEQ", "seq": 1}),
            json!({"seq": 1, "type": "OK"}),
        )
        .await;
}

#[actix_rt::test]
async fn an_internal_failure_during_identify_closes_with_4000() {
    let broker = Broker::start();
    let mut watcher = identify(&broker, "watcher").await;
    // Make the file server's root unusable: HELLO's key could not work.
    let files = broker.data().join("files");
    std::fs::remove_dir_all(&files).expect("files folder exists");
    std::fs::write(&files, b"not a folder").unwrap();
    let closed = first_payload_closes(&broker, &identify_payload("alice")).await;
    assert_eq!(closed.code, 4000, "{closed:?}");
    // Nobody heard of a client that never got HELLO.
    watcher.silent().await;
    assert_eq!(
        metric(&broker, "switchboard_concierge_clients").await,
        Some(1.0)
    );

    // Once the folder is back, the same name identifies (the name is held
    // until the failed client is cleaned up, which may take a moment).
    std::fs::remove_file(&files).unwrap();
    std::fs::create_dir(&files).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let hello = loop {
        let mut ws = connect(&broker).await;
        ws.send(&identify_payload("alice")).await;
        match ws.next_frame().await {
            awc::ws::Frame::Text(hello) => break serde_json::from_slice::<Value>(&hello).unwrap(),
            awc::ws::Frame::Close(Some(reason)) if u16::from(reason.code) == 4005 => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the name stayed taken"
                );
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("expected HELLO, got {other:?}"),
        }
    };
    assert_eq!(hello["type"], "HELLO");
    let client =
        json!({"name": "alice", "nickname": null, "uuid": hello["uuid"], "tags": ["test"]});
    watcher
        .expect(json!({"type": "CLIENT_JOINED", "client": client}))
        .await;
}

#[actix_rt::test]
async fn seq_counts_text_payloads_after_identify_and_can_be_set() {
    let broker = Broker::start();
    let mut p = identify(&broker, "alice").await;
    p.send(json!({"type": "SERVICE_FETCH_ALL"})).await;
    assert_eq!(
        p.ws.recv().await,
        r#"{"seq":0,"type":"SERVICE_FETCH_ALL_RESULT","services":[]}"#
    );
    // A ping is not a payload.
    p.ws.ping(b"x").await;
    p.ws.send("{ not json").await;
    let error = p.ws.recv_json().await;
    assert_eq!(error["seq"], 1);
    assert_eq!(error["type"], "ERROR_PROTOCOL");
    p.ask(
        json!({"type": "SELF_SET_SEQ", "seq": 100}),
        json!({"seq": 100, "type": "OK"}),
    )
    .await;
    p.ask(
        json!({"type": "SERVICE_FETCH", "service": "nope"}),
        json!({"seq": 101, "type": "INVALID_SERVICE", "service": "nope"}),
    )
    .await;
    p.ask(
        json!({"type": "SELF_SET_SEQ", "seq": 0}),
        json!({"seq": 0, "type": "OK"}),
    )
    .await;
    p.ask(
        json!({"type": "SERVICE_FETCH_ALL"}),
        json!({"seq": 1, "type": "SERVICE_FETCH_ALL_RESULT", "services": []}),
    )
    .await;
}

#[actix_rt::test]
async fn bad_payloads_get_errors_and_the_connection_stays_usable() {
    let broker = Broker::start();
    let mut p = identify(&broker, "alice").await;
    let unsupported = [
        json!({"type": "NO_SUCH_TYPE"}),
        json!({"type": "HELLO", "uuid": p.uuid, "version": "0.2.0"}),
        json!({"type": "OK"}),
        json!({"type": "IDENTIFY", "name": "again", "version": VERSION}),
    ];
    let mut seq = 0;
    for payload in unsupported {
        p.ask(payload, json!({"seq": seq, "type": "ERROR_UNSUPPORTED"}))
            .await;
        seq += 1;
    }
    let malformed = [
        "not json".to_owned(),
        "[1,2]".to_owned(),
        r#"{"no":"type"}"#.to_owned(),
        r#"{"type":"SELF_SUBSCRIBE"}"#.to_owned(),
        r#"{"type":"SELF_SET_SEQ","seq":-1}"#.to_owned(),
        r#"{"type":"CLIENT_FETCH","uuid":"not-a-uuid"}"#.to_owned(),
        r#"{"type":"MESSAGE","target":{"type":"MOON"},"data":1}"#.to_owned(),
        r#"{"type":"MESSAGE","target":{"type":"ALL"}}"#.to_owned(),
    ];
    for text in malformed {
        p.ws.send(&text).await;
        let reply = p.ws.recv_json().await;
        assert_eq!(reply["type"], "ERROR_PROTOCOL", "{text} -> {reply}");
        assert_eq!(reply["seq"], seq, "{text} -> {reply}");
        assert!(
            !reply["desc"].as_str().unwrap().is_empty(),
            "{text} -> {reply}"
        );
        seq += 1;
    }
    // A binary frame is not a text payload: an error without seq.
    p.ws.send_message(ws::Message::Binary(vec![0xff, 0].into()))
        .await;
    let reply = p.ws.recv_json().await;
    assert_eq!(reply["type"], "ERROR_PROTOCOL");
    assert!(reply.get("seq").is_none(), "{reply}");
    // Still identified, still counting.
    p.ask(
        json!({"type": "SELF_FETCH"}),
        json!({"seq": seq, "type": "SELF_FETCH_RESULT", "client": p.info(), "subscriptions": []}),
    )
    .await;
}

#[actix_rt::test]
async fn services_are_created_fetched_subscribed_and_deleted() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["owner", "sub", "other"]).await;
    let [owner, sub, other] = &mut peers[..] else {
        unreachable!()
    };

    // Create: the broadcast to everyone, then (the reference's order) the
    // creator's sequenced reply.
    owner
        .send(json!({"type": "SERVICE_CREATE", "service": "chess", "nickname": "Chess"}))
        .await;
    let mut created = service("chess", owner, &[]);
    created["nickname"] = json!("Chess");
    let broadcast =
        json!({"type": "SERVICE_CREATE_RESULT", "successful": true, "service": created});
    for p in [&mut *owner, &mut *sub, &mut *other] {
        p.expect(broadcast.clone()).await;
    }
    owner
        .expect(json!({"seq": 0, "type": "SERVICE_CREATE_RESULT", "successful": true, "service": created}))
        .await;
    // Creating it again fails, told to the requester only.
    other
        .ask(
            json!({"type": "SERVICE_CREATE", "service": "chess"}),
            json!({"seq": 0, "type": "SERVICE_CREATE_RESULT", "successful": false, "service": created}),
        )
        .await;
    owner.silent().await;
    // Names are checked: empty is refused.
    other
        .ask(
            json!({"type": "SERVICE_CREATE", "service": ""}),
            json!({"seq": 1, "type": "BAD"}),
        )
        .await;

    // Subscribe: the result, then SERVICE_CLIENT_SUBSCRIBED to the subscribers.
    let mut with_sub = service("chess", owner, &[sub]);
    with_sub["nickname"] = json!("Chess");
    sub.ask(
        json!({"type": "SELF_SUBSCRIBE", "service": "chess"}),
        json!({"seq": 0, "type": "SELF_SUBSCRIBE_RESULT", "successful": true, "service": with_sub}),
    )
    .await;
    sub.expect(
        json!({"type": "SERVICE_CLIENT_SUBSCRIBED", "client": sub.info(), "service": with_sub}),
    )
    .await;
    owner.silent().await; // the owner is not subscribed
    sub.ask(
        json!({"type": "SELF_SUBSCRIBE", "service": "chess"}),
        json!({"seq": 1, "type": "SELF_SUBSCRIBE_RESULT", "successful": false, "service": with_sub}),
    )
    .await;
    sub.ask(
        json!({"type": "SELF_SUBSCRIBE", "service": "nope"}),
        json!({"seq": 2, "type": "INVALID_SERVICE", "service": "nope"}),
    )
    .await;

    // Fetches see the subscription.
    other
        .ask(
            json!({"type": "SERVICE_FETCH", "service": "chess"}),
            json!({"seq": 2, "type": "SERVICE_FETCH_RESULT", "service": with_sub}),
        )
        .await;
    other
        .ask(
            json!({"type": "SERVICE_FETCH_ALL"}),
            json!({"seq": 3, "type": "SERVICE_FETCH_ALL_RESULT", "services": [with_sub]}),
        )
        .await;
    sub.ask(
        json!({"type": "SELF_FETCH"}),
        json!({"seq": 3, "type": "SELF_FETCH_RESULT", "client": sub.info(), "subscriptions": [with_sub]}),
    )
    .await;
    other
        .ask(
            json!({"type": "CLIENT_FETCH", "uuid": sub.uuid}),
            json!({"seq": 4, "type": "CLIENT_FETCH_RESULT", "client": sub.info(), "subscriptions": [with_sub]}),
        )
        .await;
    let stranger = uuid::Uuid::new_v4().to_string();
    other
        .ask(
            json!({"type": "CLIENT_FETCH", "uuid": stranger}),
            json!({"seq": 5, "type": "INVALID_UUID", "uuid": stranger}),
        )
        .await;
    other
        .ask(
            json!({"type": "CLIENT_FETCH_ALL"}),
            json!({"seq": 6, "type": "CLIENT_FETCH_ALL_RESULT", "clients": [other.info(), owner.info(), sub.info()]}),
        )
        .await;

    // Unsubscribe: true once, then false; the leaver gets no announcement.
    sub.ask(
        json!({"type": "SELF_UNSUBSCRIBE", "service": "chess"}),
        json!({"seq": 4, "type": "SELF_UNSUBSCRIBE_RESULT", "successful": true, "service": created}),
    )
    .await;
    sub.ask(
        json!({"type": "SELF_UNSUBSCRIBE", "service": "chess"}),
        json!({"seq": 5, "type": "SELF_UNSUBSCRIBE_RESULT", "successful": false, "service": created}),
    )
    .await;
    sub.ask(
        json!({"type": "SELF_UNSUBSCRIBE", "service": "nope"}),
        json!({"seq": 6, "type": "INVALID_SERVICE", "service": "nope"}),
    )
    .await;

    // Delete: only the owner; the broadcast then the owner's result.
    other
        .ask(
            json!({"type": "SERVICE_DELETE", "service": "chess"}),
            json!({"seq": 7, "type": "BAD"}),
        )
        .await;
    other
        .ask(
            json!({"type": "SERVICE_DELETE", "service": "nope"}),
            json!({"seq": 8, "type": "INVALID_SERVICE", "service": "nope"}),
        )
        .await;
    wait_for_metric(
        &broker,
        "switchboard_concierge_services",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    owner
        .send(json!({"type": "SERVICE_DELETE", "service": "chess"}))
        .await;
    let deleted = json!({"type": "SERVICE_DELETE_RESULT", "service": created});
    for p in [&mut *owner, &mut *sub, &mut *other] {
        p.expect(deleted.clone()).await;
    }
    owner
        .expect(json!({"seq": 1, "type": "SERVICE_DELETE_RESULT", "service": created}))
        .await;
    other
        .ask(
            json!({"type": "SERVICE_FETCH_ALL"}),
            json!({"seq": 9, "type": "SERVICE_FETCH_ALL_RESULT", "services": []}),
        )
        .await;
    wait_for_metric(
        &broker,
        "switchboard_concierge_services",
        0.0,
        Duration::from_secs(5),
    )
    .await;
    wait_for_metric(
        &broker,
        "switchboard_actors{kind=\"concierge_service\"}",
        0.0,
        Duration::from_secs(5),
    )
    .await;
}

/// The MESSAGE a recipient gets: the sender's info plus `service`.
fn relayed(from: &Peer, service: Value, target: Value, data: Value) -> Value {
    let mut origin = from.info();
    origin["service"] = service;
    json!({"type": "MESSAGE", "origin": origin, "target": target, "data": data})
}

#[actix_rt::test]
async fn messages_reach_clients_by_name_uuid_and_all() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &mut peers[..] else {
        unreachable!()
    };

    // By name; an `origin` sent by the client is ignored.
    let target = json!({"type": "NAME", "name": "bob"});
    alice
        .ask(
            json!({"type": "MESSAGE", "target": target, "data": {"hi": 1}, "origin": {"name": "forged"}}),
            json!({"seq": 0, "type": "OK"}),
        )
        .await;
    bob.expect(relayed(alice, Value::Null, target, json!({"hi": 1})))
        .await;
    alice
        .ask(
            json!({"type": "MESSAGE", "target": {"type": "NAME", "name": "nobody"}, "data": 1}),
            json!({"seq": 1, "type": "INVALID_NAME", "name": "nobody"}),
        )
        .await;

    // By uuid; the data is relayed byte for byte.
    let raw = format!(
        r#"{{"type":"MESSAGE","target":{{"type":"UUID","uuid":"{}"}},"data":{{"b": 1,  "a":[1, 2.50, "\u00e9"]}}}}"#,
        carol.uuid
    );
    alice.ws.send(&raw).await;
    alice.expect(json!({"seq": 2, "type": "OK"})).await;
    let got = carol.ws.recv().await;
    assert!(
        got.ends_with(r#","data":{"b": 1,  "a":[1, 2.50, "\u00e9"]}}"#),
        "data not verbatim: {got}"
    );
    let stranger = uuid::Uuid::new_v4().to_string();
    alice
        .ask(
            json!({"type": "MESSAGE", "target": {"type": "UUID", "uuid": stranger}, "data": 1}),
            json!({"seq": 3, "type": "INVALID_UUID", "uuid": stranger}),
        )
        .await;

    // To everyone, the sender included: its own copy before its OK.
    let target = json!({"type": "ALL"});
    bob.send(json!({"type": "MESSAGE", "target": target, "data": "hello all"}))
        .await;
    let message = relayed(bob, Value::Null, target, json!("hello all"));
    for p in [&mut *alice, &mut *bob, &mut *carol] {
        p.expect(message.clone()).await;
    }
    bob.expect(json!({"seq": 0, "type": "OK"})).await;
    for p in [&mut *alice, &mut *bob, &mut *carol] {
        p.silent().await;
    }
    for (target, count) in [("NAME", 1.0), ("UUID", 1.0), ("ALL", 1.0)] {
        let series = format!("switchboard_concierge_messages_total{{target=\"{target}\"}}");
        assert_eq!(metric(&broker, &series).await, Some(count), "{series}");
    }
}

#[actix_rt::test]
async fn messages_through_a_service_follow_ownership() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["owner", "sub1", "sub2", "outsider"]).await;
    let [owner, sub1, sub2, outsider] = &mut peers[..] else {
        unreachable!()
    };
    owner
        .send(json!({"type": "SERVICE_CREATE", "service": "feed"}))
        .await;
    owner.ws.recv_json().await; // sequenced result
    for p in [&mut *owner, &mut *sub1, &mut *sub2, &mut *outsider] {
        assert_eq!(p.ws.recv_json().await["type"], "SERVICE_CREATE_RESULT");
    }
    sub1.send(json!({"type": "SELF_SUBSCRIBE", "service": "feed"}))
        .await;
    sub1.ws.recv_json().await; // result
    sub1.ws.recv_json().await; // its own SERVICE_CLIENT_SUBSCRIBED
    sub2.send(json!({"type": "SELF_SUBSCRIBE", "service": "feed"}))
        .await;
    sub2.ws.recv_json().await;
    let both = service("feed", owner, &[sub1, sub2]);
    let joined =
        json!({"type": "SERVICE_CLIENT_SUBSCRIBED", "client": sub2.info(), "service": both});
    sub2.expect(joined.clone()).await;
    sub1.expect(joined).await;
    // In `origin.service` the subscriber list is always empty.
    let header = service("feed", owner, &[]);

    // Owner -> every subscriber, not back to the owner.
    let target = json!({"type": "SERVICE", "service": "feed"});
    owner
        .ask(
            json!({"type": "MESSAGE", "target": target, "data": [1]}),
            json!({"seq": 1, "type": "OK"}),
        )
        .await;
    let message = relayed(owner, header.clone(), target.clone(), json!([1]));
    sub1.expect(message.clone()).await;
    sub2.expect(message).await;
    owner.silent().await;

    // Subscriber -> the owner only.
    sub1.ask(
        json!({"type": "MESSAGE", "target": target, "data": "up"}),
        json!({"seq": 1, "type": "OK"}),
    )
    .await;
    owner
        .expect(relayed(sub1, header.clone(), target.clone(), json!("up")))
        .await;
    sub2.silent().await;

    // Anyone else -> BAD; an unknown service -> INVALID_SERVICE.
    outsider
        .ask(
            json!({"type": "MESSAGE", "target": target, "data": 0}),
            json!({"seq": 0, "type": "BAD"}),
        )
        .await;
    outsider
        .ask(
            json!({"type": "MESSAGE", "target": {"type": "SERVICE", "service": "nope"}, "data": 0}),
            json!({"seq": 1, "type": "INVALID_SERVICE", "service": "nope"}),
        )
        .await;

    // SERVICE_CLIENT_UUID: owner only, subscribers only.
    let target = json!({"type": "SERVICE_CLIENT_UUID", "service": "feed", "uuid": sub2.uuid});
    owner
        .ask(
            json!({"type": "MESSAGE", "target": target, "data": {"private": true}}),
            json!({"seq": 2, "type": "OK"}),
        )
        .await;
    sub2.expect(relayed(
        owner,
        header,
        target.clone(),
        json!({"private": true}),
    ))
    .await;
    sub1.silent().await;
    sub1.ask(
        json!({"type": "MESSAGE", "target": target, "data": 0}),
        json!({"seq": 2, "type": "BAD"}),
    )
    .await;
    owner
        .ask(
            json!({"type": "MESSAGE", "target": {"type": "SERVICE_CLIENT_UUID", "service": "feed", "uuid": outsider.uuid}, "data": 0}),
            json!({"seq": 3, "type": "INVALID_UUID", "uuid": outsider.uuid}),
        )
        .await;
    owner
        .ask(
            json!({"type": "MESSAGE", "target": {"type": "SERVICE_CLIENT_UUID", "service": "nope", "uuid": sub1.uuid}, "data": 0}),
            json!({"seq": 4, "type": "INVALID_SERVICE", "service": "nope"}),
        )
        .await;
    for (target, count) in [("SERVICE", 2.0), ("SERVICE_CLIENT_UUID", 1.0)] {
        let series = format!("switchboard_concierge_messages_total{{target=\"{target}\"}}");
        assert_eq!(metric(&broker, &series).await, Some(count), "{series}");
    }
}

#[actix_rt::test]
async fn a_leaving_client_loses_its_services_then_its_subscriptions_then_is_announced() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["leaver", "host", "watcher"]).await;
    let [leaver, host, watcher] = &mut peers[..] else {
        unreachable!()
    };
    // `leaver` owns "mine"; `host` owns "theirs"; leaver and watcher subscribe to both.
    for (owner, name) in [(&mut *leaver, "mine"), (&mut *host, "theirs")] {
        owner
            .send(json!({"type": "SERVICE_CREATE", "service": name}))
            .await;
        owner.ws.recv_json().await;
    }
    for p in [&mut *leaver, &mut *host, &mut *watcher] {
        for _ in 0..2 {
            assert_eq!(p.ws.recv_json().await["type"], "SERVICE_CREATE_RESULT");
        }
    }
    for p in [&mut *leaver, &mut *watcher] {
        for name in ["mine", "theirs"] {
            p.send(json!({"type": "SELF_SUBSCRIBE", "service": name}))
                .await;
            assert_eq!(p.ws.recv_json().await["type"], "SELF_SUBSCRIBE_RESULT");
            assert_eq!(p.ws.recv_json().await["type"], "SERVICE_CLIENT_SUBSCRIBED");
        }
    }
    // The leaver, subscribed first, heard the watcher join both.
    for _ in 0..2 {
        assert_eq!(
            leaver.ws.recv_json().await["type"],
            "SERVICE_CLIENT_SUBSCRIBED"
        );
    }
    let leaver_info = leaver.info();
    let mine = service("mine", leaver, &[leaver, watcher]);
    let theirs_after = service("theirs", host, &[watcher]);

    let Peer { ws, .. } = peers.remove(0);
    drop(ws);
    let [host, watcher] = &mut peers[..] else {
        unreachable!()
    };
    watcher
        .expect(json!({"type": "SERVICE_DELETE_RESULT", "service": mine}))
        .await;
    watcher
        .expect(json!({"type": "SERVICE_CLIENT_UNSUBSCRIBED", "client": leaver_info, "service": theirs_after}))
        .await;
    watcher
        .expect(json!({"type": "CLIENT_LEFT", "client": leaver_info}))
        .await;
    // The host is not subscribed to its own service: only the global news.
    host.expect(json!({"type": "SERVICE_DELETE_RESULT", "service": mine}))
        .await;
    host.expect(json!({"type": "CLIENT_LEFT", "client": leaver_info}))
        .await;
    host.ask(
        json!({"type": "SERVICE_FETCH_ALL"}),
        json!({"seq": 1, "type": "SERVICE_FETCH_ALL_RESULT", "services": [theirs_after]}),
    )
    .await;
    wait_for_metric(
        &broker,
        "switchboard_concierge_clients",
        2.0,
        Duration::from_secs(5),
    )
    .await;

    // The name is free again.
    identify(&broker, "leaver").await;
}

#[actix_rt::test]
async fn a_client_over_the_rate_limit_is_refused_then_closed() {
    let broker = Broker::with(
        Options::default()
            .env("LIMITS__MESSAGES_PER_SECOND", "1")
            .env("LIMITS__BURST", "2"),
    );
    let mut p = identify(&broker, "flood").await;
    // IDENTIFY took one token; pipeline the rest so no token can come back.
    for _ in 0..5 {
        p.send(json!({"type": "SELF_FETCH"})).await;
    }
    let first = p.ws.recv_json().await;
    assert_eq!(first["type"], "SELF_FETCH_RESULT", "{first}");
    for seq in 1..=3 {
        p.expect(json!({"seq": seq, "type": "ERROR_PROTOCOL", "desc": "rate limit exceeded"}))
            .await;
    }
    assert_eq!(p.ws.recv_close().await.code, 1008);
}

/// The next sequenced frame (a reply), skipping the broadcasts before it.
async fn reply(peer: &mut Peer) -> Value {
    loop {
        let frame = peer.ws.recv_json().await;
        if frame.get("seq").is_some() {
            return frame;
        }
    }
}

/// Sends `payload` and returns the reply's type and `successful` flag.
async fn ask(peer: &mut Peer, payload: Value) -> (String, Value) {
    peer.send(payload).await;
    let got = reply(peer).await;
    (
        got["type"].as_str().unwrap().to_owned(),
        got["successful"].clone(),
    )
}

#[actix_rt::test]
async fn a_client_holding_too_many_services_gets_bad() {
    let broker = Broker::with(Options::default().env("LIMITS__MAX_ROOMS_PER_CLIENT", "2"));
    let mut peers = identify_all(&broker, &["owner", "sub"]).await;
    let [owner, sub] = &mut peers[..] else {
        unreachable!()
    };
    let ok = |kind: &str| (kind.to_owned(), json!(true));
    let bad = ("BAD".to_owned(), Value::Null);

    for name in ["a", "b"] {
        let created = ask(owner, json!({"type": "SERVICE_CREATE", "service": name})).await;
        assert_eq!(created, ok("SERVICE_CREATE_RESULT"));
        let subscribed = ask(sub, json!({"type": "SELF_SUBSCRIBE", "service": name})).await;
        assert_eq!(subscribed, ok("SELF_SUBSCRIBE_RESULT"));
    }
    // Owning two, or subscribing to two, is the limit.
    assert_eq!(
        ask(owner, json!({"type": "SERVICE_CREATE", "service": "c"})).await,
        bad
    );
    assert_eq!(
        ask(sub, json!({"type": "SERVICE_CREATE", "service": "c"})).await,
        bad
    );
    // A service one owns and subscribes to counts once.
    let own = ask(owner, json!({"type": "SELF_SUBSCRIBE", "service": "a"})).await;
    assert_eq!(own, ok("SELF_SUBSCRIBE_RESULT"));
    // Letting one go frees a slot; the connection was never closed.
    let left = ask(sub, json!({"type": "SELF_UNSUBSCRIBE", "service": "b"})).await;
    assert_eq!(left, ok("SELF_UNSUBSCRIBE_RESULT"));
    let created = ask(sub, json!({"type": "SERVICE_CREATE", "service": "c"})).await;
    assert_eq!(created, ok("SERVICE_CREATE_RESULT"));
    assert_eq!(
        ask(sub, json!({"type": "SELF_SUBSCRIBE", "service": "b"})).await,
        bad
    );
}
