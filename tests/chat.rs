//! The workshop chat end to end (PROTOCOLS.md §2): real clients on a real
//! broker, asserting the exact frames and their order.

mod common;

use std::time::Duration;

use awc::ws;
use common::{admin, request, wait_for_metric, Broker, Options, WsClient};
use serde_json::{json, Value};

/// A joined chat user.
struct User {
    ws: WsClient,
    name: String,
}

impl User {
    async fn send(&mut self, event: Value) {
        self.ws.send(&event.to_string()).await;
    }

    async fn expect(&mut self, want: Value) {
        let got = self.ws.recv_json().await;
        assert_eq!(got, want, "{} got an unexpected frame", self.name);
    }

    async fn silent(&mut self) {
        self.ws.expect_silence(Duration::from_millis(200)).await;
    }
}

fn url(broker: &Broker, room: Option<&str>) -> String {
    match room {
        None => broker.ws_url("/chat/ws"),
        Some(room) => broker.ws_url(&format!("/chat/ws/{room}")),
    }
}

fn request_frame(name: &str) -> String {
    json!({"event_type": "connection_request", "username": name}).to_string()
}

fn room(name: &str, creator: &str, users: &[&str]) -> Value {
    json!({"room_name": name, "room_creator": creator, "connected_users": users})
}

fn joined(name: &str) -> Value {
    json!({"event_type": "user_join", "username": name})
}

fn no_history() -> Value {
    json!({"event_type": "message_history", "messages": []})
}

