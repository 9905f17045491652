//! Caps on what anyone can make the workshop chat hold or do (issue 16 §3):
//! `chat.max_rooms` in total, `chat.room_creations_per_minute` per
//! connection, and a per-address rate on the chat HTTP API. Each refusal is
//! exact, counted in `switchboard_limit_rejections_total`, and leaves
//! everything else working. Also the history endpoint's name check (§6).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::chat::{create_rejected, create_room, join, join_rejected, message, room, rooms};
use common::{chat_history, metric, request, request_headers, Broker, Options};
use serde_json::{json, Value};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

fn joined(name: &str) -> Value {
    json!({"event_type": "user_join", "username": name})
}

fn created(name: &str, creator: &str) -> Value {
    json!({"event_type": "room_create", "room": room(name, creator, &[creator])})
}

fn rejections(limit: &str) -> String {
    format!("switchboard_limit_rejections_total{{limit=\"{limit}\",protocol=\"chat\"}}")
}

async fn post(broker: &Broker, path: &str, username: &str, text: &str) -> common::Reply {
    let body = json!({"username": username, "message": text});
    request("POST", &broker.http(path), None, Some(&body)).await
}

#[actix_rt::test]
async fn max_rooms_refuses_every_way_of_creating_one_more_room() {
    let broker = Broker::with(Options::default().env("CHAT__MAX_ROOMS", "3"));
    let mut alice = join(&broker, "alice", None).await;
    let mut bob = join(&broker, "bob", None).await;
    assert_eq!(alice.recv_json().await, joined("bob"));
    for name in ["a", "b"] {
        alice.send(&create_room(name)).await;
        assert_eq!(alice.recv_json().await, created(name, "alice"));
        assert_eq!(bob.recv_json().await, created(name, "alice"));
    }
    let full = |room: &str| {
        format!("Room {room} was not created: the chat has reached its limit of 3 rooms")
    };

    // Global, a and b: a fourth room is refused over the WebSocket ...
    alice.send(&create_room("c")).await;
    assert_eq!(alice.recv_json().await, create_rejected(&full("c")));
    // ... by connecting to a new room ...
    assert_eq!(join_rejected(&broker, "carol", "d").await, full("d"));
    // ... and by posting to a new room over HTTP.
    let reply = post(&broker, "/chat/e/send-message", "poster", "hi").await;
    assert_eq!(
        (reply.status, reply.json),
        (409, json!({"detail": full("e")}))
    );
    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;
    assert_eq!(
        rooms(&broker).await,
        json!([
            room("Global", "System", &["alice", "bob"]),
            room("a", "alice", &[]),
            room("b", "alice", &[]),
        ])
    );
    assert_eq!(metric(&broker, &rejections("max_rooms")).await, Some(3.0));

    // The rooms that exist keep working, and the refused name is free.
    let reply = post(&broker, "/chat/a/send-message", "poster", "still here").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut carol = join(&broker, "carol", Some("a")).await;
    carol.send(&message("carol", "hello a").to_string()).await;
    assert_eq!(carol.recv_json().await, message("carol", "hello a"));
    assert_eq!(chat_history(&broker, "a").await, ["still here", "hello a"]);
    alice
        .send(&message("alice", "hello Global").to_string())
        .await;
    assert_eq!(alice.recv_json().await, message("alice", "hello Global"));
    assert_eq!(bob.recv_json().await, message("alice", "hello Global"));
}

