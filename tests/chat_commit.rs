//! The workshop chat acknowledges only what the store committed (issue 16
//! §2): a room is announced (`room_create`) only once it is saved, an HTTP
//! post or clear answers 200 only once it is saved, and whatever the store
//! refuses is neither broadcast nor there afterwards. The store is made to
//! refuse writes through the test build's fault injection.

mod common;

use std::time::Duration;

use common::chat::{create_rejected, create_room, join, join_rejected, message, room, rooms};
use common::{admin, chat_history, fail_store_writes, request, Broker, Options, WsClient};
use serde_json::{json, Value};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

fn joined(name: &str) -> Value {
    json!({"event_type": "user_join", "username": name})
}

fn not_saved(room: &str) -> String {
    format!("Room {room} could not be saved, so it was not created; try again later")
}

#[actix_rt::test]
async fn a_room_create_the_store_refuses_is_rejected_and_never_announced() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    let mut bob = join(&broker, "bob", None).await;
    assert_eq!(alice.recv_json().await, joined("bob"));

    fail_store_writes(&broker, true).await;
    alice.send(&create_room("attic")).await;
    assert_eq!(
        alice.recv_json().await,
        create_rejected(&not_saved("attic"))
    );
    alice.expect_silence(QUIET).await;
    bob.expect_silence(QUIET).await;
    assert_eq!(
        rooms(&broker).await,
        json!([room("Global", "System", &["alice", "bob"])])
    );
    // The room does not exist: switching to it is refused.
    alice
        .send(&json!({"event_type": "room_switch_request", "room_name": "attic"}).to_string())
        .await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "room_switch_reject", "response": "Room attic not found"})
    );

    // Once the store takes writes again the same name can be created, and
    // only then is it announced to everyone.
    fail_store_writes(&broker, false).await;
    alice.send(&create_room("attic")).await;
    let created = json!({"event_type": "room_create", "room": room("attic", "alice", &["alice"])});
    assert_eq!(alice.recv_json().await, created);
    assert_eq!(bob.recv_json().await, created);
    alice.expect_silence(QUIET).await;

    // The store holds exactly the committed rooms.
    drop((alice, bob));
    let data = broker.stop();
    let broker = Broker::with(Options::default().data(&data.path));
    assert_eq!(
        rooms(&broker).await,
        json!([room("Global", "System", &[]), room("attic", "alice", &[])])
    );
}

#[actix_rt::test]
async fn connecting_to_a_new_room_the_store_refuses_is_rejected_and_creates_nothing() {
    let broker = Broker::start();
    let mut bob = join(&broker, "bob", None).await;

    fail_store_writes(&broker, true).await;
    assert_eq!(
        join_rejected(&broker, "carol", "cellar").await,
        not_saved("cellar")
    );
    bob.expect_silence(QUIET).await;
    assert_eq!(
        rooms(&broker).await,
        json!([room("Global", "System", &["bob"])])
    );
    // The name was given back, and existing rooms work with the store down.
    let mut carol = join(&broker, "carol", None).await;
    assert_eq!(bob.recv_json().await, joined("carol"));

    fail_store_writes(&broker, false).await;
    let mut dave = WsClient::connect(&broker.ws_url("/chat/ws/cellar")).await;
    dave.send(&json!({"event_type": "connection_request", "username": "dave"}).to_string())
        .await;
    assert_eq!(dave.recv_json().await["event_type"], "connection_response");
    assert_eq!(
        dave.recv_json().await,
        json!({"event_type": "all_rooms", "rooms": [
            room("Global", "System", &["bob", "carol"]),
            room("cellar", "dave", &["dave"]),
        ]})
    );
    let created = json!({"event_type": "room_create", "room": room("cellar", "dave", &["dave"])});
    assert_eq!(dave.recv_json().await, created);
    assert_eq!(bob.recv_json().await, created);
    assert_eq!(carol.recv_json().await, created);
}

