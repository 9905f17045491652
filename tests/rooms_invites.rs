//! Permissioned-rooms invites (issue 16 §4, §6): an invite to an offline
//! user is kept and delivered when the user connects, on every connect
//! until the user enters the room, also across restarts; live invites go
//! through the shared slow-consumer policy; user ids are UUIDs.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::rooms::{enter, invite, options, RoomsUser as User, ALICE, BOB, CAROL};
use common::tokens::{token, upgrade_refused};
use common::{wait_for_metric, Broker, WsClient};
use serde_json::json;

#[actix_rt::test]
async fn an_invite_waits_for_an_offline_user_until_it_is_used() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let club = alice.create("club", true).await;
    let open = alice.create("open", false).await;

    // Bob is offline; both invites are acknowledged by silence, as always.
    for room in [&club, &open] {
        alice
            .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
            .await;
    }
    alice.silent().await;

    // Right after `session`, oldest first; again on every connect.
    for _ in 0..2 {
        let mut bob = User::connect(&broker, BOB).await;
        bob.expect(invite(ALICE, &club)).await;
        bob.expect(invite(ALICE, &open)).await;
        bob.silent().await;
    }

    // Pending invites survive a restart.
    drop(alice);
    let data = broker.stop();
    let broker = Broker::with(options().data(&data.path));
    let mut bob = User::connect(&broker, BOB).await;
    bob.expect(invite(ALICE, &club)).await;
    bob.expect(invite(ALICE, &open)).await;
    // Entering uses the invite: it is not delivered again, the other one is.
    bob.send(json!({"type": "enter", "room_id": club})).await;
    bob.expect(enter(BOB, &club)).await;
    drop(bob);
    let mut bob = User::connect(&broker, BOB).await;
    bob.expect(invite(ALICE, &open)).await;
    bob.silent().await;
    // The invite to the closed room still lets Bob in after he used it.
    bob.send(json!({"type": "exit", "room_id": club})).await;
    bob.expect_error("you have not entered this room").await;
    bob.send(json!({"type": "enter", "room_id": club})).await;
    bob.expect(enter(BOB, &club)).await;

    let data = broker.stop();
    let broker = Broker::with(options().data(&data.path));
    let mut bob = User::connect(&broker, BOB).await;
    bob.expect(invite(ALICE, &open)).await;
    bob.silent().await;
}

#[actix_rt::test]
async fn an_online_invitee_gets_each_invite_once_on_every_connection() {
    let broker = Broker::with(options());
    let mut alice = User::connect(&broker, ALICE).await;
    let club = alice.create("club", true).await;
    let mut phone = User::connect(&broker, BOB).await;
    let mut laptop = User::connect(&broker, BOB).await;
    alice
        .send(json!({"type": "invite", "user_id": BOB, "room_id": club}))
        .await;
    for bob in [&mut phone, &mut laptop] {
        bob.expect(invite(ALICE, &club)).await;
        bob.silent().await;
    }
    // A connection opened later gets it too, once: it is still pending.
    let mut tablet = User::connect(&broker, BOB).await;
    tablet.expect(invite(ALICE, &club)).await;
    tablet.silent().await;
    // A permanent kick ends the invite: not delivered any more.
    alice
        .send(json!({"type": "kick", "user_id": BOB, "room_id": club, "permanent": true}))
        .await;
    alice.silent().await;
    let mut watch = User::connect(&broker, BOB).await;
    watch.silent().await;
    phone.silent().await;
}

#[actix_rt::test]
async fn user_ids_are_uuids() {
    let broker = Broker::with(options());
    // A token naming a user by anything but a UUID is refused at the upgrade.
    let url = broker.ws_url(&format!("/rooms?token={}", token("alice", "alice")));
    upgrade_refused(&url, None).await;
    // A UUID in capitals names the same user as in lower case.
    let shouting = ALICE.to_uppercase();
    let url = broker.ws_url(&format!("/rooms?token={}", token(&shouting, "alice")));
    let mut ws = WsClient::connect(&url).await;
    let session = ws.recv_json().await;
    assert_eq!(session["user_id"], ALICE, "{session}");

    let mut alice = User::connect(&broker, ALICE).await;
    let room = alice.create("open", false).await;
    alice
        .send(json!({"type": "invite", "user_id": "bob", "room_id": room}))
        .await;
    alice.expect_error("user_id must be a UUID").await;
    // The connection keeps working, and a UUID invitee is invited.
    let mut bob = User::connect(&broker, BOB).await;
    alice
        .send(json!({"type": "invite", "user_id": BOB.to_uppercase(), "room_id": room}))
        .await;
    bob.expect(invite(ALICE, &room)).await;
    alice.silent().await;
}

/// Opens a rooms connection for `user` from a client that never reads (a
/// 4 KiB receive buffer), and returns it once the upgrade is answered.
fn stalled_rooms_user(addr: &str, user: &str) -> TcpStream {
    common::stalled_socket(addr, &format!("/rooms?token={}", token(user, user)))
}

#[actix_rt::test]
async fn an_invitee_that_stops_reading_is_removed_as_a_slow_consumer() {
    let broker = Broker::with(
        options()
            .env("LIMITS__OUTBOUND_QUEUE", "4")
            .env("LIMITS__SLOW_CONSUMER_DROPS", "3")
            .env("LIMITS__MESSAGES_PER_SECOND", "100000")
            .env("LIMITS__BURST", "100000"),
    );
    let mut alice = User::connect(&broker, ALICE).await;
    let room = alice.create("open", false).await;
    let stalled = stalled_rooms_user(&broker.addr, BOB);
    let mut carol = User::connect(&broker, CAROL).await;
    // Alice invites Bob again and again (each is a committed invite and a
    // frame for him) until his queue stays full and he is removed.
    let slow = "switchboard_slow_consumers_total{protocol=\"rooms\"}";
    let mut sent = 0;
    while common::metric(&broker, slow).await != Some(1.0) {
        for _ in 0..50 {
            alice
                .send(json!({"type": "invite", "user_id": BOB, "room_id": room}))
                .await;
        }
        sent += 50;
        assert!(sent < 50_000, "never removed as a slow consumer");
        // A pong comes back once the invites before it are done, so no
        // backlog of commits builds up behind the check.
        alice.send(json!({"type": "ping", "time": sent})).await;
        alice.expect(json!({"type": "pong", "time": sent})).await;
    }
    wait_for_metric(&broker, slow, 1.0, Duration::from_secs(5)).await;
    // Everyone else is served as before: Alice got no error, Carol is invited.
    alice
        .send(json!({"type": "invite", "user_id": CAROL, "room_id": room}))
        .await;
    carol.expect(invite(ALICE, &room)).await;
    alice
        .send(json!({"type": "message", "content": "still here", "room_id": room}))
        .await;
    alice.message(ALICE, "still here", &room).await;
    alice.silent().await;
    drop(stalled);
}
