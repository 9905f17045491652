//! The console's operations end to end (issue 19, "Console"), against the
//! real broker: lifting a room ban (stored row, restart, invite and enter
//! again), the live-presence list, one connection's detail and closing it,
//! the runtime figures (process, store, closes by code), and `admin.bind`, which moves
//! `/metrics`, the admin API and the console to a listener of their own.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::rooms::{enter, exit, invite, options, RoomsUser, ALICE, BOB};
use common::tokens::token;
use common::{admin, fail_store_writes, request, Broker, RawWs, WsClient, ADMIN_KEY};
use serde_json::{json, Value};

/// The grants the store holds for `user` in `room`, sorted.
fn stored_grants(data: &Path, room: &str, user: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(data.join("switchboard.db")).expect("open the store");
    let mut query = db
        .prepare("SELECT grant FROM room_grants WHERE room_id = ?1 AND user_id = ?2 ORDER BY grant")
        .expect("query");
    query
        .query_map([room, user], |row| row.get(0))
        .expect("grants")
        .collect::<Result<_, _>>()
        .expect("grant rows")
}

/// `GET` of an admin path; must answer 200, returns the body.
async fn get(broker: &Broker, path: &str) -> Value {
    let reply = admin("GET", &broker.http(path), None).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
    reply.json
}

