//! Permissioned rooms end to end (PROTOCOLS.md §5): real tokens, real
//! clients, grants and bans that survive a restart.

mod common;

use common::rooms::{enter, exit, RoomsUser as User, ALICE, BOB, CAROL};
use common::tokens::{options, upgrade_refused};
use common::{admin, request, Broker};
use serde_json::json;

/// Reads a `message` frame and returns its id, checking the rest.
async fn message_id(user: &mut User, from: &str, content: &str, room: &str) -> u64 {
    let frame = user.ws.recv_json().await;
    assert_eq!(frame["type"], "message", "{frame}");
    assert_eq!(
        (&frame["content"], &frame["user_id"], &frame["room_id"]),
        (&json!(content), &json!(from), &json!(room))
    );
    let time = frame["time"].as_i64().expect("integer time");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now - time).abs() < 60_000,
        "time is UNIX milliseconds: {time}"
    );
    frame["message_id"].as_u64().expect("integer message_id")
}

#[actix_rt::test]
async fn each_connection_gets_its_own_session_key_and_must_use_it() {
    let broker = Broker::with(options());
    upgrade_refused(&broker.ws_url("/rooms"), None).await;
    let mut alice = User::connect(&broker, ALICE).await;
    let alice_again = User::connect(&broker, ALICE).await;
    assert_ne!(alice.key, alice_again.key);

    for command in [
        json!({"type": "create", "key": "wrong", "name": "x"}),
        json!({"type": "create", "name": "x"}),
        json!({"type": "create", "key": alice_again.key, "name": "x"}),
    ] {
        alice.ws.send(&command.to_string()).await;
        alice.expect_error("invalid session key").await;
    }
    // Bad input: an error, the connection stays open.
    for (text, reason) in [
        ("not json", "invalid JSON"),
        ("{}", "missing type"),
        (r#"{"type":"created"}"#, "unknown type `created`"),
    ] {
        alice.ws.send(text).await;
        alice.expect_error(reason).await;
    }
    alice.ws.send(r#"{"type":"enter","key":"x"}"#).await;
    let reply = alice.ws.recv_json().await;
    assert_eq!(reply["type"], "error");
    alice.ws.send(r#"{"type":"ping","time":42}"#).await;
    alice.expect(json!({"type": "pong", "time": 42})).await;
}

#[actix_rt::test]
async fn members_message_and_mark_read_and_outsiders_cannot() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let mut bob = User::connect(&broker, BOB).await;
    let mut carol = User::connect(&broker, CAROL).await;
    let room = alice.create("lobby", false).await;

    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(enter(BOB, &room)).await;
    alice.expect(enter(BOB, &room)).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("you are already in this room").await;

    // Carol has not entered: she can neither send nor mark read.
    carol
        .send(json!({"type": "message", "content": "hi", "room_id": room}))
        .await;
    carol.expect_error("you have not entered this room").await;
    carol
        .ws
        .send(&json!({"type": "read", "message_id": 1, "room_id": room}).to_string())
        .await;
    carol.expect_error("you have not entered this room").await;
    let nowhere = uuid::Uuid::new_v4().to_string();
    carol
        .send(json!({"type": "enter", "room_id": nowhere}))
        .await;
    carol.expect_error("unknown room").await;

    // Messages reach everyone in the room, the sender included, with increasing ids.
    bob.send(json!({"type": "message", "content": "first", "room_id": room}))
        .await;
    let first = message_id(&mut bob, BOB, "first", &room).await;
    assert_eq!(message_id(&mut alice, BOB, "first", &room).await, first);
    alice
        .send(json!({"type": "message", "content": "second", "room_id": room}))
        .await;
    let second = message_id(&mut alice, ALICE, "second", &room).await;
    assert_eq!(message_id(&mut bob, ALICE, "second", &room).await, second);
    assert!(second > first);
    carol.silent().await;

    // Read receipts go to the room.
    alice
        .ws
        .send(&json!({"type": "read", "message_id": first, "room_id": room}).to_string())
        .await;
    let receipt = json!({"type": "read", "message_id": first, "user_id": ALICE, "room_id": room});
    alice.expect(receipt.clone()).await;
    bob.expect(receipt).await;
    alice
        .ws
        .send(&json!({"type": "read", "message_id": 999, "room_id": room}).to_string())
        .await;
    alice.expect_error("unknown message_id").await;

    // Exit: acknowledged to the leaver, told to the room; then no more sending.
    bob.send(json!({"type": "exit", "room_id": room})).await;
    bob.expect(exit(BOB, &room)).await;
    alice.expect(exit(BOB, &room)).await;
    bob.send(json!({"type": "message", "content": "late", "room_id": room}))
        .await;
    bob.expect_error("you have not entered this room").await;

    let reply = request("GET", &broker.http("/api/rooms"), None, None).await;
    assert_eq!(
        reply.json,
        json!({"rooms": [{"room_id": room, "name": "lobby", "closed": false, "members": [ALICE]}]})
    );
}

#[actix_rt::test]
async fn a_closed_room_needs_an_invite_from_an_admin() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let mut bob = User::connect(&broker, BOB).await;
    let mut carol = User::connect(&broker, CAROL).await;
    let room = alice.create("secret", true).await;

    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("the room is closed: you need an invite")
        .await;
    carol
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    carol
        .expect_error("only the room's admins may do that")
        .await;
    bob.silent().await;

    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    bob.expect(json!({"type": "invite", "user_id": ALICE, "room_id": room}))
        .await;
    alice.silent().await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(enter(BOB, &room)).await;
    alice.expect(enter(BOB, &room)).await;

    // In an open room anyone may invite.
    let open = bob.create("open", false).await;
    carol
        .send(json!({"type": "invite", "user_id": ALICE, "room_id": open}))
        .await;
    alice
        .expect(json!({"type": "invite", "user_id": CAROL, "room_id": open}))
        .await;
}

#[actix_rt::test]
async fn admins_kick_and_a_permanent_kick_is_a_ban_that_survives_restarts() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let mut bob = User::connect(&broker, BOB).await;
    let room = alice.create("club", false).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(enter(BOB, &room)).await;
    alice.expect(enter(BOB, &room)).await;

    bob.send(json!({"type": "kick", "user_id": ALICE, "room_id": room, "permanent": false}))
        .await;
    bob.expect_error("only the room's admins may do that").await;

    // A kick: the kicked user is told and leaves; the room sees it go.
    alice
        .send(json!({"type": "kick", "user_id": BOB, "room_id": room, "message": "cool off", "permanent": false}))
        .await;
    bob.expect(json!({"type": "kick", "room_id": room, "message": "cool off", "permanent": false}))
        .await;
    alice.expect(exit(BOB, &room)).await;
    bob.send(json!({"type": "message", "content": "hey", "room_id": room}))
        .await;
    bob.expect_error("you have not entered this room").await;
    // Not permanent: bob may come back.
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(enter(BOB, &room)).await;
    alice.expect(enter(BOB, &room)).await;

    // A permanent kick is a ban.
    alice
        .send(json!({"type": "kick", "user_id": BOB, "room_id": room, "permanent": true}))
        .await;
    bob.expect(json!({"type": "kick", "room_id": room, "message": null, "permanent": true}))
        .await;
    alice.expect(exit(BOB, &room)).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("you are banned from this room").await;
    drop(bob);
    let mut bob = User::connect(&broker, BOB).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("you are banned from this room").await;
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    alice
        .expect_error("that user is banned from this room")
        .await;
    drop((alice, bob));

    let data = broker.stop();
    let broker = Broker::with(options().data(&data.path));
    let mut bob = User::connect(&broker, BOB).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect_error("you are banned from this room").await;
    // Alice is still the room's admin after the restart.
    let mut alice = User::connect(&broker, ALICE).await;
    alice.send(json!({"type": "enter", "room_id": room})).await;
    alice.expect(enter(ALICE, &room)).await;
    alice
        .send(json!({"type": "kick", "user_id": CAROL, "room_id": room, "permanent": true}))
        .await;
    alice.silent().await;
}