#[actix_rt::test]
async fn a_connection_may_create_only_so_many_rooms_a_minute() {
    let broker = Broker::with(Options::default().env("CHAT__ROOM_CREATIONS_PER_MINUTE", "2"));
    let mut alice = join(&broker, "alice", None).await;
    let mut bob = join(&broker, "bob", None).await;
    assert_eq!(alice.recv_json().await, joined("bob"));
    for name in ["r1", "r2"] {
        alice.send(&create_room(name)).await;
        assert_eq!(alice.recv_json().await, created(name, "alice"));
        assert_eq!(bob.recv_json().await, created(name, "alice"));
    }

    alice.send(&create_room("r3")).await;
    assert_eq!(
        alice.recv_json().await,
        create_rejected("Room r3 was not created: you may create at most 2 rooms per minute")
    );
    bob.expect_silence(QUIET).await;
    assert_eq!(
        metric(&broker, &rejections("room_creations_per_minute")).await,
        Some(1.0)
    );

    // Another connection is not affected, and alice's connection still works.
    bob.send(&create_room("r3")).await;
    assert_eq!(bob.recv_json().await, created("r3", "bob"));
    assert_eq!(alice.recv_json().await, created("r3", "bob"));
    alice
        .send(&message("alice", "still talking").to_string())
        .await;
    assert_eq!(alice.recv_json().await, message("alice", "still talking"));
    assert_eq!(bob.recv_json().await, message("alice", "still talking"));
    alice
        .send(&json!({"event_type": "room_switch_request", "room_name": "r3"}).to_string())
        .await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "room_switch_response", "room_name": "r3"})
    );
    assert_eq!(
        rooms(&broker).await,
        json!([
            room("Global", "System", &["bob"]),
            room("r1", "alice", &[]),
            room("r2", "alice", &[]),
            room("r3", "bob", &["alice"]),
        ])
    );
}

/// `GET {path}` over a TCP connection from `source` (any 127.x address is
/// local); answers the status code.
fn get_from(source: &str, broker: &Broker, path: &str) -> u16 {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: SocketAddr = source.parse().expect("source address");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    let broker: SocketAddr = broker.addr.parse().expect("broker address");
    socket.connect(&broker.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {broker}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"))
}

#[actix_rt::test]
async fn the_chat_http_api_is_rate_limited_per_address() {
    let broker = Broker::with(
        Options::default()
            .env("CHAT__HTTP_REQUESTS_PER_SECOND", "1")
            .env("CHAT__HTTP_BURST", "3"),
    );
    let mut alice = join(&broker, "alice", None).await;

    // The burst: three requests from this address.
    assert_eq!(rooms(&broker).await[0]["room_name"], "Global");
    let reply = post(&broker, "/chat/send-message", "poster", "one").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(alice.recv_json().await, message("poster", "one"));
    let (status, headers) = request_headers(
        "GET",
        &broker.http("/chat/messages"),
        &[("origin", "http://workshop.example")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("access-control-allow-origin"));

    // Over it: 429 with the detail, CORS headers kept, nothing delivered.
    let reply = post(&broker, "/chat/send-message", "poster", "two").await;
    assert_eq!(
        (reply.status, reply.json),
        (
            429,
            json!({"detail": "Too many requests from this address; please slow down"})
        )
    );
    let (status, headers) = request_headers(
        "GET",
        &broker.http("/chat/rooms"),
        &[("origin", "http://workshop.example")],
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("http://workshop.example")
    );
    alice.expect_silence(QUIET).await;
    assert_eq!(
        metric(&broker, &rejections("http_requests_per_second")).await,
        Some(2.0)
    );

    // Another address has its own bucket; WebSocket users are not affected.
    assert_eq!(get_from("127.0.0.2:0", &broker, "/chat/rooms"), 200);
    alice
        .send(&message("alice", "ws still works").to_string())
        .await;
    assert_eq!(alice.recv_json().await, message("alice", "ws still works"));

    // A second later the address has a token again.
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    let reply = post(&broker, "/chat/send-message", "poster", "three").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(alice.recv_json().await, message("poster", "three"));
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        chat_history(&broker, "Global").await,
        ["one", "ws still works", "three"]
    );
}

#[actix_rt::test]
async fn history_of_an_invalid_room_name_is_400_and_of_an_unknown_one_empty() {
    let broker = Broker::start();
    let long = "x".repeat(21);
    for name in ["bad!name", long.as_str(), "%20%20"] {
        for suffix in ["messages", "messages/"] {
            let path = format!("/chat/{name}/{suffix}");
            let reply = request("GET", &broker.http(&path), None, None).await;
            assert_eq!(
                (reply.status, reply.json),
                (400, json!({"detail": "invalid room name"})),
                "{path}"
            );
        }
    }
    for path in ["/chat/nowhere/messages", "/chat/nowhere/messages/"] {
        let reply = request("GET", &broker.http(path), None, None).await;
        assert_eq!((reply.status, reply.json), (200, json!({"messages": []})));
    }
    // A room that exists still answers its history.
    let reply = post(&broker, "/chat/news/send-message", "poster", "first").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(chat_history(&broker, "news").await, ["first"]);
}