/// The usernames in a `users_online` frame, checking each `connected_at`.
fn online(frame: &Value) -> Vec<String> {
    assert_eq!(frame["event_type"], "users_online", "{frame}");
    frame["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let at = u["connected_at"].as_str().unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
                "{at}"
            );
            u["username"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Connects and joins; checks `connection_response` and returns the
/// frames that follow it, up to and including the user's own `user_join`.
async fn join_frames(broker: &Broker, name: &str, room: Option<&str>) -> (User, Vec<Value>) {
    let mut ws = WsClient::connect(&url(broker, room)).await;
    ws.send(&request_frame(name)).await;
    let response = ws.recv_json().await;
    assert_eq!(response["event_type"], "connection_response", "{response}");
    assert_eq!(response["username"], name);
    let user_id = response["user_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(user_id).unwrap().get_version_num(), 4);
    assert_eq!(response.as_object().unwrap().len(), 3);
    let mut rest = Vec::new();
    loop {
        let frame = ws.recv_json().await;
        let done = frame == joined(name);
        rest.push(frame);
        if done {
            break;
        }
    }
    let user = User {
        ws,
        name: name.to_owned(),
    };
    (user, rest)
}

/// Joins and skips the startup frames.
async fn join(broker: &Broker, name: &str, room: Option<&str>) -> User {
    join_frames(broker, name, room).await.0
}

/// Sends `first` and expects `connection_reject {response}` and a close.
async fn rejected(broker: &Broker, room: Option<&str>, first: &str) -> String {
    let mut ws = WsClient::connect(&url(broker, room)).await;
    ws.send(first).await;
    let reject = ws.recv_json().await;
    assert_eq!(reject["event_type"], "connection_reject", "{reject}");
    assert_eq!(reject.as_object().unwrap().len(), 2);
    let closed = ws.recv_close().await;
    assert_eq!(closed.code, 1000, "{closed:?}");
    reject["response"].as_str().unwrap().to_owned()
}

async fn rooms(broker: &Broker) -> Value {
    let reply = request("GET", &broker.http("/chat/rooms"), None, None).await;
    assert_eq!(reply.status, 200);
    reply.json["rooms"].clone()
}

#[actix_rt::test]
async fn joining_global_sends_the_startup_sequence_in_order() {
    let broker = Broker::start();
    let (mut alice, frames) = join_frames(&broker, "alice", None).await;
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(
        frames[0],
        json!({"event_type": "all_rooms", "rooms": [room("Global", "System", &["alice"])]})
    );
    assert_eq!(frames[1], no_history());
    assert!(online(&frames[2]).is_empty(), "the newcomer is not listed");
    assert_eq!(frames[3], joined("alice"));

    let (_bob, frames) = join_frames(&broker, "bob", None).await;
    assert_eq!(
        frames[0],
        json!({"event_type": "all_rooms", "rooms": [room("Global", "System", &["alice", "bob"])]})
    );
    assert_eq!(frames[1], no_history());
    assert_eq!(online(&frames[2]), ["alice"]);
    assert_eq!(frames[3], joined("bob"));
    alice.expect(joined("bob")).await;
    wait_for_metric(
        &broker,
        "switchboard_chat_members",
        2.0,
        Duration::from_secs(5),
    )
    .await;
}

#[actix_rt::test]
async fn joining_a_new_room_creates_it_and_an_existing_one_does_not() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;

    let (mut bob, frames) = join_frames(&broker, "bob", Some("dev")).await;
    let dev = room("dev", "bob", &["bob"]);
    assert_eq!(
        frames,
        [
            json!({"event_type": "all_rooms", "rooms": [room("Global", "System", &["alice"]), dev]}),
            json!({"event_type": "room_create", "room": dev}),
            no_history(),
            json!({"event_type": "users_online", "users": []}),
            joined("bob"),
        ]
    );
    // Everyone else hears of the new room; bob's join stays in dev.
    alice
        .expect(json!({"event_type": "room_create", "room": dev}))
        .await;
    alice.silent().await;

    let (_carol, frames) = join_frames(&broker, "carol", Some("dev")).await;
    assert_eq!(
        frames.len(),
        4,
        "no room_create for an existing room: {frames:?}"
    );
    assert_eq!(frames[0]["rooms"][1], room("dev", "bob", &["bob", "carol"]));
    assert_eq!(online(&frames[2]), ["bob"]);
    bob.expect(joined("carol")).await;
    alice.silent().await;
}

#[actix_rt::test]
async fn bad_connection_requests_are_rejected_and_create_nothing() {
    let broker = Broker::start();
    let _alice = join(&broker, "alice", None).await;
    let cases = [
        (None, request_frame(&"x".repeat(21)), "Username is too long"),
        (
            None,
            request_frame("a;b"),
            "Username contains invalid characters",
        ),
        (
            None,
            request_frame("   "),
            "Username contains invalid characters",
        ),
        (None, request_frame(" alice "), "Username is already taken"),
        (None, "not json".to_owned(), "Invalid message format"),
        (
            None,
            json!({"event_type": "message", "username": "x", "message": "hi"}).to_string(),
            "Invalid message format",
        ),
        (
            Some("bad;room"),
            request_frame("dave"),
            "Room name contains invalid characters",
        ),
    ];
    for (room_name, first, want) in cases {
        let response = rejected(&broker, room_name, &first).await;
        assert_eq!(response, want, "{first}");
    }
    // A 20-character name of letters like å counts characters, not bytes.
    let long_ok = "å".repeat(20);
    let _long = join(&broker, &long_ok, None).await;
    assert_eq!(
        rooms(&broker).await,
        json!([room("Global", "System", &["alice", &long_ok])]),
        "rejected connections created no room and took no name"
    );
}

#[actix_rt::test]
async fn messages_and_typing_reach_the_room_and_spoofing_is_refused() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    let mut bob = join(&broker, "bob", None).await;
    alice.expect(joined("bob")).await;

    let hello = json!({"event_type": "message", "username": "alice", "message": "hello"});
    alice.send(hello.clone()).await;
    alice.expect(hello.clone()).await;
    bob.expect(hello).await;

    alice
        .send(json!({"event_type": "message", "username": "alice", "message": "x".repeat(1001)}))
        .await;
    alice
        .expect(json!({"event_type": "system", "severity": "error", "message": "Message is longer than 1000 characters"}))
        .await;
    bob.silent().await;

    let typing = json!({"event_type": "typing", "username": "bob", "is_typing": true});
    bob.send(typing.clone()).await;
    bob.expect(typing.clone()).await;
    alice.expect(typing).await;

    // Spoofed: a warning naming both users to the room; nothing relayed or stored.
    alice
        .send(json!({"event_type": "message", "username": "bob", "message": "I am bob"}))
        .await;
    let warning = json!({"event_type": "system", "severity": "warning", "message": "alice tried to send a message as bob"});
    alice.expect(warning.clone()).await;
    bob.expect(warning).await;
    bob.send(json!({"event_type": "typing", "username": "alice", "is_typing": false}))
        .await;
    let warning = json!({"event_type": "system", "severity": "warning", "message": "bob tried to send a typing event as alice"});
    alice.expect(warning.clone()).await;
    bob.expect(warning).await;

    let history = request("GET", &broker.http("/chat/messages"), None, None).await;
    let messages = history.json["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["username"], "alice");
    assert_eq!(messages[0]["message"], "hello");
    assert!(messages[0]["timestamp"].as_str().unwrap().ends_with('Z'));

    // A newcomer gets the history.
    let (_carol, frames) = join_frames(&broker, "carol", None).await;
    assert_eq!(frames[1]["messages"], json!(messages));
}

#[actix_rt::test]
async fn rooms_are_created_switched_and_cleared() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    let mut bob = join(&broker, "bob", None).await;
    alice.expect(joined("bob")).await;
    let mut carol = join(&broker, "carol", Some("elsewhere")).await;
    for p in [&mut alice, &mut bob] {
        assert_eq!(p.ws.recv_json().await["event_type"], "room_create");
    }

    // Create: announced to every user in every room; the creator stays put.
    alice
        .send(json!({"event_type": "room_create", "room": {"room_name": "games", "room_creator": "alice", "connected_users": ["alice"]}}))
        .await;
    let created = json!({"event_type": "room_create", "room": room("games", "alice", &["alice"])});
    for p in [&mut alice, &mut bob, &mut carol] {
        p.expect(created.clone()).await;
    }
    for (name, contains) in [
        ("games", "already exists"),
        ("Global", "already exists"),
        ("no;pe", "invalid"),
        (&"r".repeat(21), "invalid"),
    ] {
        alice
            .send(json!({"event_type": "room_create", "room": {"room_name": name}}))
            .await;
        let reject = alice.ws.recv_json().await;
        assert_eq!(reject["event_type"], "room_create_reject", "{reject}");
        assert!(
            reject["response"].as_str().unwrap().contains(contains),
            "{name}: {reject}"
        );
    }

    // Switch: the response, history, users, then the join; the old room hears the leave.
    bob.send(json!({"event_type": "room_switch_request", "room_name": "games"}))
        .await;
    bob.expect(json!({"event_type": "room_switch_response", "room_name": "games"}))
        .await;
    bob.expect(no_history()).await;
    assert!(online(&bob.ws.recv_json().await).is_empty());
    bob.expect(joined("bob")).await;
    alice
        .expect(json!({"event_type": "user_leave", "username": "bob"}))
        .await;
    bob.send(json!({"event_type": "room_switch_request", "room_name": "nowhere"}))
        .await;
    bob.expect(json!({"event_type": "room_switch_reject", "response": "Room nowhere not found"}))
        .await;
    let listed = rooms(&broker).await;
    assert_eq!(
        listed,
        json!([
            room("Global", "System", &["alice"]),
            room("elsewhere", "carol", &["carol"]),
            room("games", "alice", &["bob"]),
        ])
    );

    // Clear a room: broadcast with the real sender, even when spoofed.
    let said = json!({"event_type": "message", "username": "bob", "message": "to be cleared"});
    bob.send(said.clone()).await;
    bob.expect(said).await;
    bob.send(json!({"event_type": "room_chat_clear", "username": "mallory", "room_name": "games"}))
        .await;
    bob.expect(json!({"event_type": "system", "severity": "warning", "message": "bob tried to send a chat clear as mallory"}))
        .await;
    bob.expect(json!({"event_type": "room_chat_clear", "username": "bob", "room_name": "games"}))
        .await;
    let reply = request("GET", &broker.http("/chat/games/messages"), None, None).await;
    assert_eq!(reply.json, json!({"messages": []}));

    // Global cannot be cleared: an error to the room, history kept.
    let said = json!({"event_type": "message", "username": "alice", "message": "keep me"});
    alice.send(said.clone()).await;
    alice.expect(said).await;
    alice
        .send(json!({"event_type": "room_chat_clear", "username": "alice", "room_name": "Global"}))
        .await;
    let refusal = alice.ws.recv_json().await;
    assert_eq!(refusal["event_type"], "system");
    assert_eq!(refusal["severity"], "error");
    let reply = request("GET", &broker.http("/chat/messages"), None, None).await;
    assert_eq!(reply.json["messages"].as_array().unwrap().len(), 1);
    bob.send(json!({"event_type": "room_chat_clear", "username": "bob", "room_name": "nowhere"}))
        .await;
    bob.expect(
        json!({"event_type": "system", "severity": "error", "message": "Room nowhere not found"}),
    )
    .await;
}

#[actix_rt::test]
async fn invalid_input_gets_an_error_and_the_connection_stays_open() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    let invalid =
        json!({"event_type": "system", "severity": "error", "message": "Invalid message format"});
    for text in [
        "not json",
        "[1,2]",
        "{}",
        r#"{"event_type":"nope"}"#,
        r#"{"event_type":"user_join","username":"alice"}"#,
        r#"{"event_type":"message","username":"alice"}"#,
        r#"{"event_type":"typing","username":"alice","is_typing":"yes"}"#,
        r#"{"event_type":"connection_request","username":"again"}"#,
    ] {
        alice.ws.send(text).await;
        alice.expect(invalid.clone()).await;
    }
    alice
        .ws
        .send_message(ws::Message::Binary(vec![1, 2].into()))
        .await;
    alice.expect(invalid).await;
    let still = json!({"event_type": "message", "username": "alice", "message": "still here"});
    alice.send(still.clone()).await;
    alice.expect(still).await;
}