#[actix_rt::test]
async fn message_ids_keep_increasing_across_restarts() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let room = alice.create("log", false).await;
    let mut last = 0;
    for content in ["a", "b"] {
        alice
            .send(json!({"type": "message", "content": content, "room_id": room}))
            .await;
        let id = message_id(&mut alice, ALICE, content, &room).await;
        assert!(id > last, "{id} after {last}");
        last = id;
    }
    drop(alice);
    let data = broker.stop();

    let broker = Broker::with(options().data(&data.path));
    let mut alice = User::connect(&broker, ALICE).await;
    alice.send(json!({"type": "enter", "room_id": room})).await;
    alice.expect(enter(ALICE, &room)).await;
    alice
        .send(json!({"type": "message", "content": "after", "room_id": room}))
        .await;
    let id = message_id(&mut alice, ALICE, "after", &room).await;
    assert!(id > last, "{id} after the restart, {last} before");
}

#[actix_rt::test]
async fn a_client_that_stops_answering_pings_is_disconnected() {
    let broker = Broker::with(
        options()
            .env("ROOMS__PING_INTERVAL", "200ms")
            .env("ROOMS__PONG_TIMEOUT", "300ms"),
    );
    let mut alice = User::connect(&broker, ALICE).await;
    // Answer three pings with the same time: still connected.
    for _ in 0..3 {
        let ping = alice.ws.recv_json().await;
        assert_eq!(ping["type"], "ping", "{ping}");
        let time = ping["time"].as_i64().expect("integer time");
        alice
            .ws
            .send(&json!({"type": "pong", "time": time}).to_string())
            .await;
    }
    // A wrong time does not count; then silence.
    let ping = alice.ws.recv_json().await;
    assert_eq!(ping["type"], "ping");
    alice
        .ws
        .send(&json!({"type": "pong", "time": 1}).to_string())
        .await;
    let closed = alice.ws.recv_close().await;
    assert_eq!(closed.code, 1001, "{closed:?}");
}

