//! The publish API end to end (issue 9): `POST /api/publish` into a chat
//! room, a concierge service and a permissioned room, received by real
//! clients, counted in the metrics, and refused with a clear 4xx.

mod common;

use std::time::Duration;

use common::chat::join as chat;
use common::concierge::{self, Peer};
use common::rooms::{create_by_api, RoomsUser, ALICE, BOB, CAROL, MEMBER};
use common::tokens::options;
use common::{
    admin, chat_history, metric, request, request_raw, wait_for_metric, Broker, Options, Reply,
    WsClient, ADMIN_KEY,
};
use serde_json::{json, Value};

/// How long a test waits for a counter to reach its value.
const WAIT: Duration = Duration::from_secs(5);

/// The origin's uuid of a server-published concierge message.
const SERVER_UUID: &str = "00000000-0000-0000-0000-000000000000";

// ---------------------------------------------------------------- helpers

/// `POST /api/publish` with the admin key.
async fn publish(broker: &Broker, body: &Value) -> Reply {
    admin("POST", &broker.http("/api/publish"), Some(body)).await
}

/// Publishes `data` to `target` of `protocol` and asserts the answer
/// `{"protocol", "target", "recipients"}`.
async fn published(broker: &Broker, protocol: &str, target: &str, data: Value, recipients: u64) {
    let reply = publish(
        broker,
        &json!({"protocol": protocol, "target": target, "data": data}),
    )
    .await;
    assert_eq!(
        (reply.status, &reply.json),
        (
            200,
            &json!({"protocol": protocol, "target": target, "recipients": recipients})
        ),
        "{}",
        reply.text
    );
}

/// Asserts `reply` is an error with `status` and a non-empty `error` text.
fn assert_error(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert!(
        reply.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: not {{\"error\": \"...\"}}: {}",
        reply.text
    );
}

/// `switchboard_published_total{protocol="…"}`.
fn published_series(protocol: &str) -> String {
    format!("switchboard_published_total{{protocol=\"{protocol}\"}}")
}

/// `switchboard_messages_out_total{protocol="…"}`.
fn out_series(protocol: &str) -> String {
    format!("switchboard_messages_out_total{{protocol=\"{protocol}\"}}")
}

/// A counter's value; a series not yet written counts as 0.
async fn counter(broker: &Broker, series: &str) -> f64 {
    metric(broker, series).await.unwrap_or(0.0)
}

/// Asserts that no publish of any protocol has been counted.
async fn nothing_published(broker: &Broker) {
    for protocol in ["chat", "concierge", "rooms"] {
        assert_eq!(
            counter(broker, &published_series(protocol)).await,
            0.0,
            "{protocol}"
        );
    }
}

async fn silent(ws: &mut WsClient) {
    ws.expect_silence(Duration::from_millis(300)).await;
}

/// Reads concierge frames until one of type `kind` that carries no `seq`
/// (a broadcast rather than a reply); returns it.
async fn skip_to(peer: &mut Peer, kind: &str) -> Value {
    loop {
        let frame = peer.ws.recv_json().await;
        if frame["type"] == kind && frame.get("seq").is_none() {
            return frame;
        }
    }
}

/// `peer` creates the concierge service `create` names: the broadcast, then
/// its own sequenced result.
async fn create_service(peer: &mut Peer, create: Value) {
    peer.send(create).await;
    skip_to(peer, "SERVICE_CREATE_RESULT").await;
    let reply = peer.ws.recv_json().await;
    assert_eq!(reply["type"], "SERVICE_CREATE_RESULT", "{reply}");
    assert_eq!(reply["successful"], true, "{reply}");
}

/// The MESSAGE a subscriber of `service` (owned by the client with uuid `owner`) gets for a publish of `data`.
fn server_message(service: &str, nickname: Value, owner: &str, data: Value) -> Value {
    json!({
        "type": "MESSAGE",
        "origin": {
            "name": "@server",
            "nickname": "Switchboard",
            "uuid": SERVER_UUID,
            "tags": ["server"],
            "service": {"name": service, "nickname": nickname, "owner_uuid": owner, "subscribers": []},
        },
        "target": {"type": "SERVICE", "service": service},
        "data": data,
    })
}

// ------------------------------------------------------------------ chat

/// A publish into a chat room reaches every member of that room, and only
/// them, as exactly `system {severity, message}` (severity `info` unless
/// chosen); the answer counts the recipients; the message is not kept in
/// the room's history; it is counted per protocol and as messages out.
#[actix_rt::test]
async fn a_chat_publish_reaches_the_room_as_a_system_event_and_is_not_stored() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", Some("lobby")).await;
    let mut bob = chat(&broker, "bob", Some("lobby")).await;
    let mut carol = chat(&broker, "carol", None).await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "user_join", "username": "bob"})
    );
    let said = json!({"event_type": "message", "username": "alice", "message": "before"});
    alice.send(&said.to_string()).await;
    for ws in [&mut alice, &mut bob] {
        assert_eq!(ws.recv_json().await, said);
    }
    assert_eq!(counter(&broker, &published_series("chat")).await, 0.0);
    let out = counter(&broker, &out_series("chat")).await;

    published(&broker, "chat", "lobby", json!("Maintenance at 5"), 2).await;
    let system = json!({"event_type": "system", "severity": "info", "message": "Maintenance at 5"});
    for ws in [&mut alice, &mut bob] {
        assert_eq!(ws.recv_json().await, system);
    }
    silent(&mut carol).await;
    silent(&mut alice).await;
    silent(&mut bob).await;
    wait_for_metric(&broker, &published_series("chat"), 1.0, WAIT).await;
    wait_for_metric(&broker, &out_series("chat"), out + 2.0, WAIT).await;
    assert_eq!(chat_history(&broker, "lobby").await, ["before"]);

    // Every severity.
    for severity in ["info", "success", "warning", "error"] {
        let reply = publish(
            &broker,
            &json!({"protocol": "chat", "target": "lobby", "data": severity, "severity": severity}),
        )
        .await;
        assert_eq!(
            (reply.status, &reply.json),
            (
                200,
                &json!({"protocol": "chat", "target": "lobby", "recipients": 2})
            ),
            "{}",
            reply.text
        );
        let system = json!({"event_type": "system", "severity": severity, "message": severity});
        for ws in [&mut alice, &mut bob] {
            assert_eq!(ws.recv_json().await, system);
        }
    }
    wait_for_metric(&broker, &published_series("chat"), 5.0, WAIT).await;

    // Global: only its member.
    published(&broker, "chat", "Global", json!("hello Global"), 1).await;
    assert_eq!(
        carol.recv_json().await,
        json!({"event_type": "system", "severity": "info", "message": "hello Global"})
    );
    silent(&mut alice).await;
    silent(&mut bob).await;
    assert_eq!(chat_history(&broker, "lobby").await, ["before"]);
    assert!(chat_history(&broker, "Global").await.is_empty());

    // The console's overview counts the publishes too.
    let overview = admin("GET", &broker.http("/api/admin/overview"), None).await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    assert_eq!(overview.json["published_total"], 6, "{}", overview.text);
}