/// Polls `GET path` until its body is `want` (fails after ten seconds).
async fn wait_for_body(broker: &Broker, path: &str, want: &Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = get(broker, path).await;
        if got == *want {
            return;
        }
        assert!(Instant::now() < deadline, "GET {path}: {got}, want {want}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bans `user` (in `room`) through the admin API: its `kick`, the room's `exit`.
async fn ban(broker: &Broker, room: &str, user: &mut RoomsUser, others: &mut [&mut RoomsUser]) {
    let url = broker.http(&format!("/api/admin/rooms/{room}/members/{}", user.id));
    let reply = admin("DELETE", &url, Some(&json!({"permanent": true}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    user.expect(json!({"type": "kick", "room_id": room, "message": null, "permanent": true}))
        .await;
    for other in others {
        other.expect(exit(user.id, room)).await;
    }
}

/// Lifting a permanent kick: 401 without the key; 204 with an empty body,
/// the stored ban row deleted, the ban gone from the room's list; the user
/// can be invited again and enter; a second lift (and an unknown room) 404,
/// a room id that is not a UUID 400; the lift survives a restart.
#[actix_rt::test]
async fn lifting_a_ban_deletes_the_stored_row_and_lets_the_user_back() {
    let broker = Broker::with(options());
    let mut alice = RoomsUser::connect(&broker, ALICE).await;
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    let room = alice.create("club", true).await;
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    bob.expect(invite(ALICE, &room)).await;
    bob.enter(&room, &mut [&mut alice]).await;
    ban(&broker, &room, &mut bob, &mut [&mut alice]).await;
    assert_eq!(stored_grants(broker.data(), &room, BOB), ["ban"]);
    let bans = format!("/api/admin/rooms/{room}/bans");
    assert_eq!(
        get(&broker, &bans).await,
        json!({"room_id": room, "banned": [BOB]})
    );
    // Banned: no invite, no entry.
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    alice
        .expect_error("that user is banned from this room")
        .await;

    let lift = broker.http(&format!("/api/admin/rooms/{room}/bans/{BOB}"));
    let reply = request("DELETE", &lift, None, None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (401, &json!({"error": "missing or wrong admin key"}))
    );
    let reply = request("DELETE", &lift, Some("wrong-key-0123456789"), None).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(stored_grants(broker.data(), &room, BOB), ["ban"]);

    let reply = admin("DELETE", &lift, None).await;
    assert_eq!((reply.status, reply.text.as_str()), (204, ""));
    assert!(stored_grants(broker.data(), &room, BOB).is_empty());
    assert_eq!(
        get(&broker, &bans).await,
        json!({"room_id": room, "banned": []})
    );

    // The ban ended the invite too: a closed room needs a new one.
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("the room is closed: you need an invite")
        .await;
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    bob.expect(invite(ALICE, &room)).await;
    bob.enter(&room, &mut [&mut alice]).await;

    let reply = admin("DELETE", &lift, None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (
            404,
            &json!({"error": format!("user \"{BOB}\" is not banned from room {room}")})
        )
    );
    let nowhere = uuid::Uuid::new_v4();
    let reply = admin(
        "DELETE",
        &broker.http(&format!("/api/admin/rooms/{nowhere}/bans/{BOB}")),
        None,
    )
    .await;
    assert_eq!(
        (reply.status, &reply.json),
        (404, &json!({"error": format!("no room has id {nowhere}")}))
    );
    let reply = admin(
        "DELETE",
        &broker.http(&format!("/api/admin/rooms/not-a-room/bans/{BOB}")),
        None,
    )
    .await;
    assert_eq!(
        (reply.status, &reply.json),
        (
            400,
            &json!({"error": "room id \"not-a-room\" is not a UUID"})
        )
    );

    // Banned again, lifted again, and the lift holds across a restart.
    ban(&broker, &room, &mut bob, &mut [&mut alice]).await;
    let reply = admin("DELETE", &lift, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    drop((alice, bob));
    let data = broker.stop();
    let broker = Broker::with(options().data(&data.path));
    assert_eq!(
        get(&broker, &bans).await,
        json!({"room_id": room, "banned": []})
    );
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("the room is closed: you need an invite")
        .await;
    let mut alice = RoomsUser::connect(&broker, ALICE).await;
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    bob.expect(invite(ALICE, &room)).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(enter(BOB, &room)).await;
}

/// A lift the store refuses changes nothing: 503, the ban still listed and
/// stored, the user still refused; it goes through once the store works.
#[actix_rt::test]
async fn a_lift_the_store_refuses_keeps_the_ban() {
    let broker = Broker::with(options());
    let mut alice = RoomsUser::connect(&broker, ALICE).await;
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    let room = alice.create("open", false).await;
    bob.enter(&room, &mut [&mut alice]).await;
    ban(&broker, &room, &mut bob, &mut [&mut alice]).await;
    let lift = broker.http(&format!("/api/admin/rooms/{room}/bans/{BOB}"));

    fail_store_writes(&broker, true).await;
    let reply = admin("DELETE", &lift, None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (
            503,
            &json!({"error": format!("lifting the ban in room {room}: internal error")})
        )
    );
    fail_store_writes(&broker, false).await;
    assert_eq!(stored_grants(broker.data(), &room, BOB), ["ban"]);
    assert_eq!(
        get(&broker, &format!("/api/admin/rooms/{room}/bans")).await,
        json!({"room_id": room, "banned": [BOB]})
    );
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("you are banned from this room").await;

    let reply = admin("DELETE", &lift, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    bob.enter(&room, &mut [&mut alice]).await;
}

/// Connects a live user and waits until it is online (its first reply).
async fn live_user(broker: &Broker, id: &str, name: &str) -> WsClient {
    let url = broker.ws_url(&format!("/live?token={}", token(id, name)));
    let mut ws = WsClient::connect(&url).await;
    ws.send(&json!({"type": "ping"}).to_string()).await;
    assert_eq!(ws.recv_json().await["type"], "pong");
    ws
}

/// The live tab: every user online once, by name, with its game and its
/// connection count; searchable; 401 without the key.
#[actix_rt::test]
async fn the_presence_list_shows_users_online_their_games_and_connections() {
    let broker = Broker::with(common::tokens::options());
    let alice = live_user(&broker, "u1", "alice").await;
    let mut alice_phone = live_user(&broker, "u1", "alice").await;
    let mut bob = live_user(&broker, "u2", "bob").await;
    bob.send(&json!({"type": "now-playing", "message": "Chess 960"}).to_string())
        .await;
    wait_for_body(
        &broker,
        "/api/admin/presence",
        &json!({"total": 2, "offset": 0, "limit": 50, "items": [
            {"user_id": "u1", "name": "alice", "playing": null, "connections": 2},
            {"user_id": "u2", "name": "bob", "playing": "Chess 960", "connections": 1},
        ]}),
    )
    .await;
    assert_eq!(
        get(&broker, "/api/admin/presence?q=CHESS&limit=5").await,
        json!({"total": 1, "offset": 0, "limit": 5, "items": [
            {"user_id": "u2", "name": "bob", "playing": "Chess 960", "connections": 1},
        ]})
    );
    let reply = request("GET", &broker.http("/api/admin/presence"), None, None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (401, &json!({"error": "missing or wrong admin key"}))
    );
    let reply = admin("GET", &broker.http("/api/admin/presence?limit=0"), None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (400, &json!({"error": "limit must be between 1 and 500"}))
    );

    alice_phone
        .send_message(awc::ws::Message::Close(None))
        .await;
    bob.send_message(awc::ws::Message::Close(None)).await;
    wait_for_body(
        &broker,
        "/api/admin/presence",
        &json!({"total": 1, "offset": 0, "limit": 50, "items": [
            {"user_id": "u1", "name": "alice", "playing": null, "connections": 1},
        ]}),
    )
    .await;
    drop(alice);
}

/// One connection in detail, as the list shows it; 404 for an id no open
/// connection has (also once it is closed on demand), 400 for one that is
/// not a number, 401 without the key.
#[actix_rt::test]
async fn a_connection_is_described_by_id_and_closed_on_demand() {
    let broker = Broker::start();
    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    let _reset = watcher.recv().await;
    let list = get(&broker, "/api/admin/connections?protocol=sessions").await;
    let listed = list["items"][0].clone();
    let id = listed["id"].as_u64().expect("an id");
    let path = format!("/api/admin/connections/{id}");
    let detail = get(&broker, &path).await;
    let mut as_listed = detail.clone();
    let extra: Vec<_> = ["origin", "user_agent", "bytes_in", "bytes_out"]
        .iter()
        .map(|key| as_listed.as_object_mut().unwrap().remove(*key))
        .collect();
    assert_eq!(as_listed, listed);
    // The test client sends no Origin or User-Agent; nothing received, the
    // `reset` frame's 13 bytes written.
    assert_eq!(
        extra,
        [
            Some(json!(null)),
            Some(json!(null)),
            Some(json!(0)),
            Some(json!("reset\n1\n1.0.0".len()))
        ],
        "{detail}"
    );
    // A browser's upgrade: its Origin and User-Agent are shown, and what it
    // sends is counted.
    let mut browser = RawWs::connect_with_headers(
        &broker.addr,
        "/sessions",
        &[
            ("Origin", "https://games.example"),
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            ),
        ],
    );
    browser.send_frame(0x1, b"connect\n2.0.0");
    let deadline = Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let list = get(&broker, "/api/admin/connections?protocol=sessions").await;
        let newest = list["items"].as_array().unwrap().last().unwrap().clone();
        let seen = get(&broker, &format!("/api/admin/connections/{}", newest["id"])).await;
        if seen["bytes_in"] == json!(13) || Instant::now() > deadline {
            break seen;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (&seen["origin"], &seen["user_agent"], &seen["bytes_in"]),
        (
            &json!("https://games.example"),
            &json!("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"),
            &json!(13)
        ),
        "{seen}"
    );
    assert_eq!(detail["protocol"], "sessions");
    assert!(
        detail["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{detail}"
    );
    let since = detail["connected_since"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(since).is_ok(),
        "{since}"
    );
    assert_eq!(
        (&detail["messages_out"], &detail["queue_depth"]),
        (&json!(1), &json!(0)),
        "the reset was written: {detail}"
    );

    let reply = request("GET", &broker.http(&path), None, None).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    let reply = admin("GET", &broker.http("/api/admin/connections/abc"), None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (
            400,
            &json!({"error": "connection id \"abc\" is not a number"})
        )
    );

    let reply = admin(
        "POST",
        &broker.http(&format!("/api/admin/connections/{id}/disconnect")),
        Some(&json!({"reason": "maintenance"})),
    )
    .await;
    assert_eq!(
        (reply.status, &reply.json),
        (200, &json!({"disconnected": id}))
    );
    let closed = watcher.recv_close().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1008, "maintenance"),
        "{closed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = admin("GET", &broker.http(&path), None).await;
        if reply.status == 404 {
            assert_eq!(
                reply.json,
                json!({"error": format!("no open connection has id {id}")})
            );
            break;
        }
        assert!(Instant::now() < deadline, "still open: {}", reply.text);
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The closes per code as the `/metrics` of `listener` counts them
/// (summed over protocols).
async fn closes_in_metrics(listener: &str) -> Value {
    let text = request("GET", &format!("http://{listener}/metrics"), None, None)
        .await
        .text;
    json!(switchboard_actors::monitor::closes_by_code(&text))
}

/// `GET /api/admin/runtime` carries the process's memory, CPU and
/// descriptors, the store's latency (once probed) and the closes per code
/// that `/metrics` counts; 401 without the key.
#[actix_rt::test]
async fn the_runtime_figures_show_the_process_the_store_and_closes() {
    let broker = Broker::start();
    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    let _reset = watcher.recv().await;
    let list = get(&broker, "/api/admin/connections").await;
    let id = list["items"][0]["id"].as_u64().unwrap();
    let reply = admin(
        "POST",
        &broker.http(&format!("/api/admin/connections/{id}/disconnect")),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(watcher.recv_close().await.code, 1008);

    let deadline = Instant::now() + Duration::from_secs(10);
    let runtime = loop {
        let runtime = get(&broker, "/api/admin/runtime").await;
        if runtime["store_latency_ms"].is_number() {
            break runtime;
        }
        assert!(Instant::now() < deadline, "never probed: {runtime}");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    let mut keys: Vec<&str> = runtime
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "closes_by_code",
            "cpu_seconds",
            "open_fds",
            "rss_bytes",
            "store_latency_ms"
        ]
    );
    assert!(
        runtime["rss_bytes"].as_u64().unwrap() > 1_000_000,
        "{runtime}"
    );
    assert!(runtime["open_fds"].as_u64().unwrap() >= 3, "{runtime}");
    assert!(runtime["cpu_seconds"].as_f64().unwrap() >= 0.0, "{runtime}");
    let latency = runtime["store_latency_ms"].as_f64().unwrap();
    assert!((0.0..5000.0).contains(&latency), "{runtime}");
    assert_eq!(
        runtime["closes_by_code"],
        closes_in_metrics(&broker.addr).await,
        "{runtime}"
    );
    let reply = request("GET", &broker.http("/api/admin/runtime"), None, None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (401, &json!({"error": "missing or wrong admin key"}))
    );
}

/// The operator listener's address, from the broker's log.
fn operator_address(broker: &Broker) -> String {
    let log = broker.log();
    log.lines()
        .find_map(|line| {
            line.split_once("operator listener (metrics, admin API, console) on http://")
        })
        .map(|(_, addr)| addr.trim().to_owned())
        .unwrap_or_else(|| panic!("no operator listener in the log:\n{log}"))
}

/// With `admin.bind` set, `/metrics`, the admin API (its WebSocket feed
/// included) and the console answer only on that listener; the public one
/// answers 404 for them and keeps serving everything else, which the
/// operator listener does not serve.
#[actix_rt::test]
async fn admin_bind_serves_metrics_the_admin_api_and_the_console_only_there() {
    let broker = Broker::with(common::Options::default().env("ADMIN__BIND", "127.0.0.1:0"));
    let operator = operator_address(&broker);
    assert_ne!(operator, broker.addr);
    let public = |path: &str| broker.http(path);
    let private = |path: &str| format!("http://{operator}{path}");
    let not_found = json!({"error": "no such endpoint"});

    for path in [
        "/metrics",
        "/api/admin/overview",
        "/api/admin/connections",
        "/console",
        "/console/console.js",
    ] {
        let reply = admin("GET", &public(path), None).await;
        assert_eq!(
            (reply.status, &reply.json),
            (404, &not_found),
            "public {path}"
        );
    }
    match awc::Client::new()
        .ws(broker.ws_url("/api/admin/live"))
        .connect()
        .await
    {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 404),
        Err(other) => panic!("public console feed: {other}"),
        Ok(_) => panic!("the public listener upgraded the console feed"),
    }
    for path in ["/healthz", "/api/sessions"] {
        let reply = request("GET", &public(path), None, None).await;
        assert_eq!(reply.status, 200, "public {path}: {}", reply.text);
    }

    let reply = request("GET", &private("/metrics"), None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply.text.contains("switchboard_connections{"),
        "{}",
        reply.text
    );
    let reply = admin("GET", &private("/api/admin/overview"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.json["uptime_seconds"].is_u64(), "{}", reply.text);
    let reply = request("GET", &private("/api/admin/overview"), None, None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (401, &json!({"error": "missing or wrong admin key"}))
    );
    let reply = request("GET", &private("/console"), None, None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("<html"), "{}", reply.text);
    for path in ["/healthz", "/api/sessions", "/api/rooms"] {
        let reply = request("GET", &private(path), None, None).await;
        assert_eq!(
            (reply.status, &reply.json),
            (404, &not_found),
            "operator {path}"
        );
    }

    // The console's feed works there: the key, then the history.
    let mut console = WsClient::connect(&format!("ws://{operator}/api/admin/live")).await;
    console.send(&json!({ "key": ADMIN_KEY }).to_string()).await;
    let history = console.recv_json().await;
    assert_eq!(history["type"], "history", "{history}");

    // And it reports what happens on the public listener.
    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    let _reset = watcher.recv().await;
    let list = admin("GET", &private("/api/admin/connections"), None).await;
    assert_eq!(list.json["total"], 1, "{}", list.text);
    assert_eq!(list.json["items"][0]["protocol"], "sessions");
}
