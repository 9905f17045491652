//! A chat room commits in groups and never waits for the store (issue 17):
//! what arrives while a commit is in flight is committed together next,
//! broadcast in the order it came and only once committed; the room serves
//! everything else meanwhile; and if the store falls behind by more than
//! `chat.max_unsaved_messages`, further messages are refused, never queued
//! without bound. The store is made slow (a slow disk) and failing through
//! the test build's fault injection.

mod common;

use std::time::Duration;

use common::chat::{join, message};
use common::{
    chat_history, fail_store_writes, metric, slow_store_writes, Broker, Options, WsClient,
};
use serde_json::{json, Value};

/// How long one store write takes in these tests: long enough that every
/// frame a test sends arrives while the first commit is in flight.
const SLOW_DISK: Duration = Duration::from_millis(800);

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

const UNSAVED_REFUSALS: &str =
    "switchboard_limit_rejections_total{limit=\"max_unsaved_messages\",protocol=\"chat\"}";

fn joined(name: &str) -> Value {
    json!({"event_type": "user_join", "username": name})
}

fn typing(name: &str, is_typing: bool) -> Value {
    json!({"event_type": "typing", "username": name, "is_typing": is_typing})
}

fn system_error(text: &str) -> Value {
    json!({"event_type": "system", "severity": "error", "message": text})
}

async fn say(ws: &mut WsClient, name: &str, text: &str) {
    ws.send(&message(name, text).to_string()).await;
}

async fn alice_and_bob(broker: &Broker) -> (WsClient, WsClient) {
    let mut alice = join(broker, "alice", None).await;
    let bob = join(broker, "bob", None).await;
    assert_eq!(alice.recv_json().await, joined("bob"));
    (alice, bob)
}

#[actix_rt::test]
async fn the_room_serves_others_while_a_commit_is_in_flight() {
    let broker = Broker::start();
    let (mut alice, mut bob) = alice_and_bob(&broker).await;

    slow_store_writes(&broker, SLOW_DISK).await;
    say(&mut alice, "alice", "first").await;
    // While "first" is being committed, bob's typing goes through the room
    // at once and a newcomer enters: neither waits for the store.
    bob.send(&typing("bob", true).to_string()).await;
    assert_eq!(alice.recv_json().await, typing("bob", true));
    assert_eq!(bob.recv_json().await, typing("bob", true));
    let mut carol = WsClient::connect(&broker.ws_url("/chat/ws")).await;
    carol
        .send(&json!({"event_type": "connection_request", "username": "carol"}).to_string())
        .await;
    let mut history = None;
    loop {
        let frame = carol.recv_json().await;
        if frame == joined("carol") {
            break;
        }
        if frame["event_type"] == "message_history" {
            history = Some(frame);
        }
    }
    assert_eq!(
        history.expect("message_history")["messages"],
        json!([]),
        "an uncommitted message is not history yet"
    );
    assert_eq!(alice.recv_json().await, joined("carol"));
    assert_eq!(bob.recv_json().await, joined("carol"));

    // Then the commit lands and everyone, the newcomer included, gets it.
    for ws in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(ws.recv_json().await, message("alice", "first"));
    }
    slow_store_writes(&broker, Duration::ZERO).await;
    assert_eq!(chat_history(&broker, "Global").await, ["first"]);
}

#[actix_rt::test]
async fn messages_sent_during_a_commit_are_committed_together_in_order() {
    let broker = Broker::start();
    let (mut alice, mut bob) = alice_and_bob(&broker).await;

    slow_store_writes(&broker, SLOW_DISK).await;
    let said: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    for text in &said {
        say(&mut alice, "alice", text).await;
    }
    let expected: Vec<Value> = said.iter().map(|text| message("alice", text)).collect();
    for ws in [&mut alice, &mut bob] {
        for want in &expected {
            assert_eq!(&ws.recv_json().await, want);
        }
        ws.expect_silence(QUIET).await;
    }
    slow_store_writes(&broker, Duration::ZERO).await;
    assert_eq!(chat_history(&broker, "Global").await, said);
}

#[actix_rt::test]
async fn a_room_that_falls_too_far_behind_refuses_and_keeps_what_it_took() {
    let broker = Broker::with(Options::default().env("CHAT__MAX_UNSAVED_MESSAGES", "3"));
    let (mut alice, mut bob) = alice_and_bob(&broker).await;

    slow_store_writes(&broker, SLOW_DISK).await;
    // m0 is being committed; m1..m3 wait for the next commit; m4 and m5
    // find the room full and are refused at once, before anything lands.
    for i in 0..6 {
        say(&mut alice, "alice", &format!("m{i}")).await;
    }
    let busy = system_error(
        "The room is busy saving earlier messages, so yours was not sent; try again later",
    );
    assert_eq!(alice.recv_json().await, busy);
    assert_eq!(alice.recv_json().await, busy);
    for ws in [&mut alice, &mut bob] {
        for i in 0..4 {
            assert_eq!(ws.recv_json().await, message("alice", &format!("m{i}")));
        }
        ws.expect_silence(QUIET).await;
    }
    slow_store_writes(&broker, Duration::ZERO).await;
    assert_eq!(
        chat_history(&broker, "Global").await,
        ["m0", "m1", "m2", "m3"]
    );
    assert_eq!(metric(&broker, UNSAVED_REFUSALS).await, Some(2.0));
}

#[actix_rt::test]
async fn a_refused_group_is_refused_whole_and_the_next_one_lands() {
    let broker = Broker::start();
    let (mut alice, mut bob) = alice_and_bob(&broker).await;

    // m0 is committed slowly; m1 and m2 wait behind it, and by the time
    // they go to the store it refuses them, as one group.
    slow_store_writes(&broker, SLOW_DISK).await;
    for text in ["m0", "m1", "m2"] {
        say(&mut alice, "alice", text).await;
    }
    assert_eq!(alice.recv_json().await, message("alice", "m0"));
    assert_eq!(bob.recv_json().await, message("alice", "m0"));
    fail_store_writes(&broker, true).await;
    let lost = system_error("Your message could not be saved, so it was not sent; try again later");
    assert_eq!(alice.recv_json().await, lost);
    assert_eq!(alice.recv_json().await, lost);
    bob.expect_silence(QUIET).await;

    slow_store_writes(&broker, Duration::ZERO).await;
    fail_store_writes(&broker, false).await;
    say(&mut alice, "alice", "m3").await;
    assert_eq!(alice.recv_json().await, message("alice", "m3"));
    assert_eq!(bob.recv_json().await, message("alice", "m3"));
    assert_eq!(chat_history(&broker, "Global").await, ["m0", "m3"]);
}