/// A chat room that exists but has nobody in it takes a publish with no
/// recipients.
#[actix_rt::test]
async fn a_chat_publish_into_an_empty_room_has_no_recipients() {
    let broker = Broker::start();
    // The chat API creates the room with the poster as creator, not member.
    let reply = request(
        "POST",
        &broker.http("/chat/news/send-message"),
        None,
        Some(&json!({"username": "poster", "message": "first"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    published(&broker, "chat", "news", json!("anyone?"), 0).await;
    wait_for_metric(&broker, &published_series("chat"), 1.0, WAIT).await;
    assert_eq!(chat_history(&broker, "news").await, ["first"]);
}

// ------------------------------------------------------------- concierge

/// A publish into a concierge service reaches every subscriber as exactly
/// a MESSAGE whose origin is the server (`@server`, the nil uuid, tagged
/// `server`) with the service's info, its data relayed byte for byte; the
/// owner gets it only once it subscribes, other clients never.
#[actix_rt::test]
async fn a_concierge_publish_reaches_the_subscribers_from_the_server() {
    let broker = Broker::start();
    let mut peers = concierge::identify_all(&broker, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &mut peers[..] else {
        unreachable!()
    };
    create_service(
        alice,
        json!({"type": "SERVICE_CREATE", "service": "weather", "nickname": "Weather feed"}),
    )
    .await;
    for p in [&mut *bob, &mut *carol] {
        skip_to(p, "SERVICE_CREATE_RESULT").await;
    }
    bob.send(json!({"type": "SELF_SUBSCRIBE", "service": "weather"}))
        .await;
    skip_to(bob, "SERVICE_CLIENT_SUBSCRIBED").await;
    let out = counter(&broker, &out_series("concierge")).await;

    let data = json!({"temp": 21, "unit": "C", "tags": ["sunny"]});
    published(&broker, "concierge", "weather", data.clone(), 1).await;
    let owner = alice.uuid.clone();
    bob.expect(server_message(
        "weather",
        json!("Weather feed"),
        &owner,
        data,
    ))
    .await;
    alice.silent().await;
    carol.silent().await;
    bob.silent().await;
    wait_for_metric(&broker, &published_series("concierge"), 1.0, WAIT).await;
    wait_for_metric(&broker, &out_series("concierge"), out + 1.0, WAIT).await;

    // The owner subscribes: now it is a recipient too.
    alice
        .send(json!({"type": "SELF_SUBSCRIBE", "service": "weather"}))
        .await;
    skip_to(alice, "SERVICE_CLIENT_SUBSCRIBED").await;
    skip_to(bob, "SERVICE_CLIENT_SUBSCRIBED").await;
    published(&broker, "concierge", "weather", json!("plain text"), 2).await;
    let message = server_message(
        "weather",
        json!("Weather feed"),
        &owner,
        json!("plain text"),
    );
    alice.expect(message.clone()).await;
    bob.expect(message).await;
    carol.silent().await;

    // Any JSON, relayed verbatim (spacing and number spelling kept).
    let raw = r#"{"b": 1,  "a":[1, 2.50, "\u00e9", null]}"#;
    let body = format!(r#"{{"protocol":"concierge","target":"weather","data":{raw}}}"#);
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, answer) = request_raw(
        "POST",
        &broker.http("/api/publish"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    for p in [&mut *alice, &mut *bob] {
        let got = p.ws.recv().await;
        assert!(
            got.contains(&format!(r#""data":{raw}"#)),
            "data not verbatim: {got}"
        );
        let got: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(
            got,
            server_message(
                "weather",
                json!("Weather feed"),
                &owner,
                serde_json::from_str(raw).unwrap()
            )
        );
    }
    wait_for_metric(&broker, &published_series("concierge"), 3.0, WAIT).await;
}

/// A service nobody subscribes to takes a publish with no recipients; a
/// service without a nickname has `nickname: null` in the origin.
#[actix_rt::test]
async fn a_concierge_publish_to_a_service_without_subscribers_has_no_recipients() {
    let broker = Broker::start();
    let mut peers = concierge::identify_all(&broker, &["alice", "bob"]).await;
    let [alice, bob] = &mut peers[..] else {
        unreachable!()
    };
    create_service(alice, json!({"type": "SERVICE_CREATE", "service": "quiet"})).await;
    skip_to(bob, "SERVICE_CREATE_RESULT").await;
    published(&broker, "concierge", "quiet", json!(1), 0).await;
    alice.silent().await;
    bob.silent().await;

    bob.send(json!({"type": "SELF_SUBSCRIBE", "service": "quiet"}))
        .await;
    skip_to(bob, "SERVICE_CLIENT_SUBSCRIBED").await;
    published(&broker, "concierge", "quiet", json!(2), 1).await;
    bob.expect(server_message(
        "quiet",
        Value::Null,
        &alice.uuid.clone(),
        json!(2),
    ))
    .await;
    alice.silent().await;
    wait_for_metric(&broker, &published_series("concierge"), 2.0, WAIT).await;
}

// ----------------------------------------------------------------- rooms

/// A publish into a permissioned room reaches every member who entered, as
/// a `message` from `@server` whose `message_id` continues the room's own
/// sequence; members who have not entered get nothing.
#[actix_rt::test]
async fn a_rooms_publish_reaches_the_entered_members_in_the_rooms_sequence() {
    let broker = Broker::with(options());
    let mut alice = RoomsUser::connect(&broker, ALICE).await;
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    let mut carol = RoomsUser::connect(&broker, CAROL).await;
    let room = alice.create("club", false).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    let entered = json!({"type": "enter", "user_id": BOB, "room_id": room});
    bob.expect(entered.clone()).await;
    alice.expect(entered).await;

    alice
        .send(json!({"type": "message", "content": "hello", "room_id": room}))
        .await;
    let first = alice.message(ALICE, "hello", &room).await;
    assert_eq!(bob.message(ALICE, "hello", &room).await, first);
    let out = counter(&broker, &out_series("rooms")).await;

    published(&broker, "rooms", &room, json!("Server restarts at 5"), 2).await;
    let notice = alice
        .message("@server", "Server restarts at 5", &room)
        .await;
    assert_eq!(
        bob.message("@server", "Server restarts at 5", &room).await,
        notice
    );
    assert!(
        notice["message_id"].as_u64() > first["message_id"].as_u64(),
        "{notice} after {first}"
    );
    carol.ws.expect_silence(Duration::from_millis(300)).await;
    wait_for_metric(&broker, &published_series("rooms"), 1.0, WAIT).await;
    wait_for_metric(&broker, &out_series("rooms"), out + 2.0, WAIT).await;

    // The sequence goes on for clients and further publishes.
    bob.send(json!({"type": "message", "content": "after", "room_id": room}))
        .await;
    let after = bob.message(BOB, "after", &room).await;
    assert_eq!(alice.message(BOB, "after", &room).await, after);
    assert!(after["message_id"].as_u64() > notice["message_id"].as_u64());
    published(&broker, "rooms", &room, json!("again"), 2).await;
    let again = alice.message("@server", "again", &room).await;
    assert_eq!(bob.message("@server", "again", &room).await, again);
    assert!(again["message_id"].as_u64() > after["message_id"].as_u64());

    // Bob exits: one recipient left.
    bob.send(json!({"type": "exit", "room_id": room})).await;
    let exited = json!({"type": "exit", "user_id": BOB, "room_id": room});
    bob.expect(exited.clone()).await;
    alice.expect(exited).await;
    published(&broker, "rooms", &room, json!("just you"), 1).await;
    alice.message("@server", "just you", &room).await;
    bob.ws.expect_silence(Duration::from_millis(300)).await;
    carol.ws.expect_silence(Duration::from_millis(300)).await;
    wait_for_metric(&broker, &published_series("rooms"), 3.0, WAIT).await;
}

/// A room nobody has entered takes a publish with no recipients.
#[actix_rt::test]
async fn a_rooms_publish_into_an_empty_room_has_no_recipients() {
    let broker = Broker::with(options());
    let room = create_by_api(&broker, "ops", false).await;
    published(&broker, "rooms", &room, json!("nobody home"), 0).await;
    wait_for_metric(&broker, &published_series("rooms"), 1.0, WAIT).await;
}

// ---------------------------------------------------------------- errors

/// An unknown chat room, concierge service or permissioned room is 404
/// with an error naming it; nothing is delivered or counted.
#[actix_rt::test]
async fn an_unknown_target_is_404_naming_it() {
    let broker = Broker::with(options());
    let mut alice = chat(&broker, "alice", None).await;
    let nowhere = uuid::Uuid::new_v4().to_string();
    for (protocol, target, data) in [
        ("chat", "nowhere", json!("x")),
        ("concierge", "nosuch", json!({"a": 1})),
        ("rooms", nowhere.as_str(), json!("x")),
    ] {
        let reply = publish(
            &broker,
            &json!({"protocol": protocol, "target": target, "data": data}),
        )
        .await;
        assert_error(&reply, 404, protocol);
        assert!(
            reply.json["error"].as_str().unwrap().contains(target),
            "the error names {target}: {}",
            reply.text
        );
    }
    // A room id that is not a UUID cannot name a room either.
    let reply = publish(
        &broker,
        &json!({"protocol": "rooms", "target": "not-a-uuid", "data": "x"}),
    )
    .await;
    assert!(
        matches!(reply.status, 400 | 404),
        "{}: {}",
        reply.status,
        reply.text
    );
    silent(&mut alice).await;
    nothing_published(&broker).await;
    // Chat rooms are not created by a publish.
    let rooms = request("GET", &broker.http("/chat/rooms"), None, None).await;
    assert_eq!(
        rooms.json["rooms"].as_array().unwrap().len(),
        1,
        "{}",
        rooms.text
    );
}

/// A protocol disabled in the config cannot be published to: 404.
#[actix_rt::test]
async fn a_disabled_protocol_is_404() {
    let broker = Broker::with(
        Options::default()
            .env("CHAT__ENABLED", "false")
            .env("CONCIERGE__ENABLED", "false")
            .env("ROOMS__ENABLED", "false"),
    );
    let room = uuid::Uuid::new_v4().to_string();
    for (protocol, target) in [
        ("chat", "Global"),
        ("concierge", "weather"),
        ("rooms", room.as_str()),
    ] {
        let reply = publish(
            &broker,
            &json!({"protocol": protocol, "target": target, "data": "x"}),
        )
        .await;
        assert_error(&reply, 404, protocol);
    }
    nothing_published(&broker).await;
}

/// An unknown protocol, data of the wrong type, a missing field, a bad
/// severity or a body that is not a JSON object is 400; nothing is
/// delivered or counted.
#[actix_rt::test]
async fn malformed_publishes_are_400() {
    let broker = Broker::with(options());
    let mut alice = chat(&broker, "alice", None).await;
    let mut owner = concierge::identify(&broker, "owner").await;
    create_service(
        &mut owner,
        json!({"type": "SERVICE_CREATE", "service": "feed"}),
    )
    .await;
    let mut member = RoomsUser::connect(&broker, MEMBER).await;
    let room = member.create("club", false).await;

    for body in [
        json!({"protocol": "smoke", "target": "Global", "data": "x"}),
        json!({"protocol": "CHAT", "target": "Global", "data": "x"}),
        json!({"protocol": 5, "target": "Global", "data": "x"}),
        json!({"protocol": "chat", "target": "Global", "data": {"text": "x"}}),
        json!({"protocol": "chat", "target": "Global", "data": 5}),
        json!({"protocol": "chat", "target": "Global", "data": ["x"]}),
        json!({"protocol": "chat", "target": "Global", "data": null}),
        json!({"protocol": "chat", "target": "Global", "data": "x", "severity": "fatal"}),
        json!({"protocol": "chat", "target": "Global", "data": "x", "severity": 1}),
        json!({"protocol": "chat", "target": 5, "data": "x"}),
        json!({"protocol": "rooms", "target": room, "data": {"content": "x"}}),
        json!({"protocol": "rooms", "target": room, "data": 7}),
        json!({"target": "Global", "data": "x"}),
        json!({"protocol": "chat", "data": "x"}),
        json!({"protocol": "chat", "target": "Global"}),
        json!({"protocol": "concierge", "target": "feed"}),
        json!({"protocol": "rooms", "target": room}),
        json!({}),
        json!([]),
        json!("chat"),
    ] {
        let reply = publish(&broker, &body).await;
        assert_error(&reply, 400, &body.to_string());
    }
    let auth = format!("Bearer {ADMIN_KEY}");
    for raw in [
        "{not json",
        r#"{"protocol":"chat","target":"Global","data":"x""#,
        "",
    ] {
        let (status, answer) = request_raw(
            "POST",
            &broker.http("/api/publish"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            raw.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(status, 400, "{raw:?}: {}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).expect("a JSON error");
        assert!(answer["error"].is_string(), "{answer}");
    }
    silent(&mut alice).await;
    owner.silent().await;
    member.ws.expect_silence(Duration::from_millis(300)).await;
    nothing_published(&broker).await;
}

/// Publishing needs the admin key: without it, with a wrong one or in
/// another scheme it is 401 and nothing is delivered or counted.
#[actix_rt::test]
async fn publishing_needs_the_admin_key() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", None).await;
    let url = broker.http("/api/publish");
    let body = json!({"protocol": "chat", "target": "Global", "data": "x"});
    for key in [
        None,
        Some("not-the-admin-key-0123456789"),
        Some(""),
        Some(&ADMIN_KEY[1..]),
    ] {
        let reply = request("POST", &url, key, Some(&body)).await;
        assert_error(&reply, 401, &format!("{key:?}"));
    }
    for header in [format!("Basic {ADMIN_KEY}"), ADMIN_KEY.to_owned()] {
        let (status, _) = request_raw(
            "POST",
            &url,
            &[
                ("authorization", &header),
                ("content-type", "application/json"),
            ],
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 401, "{header}");
    }
    // Even a malformed or misdirected publish is 401 first.
    for body in [
        json!({"protocol": "smoke"}),
        json!({"protocol": "chat", "target": "nowhere", "data": "x"}),
    ] {
        let reply = request("POST", &url, None, Some(&body)).await;
        assert_error(&reply, 401, &body.to_string());
    }
    silent(&mut alice).await;
    nothing_published(&broker).await;

    // A broker without an admin key refuses every publish.
    let broker = Broker::with(Options::default().without_admin_key());
    let mut bob = chat(&broker, "bob", None).await;
    for key in [None, Some(ADMIN_KEY)] {
        let reply = request("POST", &broker.http("/api/publish"), key, Some(&body)).await;
        assert_error(&reply, 401, &format!("no configured key, {key:?}"));
    }
    silent(&mut bob).await;
}
