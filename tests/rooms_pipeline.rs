//! Permissioned rooms, pipelined (issue 17): a client's in-room commands go
//! straight to the room it is in and are not answered one round trip at a
//! time, yet everything it gets back keeps the order of its commands: the
//! room's broadcasts, its refusals and the connection's own replies.

mod common;

use common::rooms::{enter, exit, options, RoomsUser as User, ALICE, BOB};
use common::Broker;
use serde_json::json;

/// How many messages the client sends before reading anything.
const BURST: usize = 200;

#[actix_rt::test]
async fn messages_sent_without_waiting_come_back_in_order_and_refusals_after_them() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let mut bob = User::connect(&broker, BOB).await;
    let room = alice.create("firehose", false).await;
    bob.enter(&room, &mut [&mut alice]).await;
    // A room that exists but alice is not in, and one that does not exist.
    let elsewhere = bob.create("elsewhere", false).await;
    let nowhere = uuid::Uuid::new_v4().to_string();

    for n in 0..BURST {
        alice
            .send(json!({"type": "message", "content": format!("m{n}"), "room_id": room}))
            .await;
    }
    alice
        .send(json!({"type": "message", "content": "stray", "room_id": elsewhere}))
        .await;
    alice
        .send(json!({"type": "message", "content": "lost", "room_id": nowhere}))
        .await;
    alice.ws.send(r#"{"type":"ping","time":7}"#).await;

    // Every message, to the sender and to the other member, in the order
    // sent, each with a larger id than the one before and the same id for both.
    let mut last = 0;
    for n in 0..BURST {
        let content = format!("m{n}");
        let mine = alice.message(ALICE, &content, &room).await;
        let id = mine["message_id"].as_u64().unwrap();
        assert!(id > last, "message {n} has id {id} after {last}");
        last = id;
        assert_eq!(bob.message(ALICE, &content, &room).await, mine);
    }
    // Then the refusals, in order, and the pong behind them.
    alice.expect_error("you have not entered this room").await;
    alice.expect_error("unknown room").await;
    alice.expect(json!({"type": "pong", "time": 7})).await;
    alice.silent().await;
    bob.silent().await;
}

#[actix_rt::test]
async fn a_refusal_keeps_its_place_among_commands_sent_without_waiting() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let room = alice.create("steps", false).await;

    alice
        .send(json!({"type": "message", "content": "a", "room_id": room}))
        .await;
    alice
        .ws
        .send(&json!({"type": "read", "message_id": 999, "room_id": room}).to_string())
        .await;
    alice
        .send(json!({"type": "message", "content": "b", "room_id": room}))
        .await;
    alice.ws.send(r#"{"type":"ping","time":8}"#).await;
    alice.send(json!({"type": "exit", "room_id": room})).await;
    alice
        .send(json!({"type": "message", "content": "c", "room_id": room}))
        .await;
    alice.ws.send("not json").await;

    let first = alice.message(ALICE, "a", &room).await;
    alice.expect_error("unknown message_id").await;
    let second = alice.message(ALICE, "b", &room).await;
    assert!(second["message_id"].as_u64() > first["message_id"].as_u64());
    alice.expect(json!({"type": "pong", "time": 8})).await;
    alice.expect(exit(ALICE, &room)).await;
    alice.expect_error("you have not entered this room").await;
    alice.expect_error("invalid JSON").await;

    // Entering again waits for nothing outstanding and works as before.
    alice.send(json!({"type": "enter", "room_id": room})).await;
    alice.expect(enter(ALICE, &room)).await;
    alice.silent().await;
}