#[actix_rt::test]
async fn leaving_is_announced_to_the_current_room() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    let bob = join(&broker, "bob", None).await;
    alice.expect(joined("bob")).await;
    drop(bob);
    alice
        .expect(json!({"event_type": "user_leave", "username": "bob"}))
        .await;
    wait_for_metric(
        &broker,
        "switchboard_chat_members",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    // The name is free again.
    join(&broker, "bob", None).await;
}

#[actix_rt::test]
async fn history_and_rooms_survive_a_restart() {
    let broker = Broker::with(Options::default().env("CHAT__HISTORY_LIMIT", "3"));
    let mut alice = join(&broker, "alice", Some("keep")).await;
    for i in 0..5 {
        let said =
            json!({"event_type": "message", "username": "alice", "message": format!("m{i}")});
        alice.send(said.clone()).await;
        alice.expect(said).await;
    }
    let before = request("GET", &broker.http("/chat/keep/messages"), None, None).await;
    assert_eq!(before.json["messages"].as_array().unwrap().len(), 3);
    drop(alice);
    let data = broker.stop();

    let broker = Broker::with(
        Options::default()
            .data(&data.path)
            .env("CHAT__HISTORY_LIMIT", "3"),
    );
    let (_bob, frames) = join_frames(&broker, "bob", Some("keep")).await;
    assert_eq!(
        frames.len(),
        4,
        "the room exists, so no room_create: {frames:?}"
    );
    assert_eq!(
        frames[1],
        json!({"event_type": "message_history", "messages": before.json["messages"]}),
        "the same history after the restart"
    );
    let texts: Vec<_> = frames[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["m2", "m3", "m4"]);
    assert_eq!(
        rooms(&broker).await,
        json!([
            room("Global", "System", &[]),
            room("keep", "alice", &["bob"])
        ])
    );
}

