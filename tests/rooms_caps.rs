//! Caps on what a permissioned-rooms user can make the broker keep (issue 16
//! §3): pending invites per room, rooms per creator. Each refusal is an
//! exact `error`, counted in the metric, creates nothing, and leaves
//! everything else working.

mod common;

use std::time::Duration;

use common::rooms::{enter, invite, listed, options, RoomsUser as User, ALICE, BOB, CAROL, DAVE};
use common::{admin, wait_for_metric, Broker};
use serde_json::json;

const PENDING_CAP: &str =
    "switchboard_limit_rejections_total{limit=\"max_pending_invites\",protocol=\"rooms\"}";
const CREATOR_CAP: &str =
    "switchboard_limit_rejections_total{limit=\"max_rooms_per_creator\",protocol=\"rooms\"}";

#[actix_rt::test]
async fn a_room_holds_at_most_max_pending_invites() {
    let broker = Broker::with(options().env("ROOMS__MAX_PENDING_INVITES", "2"));
    let mut alice = User::connect(&broker, ALICE).await;
    let room = alice.create("club", true).await;
    let other = alice.create("other", true).await;

    // Bob and Carol are offline: their invites wait, and fill the room's cap.
    for user in [BOB, CAROL] {
        alice
            .send(json!({"type": "invite", "user_id": user, "room_id": room}))
            .await;
    }
    alice.silent().await;
    alice
        .send(json!({"type": "invite", "user_id": DAVE, "room_id": room}))
        .await;
    alice
        .expect_error("this room has too many pending invites: at most 2 until invitees enter")
        .await;
    wait_for_metric(&broker, PENDING_CAP, 1.0, Duration::from_secs(5)).await;

    // Nothing was stored for Dave: no invite on connect, no way in.
    let mut dave = User::connect(&broker, DAVE).await;
    dave.silent().await;
    dave.send(json!({"type": "enter", "room_id": room})).await;
    dave.expect_error("the room is closed: you need an invite")
        .await;

    // Inviting someone already pending is no new invite; other rooms have
    // their own cap.
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
        .await;
    alice
        .send(json!({"type": "invite", "user_id": DAVE, "room_id": other}))
        .await;
    dave.expect(invite(ALICE, &other)).await;
    alice.silent().await;

    // Bob comes online, gets his invite, enters: his invite is used and
    // frees a place, so Dave can be invited now.
    let mut bob = User::connect(&broker, BOB).await;
    bob.expect(invite(ALICE, &room)).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(enter(BOB, &room)).await;
    alice.expect(enter(BOB, &room)).await;
    alice
        .send(json!({"type": "invite", "user_id": DAVE, "room_id": room}))
        .await;
    dave.expect(invite(ALICE, &room)).await;
    dave.enter(&room, &mut [&mut alice, &mut bob]).await;

    // The room works as before.
    bob.send(json!({"type": "message", "content": "hello", "room_id": room}))
        .await;
    for user in [&mut bob, &mut alice, &mut dave] {
        user.message(BOB, "hello", &room).await;
    }
    wait_for_metric(&broker, PENDING_CAP, 1.0, Duration::from_secs(1)).await;
}

#[actix_rt::test]
async fn a_user_creates_at_most_max_rooms_per_creator_also_after_a_restart() {
    let broker = Broker::with(options().env("ROOMS__MAX_ROOMS_PER_CREATOR", "2"));
    let mut alice = User::connect(&broker, ALICE).await;
    let first = alice.create("one", false).await;
    alice.create("two", true).await;
    alice
        .send(json!({"type": "create", "name": "three", "closed": false}))
        .await;
    alice
        .expect_error("you have created too many rooms: at most 2")
        .await;
    alice.silent().await;
    wait_for_metric(&broker, CREATOR_CAP, 1.0, Duration::from_secs(5)).await;
    let names = |rooms: Vec<(String, bool)>| rooms.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(listed(&broker).await), ["one", "two"]);

    // Others create as before; the operator's API has no creator cap, also
    // for a room that names Alice its admin.
    let mut bob = User::connect(&broker, BOB).await;
    bob.create("bobs", false).await;
    let by_api = admin(
        "POST",
        &broker.http("/api/rooms"),
        Some(&json!({"name": "ops", "closed": true, "admins": [ALICE]})),
    )
    .await;
    assert_eq!(by_api.status, 201, "{}", by_api.text);
    // Alice's rooms still work.
    bob.enter(&first, &mut [&mut alice]).await;

    // The count survives a restart.
    drop((alice, bob));
    let data = broker.stop();
    let broker = Broker::with(
        options()
            .env("ROOMS__MAX_ROOMS_PER_CREATOR", "2")
            .data(&data.path),
    );
    let mut alice = User::connect(&broker, ALICE).await;
    alice
        .send(json!({"type": "create", "name": "three", "closed": false}))
        .await;
    alice
        .expect_error("you have created too many rooms: at most 2")
        .await;
    wait_for_metric(&broker, CREATOR_CAP, 1.0, Duration::from_secs(5)).await;
    assert_eq!(names(listed(&broker).await), ["one", "two", "bobs", "ops"]);
}
