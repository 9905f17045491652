//! Permissioned rooms: a room is acknowledged only once the store committed
//! it (issue 16 §2), and read receipts name only message ids the room has
//! handed out, also right after a restart (§6).

mod common;

use std::time::Duration;

use common::rooms::{enter, listed, options, RoomsUser as User, ALICE, BOB};
use common::{admin, fail_store_writes, Broker};
use serde_json::json;

const NOT_SAVED: &str = "the room could not be saved, so it was not created; try again later";

#[actix_rt::test]
async fn a_room_the_store_refuses_is_never_created_over_the_websocket() {
    // One room per creator: the refused creation must not use it up.
    let broker = Broker::with(options().env("ROOMS__MAX_ROOMS_PER_CREATOR", "1"));
    let mut alice = User::connect(&broker, ALICE).await;

    fail_store_writes(&broker, true).await;
    alice
        .send(json!({"type": "create", "name": "doomed", "closed": true}))
        .await;
    alice.expect_error(NOT_SAVED).await;
    // No `created`, no `enter`: the room does not exist.
    alice.silent().await;
    assert!(listed(&broker).await.is_empty());

    // The connection keeps working, and the store taking writes again lets
    // the same creator create its one room.
    fail_store_writes(&broker, false).await;
    let room = alice.create("kept", true).await;
    assert_eq!(listed(&broker).await, [("kept".to_owned(), true)]);
    alice
        .send(json!({"type": "message", "content": "hi", "room_id": room}))
        .await;
    alice.message(ALICE, "hi", &room).await;

    // After a restart only the committed room is there.
    drop(alice);
    let data = broker.stop();
    let broker = Broker::with(options().data(&data.path));
    assert_eq!(listed(&broker).await, [("kept".to_owned(), true)]);
}

#[actix_rt::test]
async fn a_room_the_store_refuses_is_never_created_over_http() {
    let broker = Broker::with(options());
    fail_store_writes(&broker, true).await;
    let refused = admin(
        "POST",
        &broker.http("/api/rooms"),
        Some(&json!({"name": "ops", "closed": false})),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.json, json!({ "error": NOT_SAVED }));
    assert!(listed(&broker).await.is_empty());

    fail_store_writes(&broker, false).await;
    let created = admin(
        "POST",
        &broker.http("/api/rooms"),
        Some(&json!({"name": "ops", "closed": false})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let room = created.json["room_id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.json,
        json!({"room_id": room, "name": "ops", "closed": false})
    );
    let mut bob = User::connect(&broker, BOB).await;
    bob.enter(&room, &mut []).await;

    drop(bob);
    let data = broker.stop();
    let broker = Broker::with(options().data(&data.path));
    assert_eq!(listed(&broker).await, [("ops".to_owned(), false)]);
}

/// Sends `message` and returns its id (checked from the sender's echo).
async fn say(user: &mut User, content: &str, room: &str) -> u64 {
    user.send(json!({"type": "message", "content": content, "room_id": room}))
        .await;
    let id = user.id;
    user.message(id, content, room).await["message_id"]
        .as_u64()
        .unwrap()
}

/// Sends a read receipt for `message_id`.
async fn read(user: &mut User, message_id: u64, room: &str) {
    user.ws
        .send(&json!({"type": "read", "message_id": message_id, "room_id": room}).to_string())
        .await;
}

#[actix_rt::test]
async fn read_receipts_name_only_ids_the_room_handed_out_also_after_a_restart() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let room = alice.create("log", false).await;
    let receipt =
        |id: u64| json!({"type": "read", "message_id": id, "user_id": ALICE, "room_id": room});

    // Before any message, no id was handed out.
    read(&mut alice, 1, &room).await;
    alice.expect_error("unknown message_id").await;
    let first = say(&mut alice, "one", &room).await;
    let second = say(&mut alice, "two", &room).await;
    read(&mut alice, second, &room).await;
    alice.expect(receipt(second)).await;
    read(&mut alice, first, &room).await;
    alice.expect(receipt(first)).await;
    // The next id is not handed out yet, though it is reserved in the store.
    for unissued in [second + 1, second + 500, u64::MAX] {
        read(&mut alice, unissued, &room).await;
        alice.expect_error("unknown message_id").await;
    }
    read(&mut alice, 0, &room).await;
    alice.expect_error("unknown message_id").await;

    drop(alice);
    let data = broker.stop();
    let broker = Broker::with(options().data(&data.path));
    let mut alice = User::connect(&broker, ALICE).await;
    alice.send(json!({"type": "enter", "room_id": room})).await;
    alice.expect(enter(ALICE, &room)).await;
    // Ids the earlier process handed out still take receipts.
    read(&mut alice, second, &room).await;
    alice.expect(receipt(second)).await;
    // The new process starts past everything the earlier one could have
    // handed out (its reservation); the first id it hands out takes a
    // receipt, the one after it does not yet.
    let third = say(&mut alice, "three", &room).await;
    assert!(third > second, "{third} after {second}");
    read(&mut alice, third, &room).await;
    alice.expect(receipt(third)).await;
    read(&mut alice, third + 1, &room).await;
    alice.expect_error("unknown message_id").await;
    alice.ws.expect_silence(Duration::from_millis(200)).await;
}