#[actix_rt::test]
async fn the_http_api_posts_lists_and_clears() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;

    let sent = json!({"status": "success", "message": "Message sent"});
    let reply = request(
        "POST",
        &broker.http("/chat/send-message"),
        None,
        Some(&json!({"username": " poster ", "message": " hi from http "})),
    )
    .await;
    assert_eq!((reply.status, reply.json), (200, sent.clone()));
    alice
        .expect(json!({"event_type": "message", "username": "poster", "message": "hi from http"}))
        .await;

    // An unknown room is created with the poster as creator.
    let reply = request(
        "POST",
        &broker.http("/chat/news/send-message"),
        None,
        Some(&json!({"username": "poster", "message": "first"})),
    )
    .await;
    assert_eq!((reply.status, reply.json), (200, sent));
    alice
        .expect(json!({"event_type": "room_create", "room": room("news", "poster", &["poster"])}))
        .await;
    for path in ["/chat/news/messages", "/chat/news/messages/"] {
        let reply = request("GET", &broker.http(path), None, None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json["messages"][0]["message"], "first", "{path}");
    }
    let reply = request("GET", &broker.http("/chat/nowhere/messages"), None, None).await;
    assert_eq!(reply.json, json!({"messages": []}));
    assert_eq!(
        rooms(&broker).await,
        json!([
            room("Global", "System", &["alice"]),
            room("news", "poster", &[])
        ])
    );

    // Invalid input: 400 {"detail"}.
    for body in [
        json!({"username": "a;b", "message": "x"}),
        json!({"username": "x".repeat(21), "message": "x"}),
        json!({"username": "ok", "message": "   "}),
        json!({"username": "ok", "message": "y".repeat(1001)}),
        json!({"username": "ok"}),
    ] {
        let reply = request(
            "POST",
            &broker.http("/chat/send-message"),
            None,
            Some(&body),
        )
        .await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.json["detail"].is_string(), "{}", reply.text);
    }

    // Clearing Global needs the admin key.
    let reply = request("DELETE", &broker.http("/chat/clear-chat"), None, None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        request("GET", &broker.http("/chat/messages"), None, None)
            .await
            .json["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let reply = admin("DELETE", &broker.http("/chat/clear-chat"), None).await;
    assert_eq!(reply.status, 200);
    alice
        .expect(
            json!({"event_type": "room_chat_clear", "username": "admin", "room_name": "Global"}),
        )
        .await;
    let reply = request("GET", &broker.http("/chat/messages"), None, None).await;
    assert_eq!(reply.json, json!({"messages": []}));
}

#[actix_rt::test]
async fn the_http_api_answers_cross_origin_requests() {
    let broker = Broker::start();
    let (status, headers) = common::request_headers(
        "OPTIONS",
        &broker.http("/chat/send-message"),
        &[
            ("origin", "http://workshop.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("http://workshop.example")
    );
    let (status, headers) = common::request_headers(
        "GET",
        &broker.http("/chat/rooms"),
        &[("origin", "http://workshop.example")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("access-control-allow-origin"));
}
