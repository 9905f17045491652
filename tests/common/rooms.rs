//! Permissioned-rooms clients for the end-to-end tests.

use std::time::Duration;

use serde_json::{json, Value};

use super::tokens::token;
use super::{admin, Broker, WsClient};

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
