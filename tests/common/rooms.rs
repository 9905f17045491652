//! Permissioned-rooms clients for the end-to-end tests.

use std::time::Duration;

use serde_json::{json, Value};

use super::tokens::token;
use super::{admin, Broker, Options, WsClient};

/// A token broker with the rooms defaults (user ids must be UUIDs): the
/// same as `tokens::options`, named for the rooms suites.
pub fn options() -> Options {
    super::tokens::options()
}

// The rooms users of the tests. The protocol requires a UUID as a user id
// (a token's `sub`, an invite's `user_id`): fixed ones, in the lowercase
// form the broker uses, so frames can be compared exactly.

/// Alice's user id.
pub const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
/// Bob's user id.
pub const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
/// Carol's user id.
pub const CAROL: &str = "ca201000-0000-4000-8000-000000000003";
/// Dave's user id.
pub const DAVE: &str = "da7e0000-0000-4000-8000-000000000004";
/// Erin's user id.
pub const ERIN: &str = "e2140000-0000-4000-8000-000000000007";
/// Frank's user id.
pub const FRANK: &str = "f2a4c000-0000-4000-8000-000000000008";
/// The user id of a room's owner (its creator, hence its admin).
pub const OWNER: &str = "0a4e0000-0000-4000-8000-000000000005";
/// The user id of a plain room member.
pub const MEMBER: &str = "3e3be700-0000-4000-8000-000000000006";

/// The user id of the `n`th of many users: a UUID whose last group is `n`
/// (none of the named ones above).
pub fn numbered_user(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// The `invite` an invitee gets: from `inviter`, to `room`.
pub fn invite(inviter: &str, room: &str) -> Value {
    json!({"type": "invite", "user_id": inviter, "room_id": room})
}

/// The rooms `GET /api/rooms` lists, as (name, closed).
pub async fn listed(broker: &Broker) -> Vec<(String, bool)> {
    let reply = super::request("GET", &broker.http("/api/rooms"), None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["closed"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// A connected permissioned-rooms user and its session key.
pub struct RoomsUser {
    pub ws: WsClient,
    pub id: &'static str,
    pub key: String,
}

impl RoomsUser {
    /// Connects with a token for `id` (named `id` too) and reads the
    /// `session` frame, which names the user and carries a long key.
    pub async fn connect(broker: &Broker, id: &'static str) -> RoomsUser {
        let url = broker.ws_url(&format!("/rooms?token={}", token(id, id)));
        let mut ws = WsClient::connect(&url).await;
        let session = ws.recv_json().await;
        assert_eq!(session["type"], "session", "{session}");
        assert_eq!(session["user_id"], id);
        let key = session["key"].as_str().unwrap().to_owned();
        assert!(key.len() >= 16, "{key}");
        RoomsUser { ws, id, key }
    }

    /// Sends a command with this connection's key.
    pub async fn send(&mut self, mut command: Value) {
        command["key"] = json!(self.key);
        self.ws.send(&command.to_string()).await;
    }

    /// The next frame must be exactly `want`.
    pub async fn expect(&mut self, want: Value) {
        let got = self.ws.recv_json().await;
        assert_eq!(got, want, "{} got an unexpected frame", self.id);
    }

    /// The next frame must be `error {message}`.
    pub async fn expect_error(&mut self, message: &str) {
        self.expect(json!({"type": "error", "message": message}))
            .await;
    }

    /// Nothing arrives for a moment.
    pub async fn silent(&mut self) {
        self.ws.expect_silence(Duration::from_millis(200)).await;
    }

    /// Creates a room, checks `created` then its own `enter`, returns the id.
    pub async fn create(&mut self, name: &str, closed: bool) -> String {
        self.send(json!({"type": "create", "name": name, "closed": closed}))
            .await;
        let created = self.ws.recv_json().await;
        assert_eq!(created["type"], "created", "{created}");
        assert_eq!(
            (&created["name"], &created["closed"]),
            (&json!(name), &json!(closed))
        );
        let room = created["room_id"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&room).is_ok());
        self.expect(enter(self.id, &room)).await;
        room
    }

    /// Enters `room`; `others` (already in it) see the `enter` too.
    pub async fn enter(&mut self, room: &str, others: &mut [&mut RoomsUser]) {
        self.send(json!({"type": "enter", "room_id": room})).await;
        let entered = enter(self.id, room);
        self.expect(entered.clone()).await;
        for other in others {
            other.expect(entered.clone()).await;
        }
    }

    /// The next frame, a `message` from `from` with `content` in `room`:
    /// checks it exactly and returns it.
    pub async fn message(&mut self, from: &str, content: &str, room: &str) -> Value {
        let frame = self.ws.recv_json().await;
        let time = frame["time"].as_i64().expect("integer time");
        let now = chrono::Utc::now().timestamp_millis();
        assert!(
            (now - time).abs() < 60_000,
            "time is UNIX milliseconds: {frame}"
        );
        let id = frame["message_id"].as_u64().expect("integer message_id");
        assert_eq!(
            frame,
            json!({"type": "message", "time": time, "content": content, "user_id": from, "message_id": id, "room_id": room}),
            "{} got an unexpected frame",
            self.id
        );
        frame
    }
}

/// The `enter` event of `user` in `room`.
pub fn enter(user: &str, room: &str) -> Value {
    json!({"type": "enter", "user_id": user, "room_id": room})
}

/// The `exit` event of `user` from `room`.
pub fn exit(user: &str, room: &str) -> Value {
    json!({"type": "exit", "user_id": user, "room_id": room})
}

/// Creates a room through the HTTP API (admin key); returns its id.
pub async fn create_by_api(broker: &Broker, name: &str, closed: bool) -> String {
    let reply = admin(
        "POST",
        &broker.http("/api/rooms"),
        Some(&json!({"name": name, "closed": closed})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json["room_id"].as_str().unwrap().to_owned()
}