#[actix_rt::test]
async fn the_http_api_lists_and_creates_rooms() {
    let broker = Broker::with(options());
    let reply = request(
        "POST",
        &broker.http("/api/rooms"),
        None,
        Some(&json!({"name": "ops", "closed": true})),
    )
    .await;
    assert_eq!(reply.status, 401);
    let reply = admin(
        "POST",
        &broker.http("/api/rooms"),
        Some(&json!({"name": "ops", "closed": true, "admins": [ALICE]})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let room = reply.json["room_id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.json,
        json!({"room_id": room, "name": "ops", "closed": true})
    );
    let reply = admin(
        "POST",
        &broker.http("/api/rooms"),
        Some(&json!({"name": " "})),
    )
    .await;
    assert_eq!(reply.status, 400);

    // The named admin may invite to the closed room.
    let mut alice = User::connect(&broker, ALICE).await;
    let mut bob = User::connect(&broker, BOB).await;
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    bob.expect(json!({"type": "invite", "user_id": ALICE, "room_id": room}))
        .await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(enter(BOB, &room)).await;
    let reply = request("GET", &broker.http("/api/rooms"), None, None).await;
    assert_eq!(
        reply.json,
        json!({"rooms": [{"room_id": room, "name": "ops", "closed": true, "members": [BOB]}]})
    );
}

#[actix_rt::test]
async fn a_client_in_too_many_rooms_is_refused_until_a_room_lets_it_go() {
    let broker = Broker::with(options().env("LIMITS__MAX_ROOMS_PER_CLIENT", "2"));
    let mut alice = User::connect(&broker, ALICE).await;
    let mut bob = User::connect(&broker, BOB).await;
    let first = alice.create("one", false).await;
    let second = alice.create("two", false).await;
    let third = bob.create("three", false).await;

    // Two rooms held: a third, created or entered, is refused.
    alice
        .send(json!({"type": "create", "name": "four", "closed": false}))
        .await;
    alice
        .expect_error("you are in too many rooms: at most 2 at once")
        .await;
    alice.send(json!({"type": "enter", "room_id": third})).await;
    alice
        .expect_error("you are in too many rooms: at most 2 at once")
        .await;
    // The connection stays usable in the rooms it holds.
    alice
        .send(json!({"type": "message", "content": "still here", "room_id": first}))
        .await;
    assert_eq!(alice.ws.recv_json().await["content"], "still here");

    // Leaving one frees a slot.
    alice.send(json!({"type": "exit", "room_id": second})).await;
    alice.expect(exit(ALICE, &second)).await;
    alice.send(json!({"type": "enter", "room_id": third})).await;
    alice.expect(enter(ALICE, &third)).await;
    bob.expect(enter(ALICE, &third)).await;

    // So does being kicked: the room that let her go no longer counts.
    bob.send(json!({"type": "kick", "user_id": ALICE, "room_id": third, "permanent": false}))
        .await;
    alice
        .expect(json!({"type": "kick", "room_id": third, "message": null, "permanent": false}))
        .await;
    bob.expect(exit(ALICE, &third)).await;
    alice
        .send(json!({"type": "enter", "room_id": second}))
        .await;
    alice.expect(enter(ALICE, &second)).await;
}