#[actix_rt::test]
async fn http_posts_the_store_refuses_answer_503_and_broadcast_nothing() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    alice.send(&create_room("den")).await;
    assert_eq!(alice.recv_json().await["event_type"], "room_create");
    let post = |path: &str, text: &str| {
        let url = broker.http(path);
        let body = json!({"username": "poster", "message": text});
        async move { request("POST", &url, None, Some(&body)).await }
    };

    fail_store_writes(&broker, true).await;
    let not_sent = json!({
        "detail": "The message could not be saved, so it was not sent; try again later"
    });
    for path in ["/chat/send-message", "/chat/den/send-message"] {
        let reply = post(path, "lost").await;
        assert_eq!((reply.status, &reply.json), (503, &not_sent), "{path}");
    }
    // A new room the store refuses: 503, not created, not announced.
    let reply = post("/chat/porch/send-message", "lost").await;
    assert_eq!(
        (reply.status, reply.json),
        (503, json!({"detail": not_saved("porch")}))
    );
    alice.expect_silence(QUIET).await;
    assert!(chat_history(&broker, "Global").await.is_empty());
    assert!(chat_history(&broker, "den").await.is_empty());
    assert_eq!(
        rooms(&broker).await,
        json!([
            room("Global", "System", &["alice"]),
            room("den", "alice", &[])
        ])
    );

    // The store back: the same posts are stored, broadcast and answered 200.
    fail_store_writes(&broker, false).await;
    let sent = json!({"status": "success", "message": "Message sent"});
    let reply = post("/chat/send-message", "kept").await;
    assert_eq!((reply.status, reply.json), (200, sent.clone()));
    assert_eq!(alice.recv_json().await, message("poster", "kept"));
    let reply = post("/chat/porch/send-message", "first").await;
    assert_eq!((reply.status, reply.json), (200, sent));
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "room_create", "room": room("porch", "poster", &["poster"])})
    );
    assert_eq!(chat_history(&broker, "Global").await, ["kept"]);
    assert_eq!(chat_history(&broker, "porch").await, ["first"]);
}

#[actix_rt::test]
async fn a_clear_chat_the_store_refuses_answers_503_and_keeps_the_history() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    alice.send(&message("alice", "keep me").to_string()).await;
    assert_eq!(alice.recv_json().await, message("alice", "keep me"));

    fail_store_writes(&broker, true).await;
    let reply = admin("DELETE", &broker.http("/chat/clear-chat"), None).await;
    assert_eq!(
        (reply.status, reply.json),
        (
            503,
            json!({"detail": "The chat could not be cleared, so its history is kept; try again later"})
        )
    );
    alice.expect_silence(QUIET).await;
    assert_eq!(chat_history(&broker, "Global").await, ["keep me"]);

    fail_store_writes(&broker, false).await;
    let reply = admin("DELETE", &broker.http("/chat/clear-chat"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "room_chat_clear", "username": "admin", "room_name": "Global"})
    );
    assert!(chat_history(&broker, "Global").await.is_empty());
}

#[actix_rt::test]
async fn a_websocket_message_the_store_refuses_is_not_relayed_and_the_sender_is_told() {
    let broker = Broker::start();
    let mut alice = join(&broker, "alice", None).await;
    let mut bob = join(&broker, "bob", None).await;
    assert_eq!(alice.recv_json().await, joined("bob"));

    fail_store_writes(&broker, true).await;
    alice.send(&message("alice", "lost").to_string()).await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "system", "severity": "error",
               "message": "Your message could not be saved, so it was not sent; try again later"})
    );
    bob.expect_silence(QUIET).await;
    assert!(chat_history(&broker, "Global").await.is_empty());

    fail_store_writes(&broker, false).await;
    alice.send(&message("alice", "kept").to_string()).await;
    assert_eq!(alice.recv_json().await, message("alice", "kept"));
    assert_eq!(bob.recv_json().await, message("alice", "kept"));
    assert_eq!(chat_history(&broker, "Global").await, ["kept"]);
}
