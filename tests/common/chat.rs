//! Workshop-chat clients for the end-to-end tests.

use serde_json::json;

use super::{Broker, WsClient};

/// A chat user joined to `room` (Global when `None`); its start-up frames
/// are read up to its own `user_join`.
pub async fn join(broker: &Broker, name: &str, room: Option<&str>) -> WsClient {
    let path = match room {
        None => "/chat/ws".to_owned(),
        Some(room) => format!("/chat/ws/{room}"),
    };
    let mut ws = WsClient::connect(&broker.ws_url(&path)).await;
    ws.send(&json!({"event_type": "connection_request", "username": name}).to_string())
        .await;
    let joined = json!({"event_type": "user_join", "username": name});
    while ws.recv_json().await != joined {}
    ws
}

/// A room as `all_rooms`, `room_create` and `GET /chat/rooms` show it.
pub fn room(name: &str, creator: &str, users: &[&str]) -> serde_json::Value {
    json!({"room_name": name, "room_creator": creator, "connected_users": users})
}

/// A `room_create` request for `name`.
pub fn create_room(name: &str) -> String {
    json!({"event_type": "room_create", "room": {"room_name": name}}).to_string()
}

/// A `room_create_reject` with `response`.
pub fn create_rejected(response: &str) -> serde_json::Value {
    json!({"event_type": "room_create_reject", "response": response})
}

/// A chat `message` event.
pub fn message(username: &str, text: &str) -> serde_json::Value {
    json!({"event_type": "message", "username": username, "message": text})
}

/// `GET /chat/rooms`: every room, Global first.
pub async fn rooms(broker: &Broker) -> serde_json::Value {
    let reply = super::request("GET", &broker.http("/chat/rooms"), None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["rooms"].clone()
}

/// Connects to `/chat/ws/{room}` as `name` and expects `connection_reject`
/// then a close frame; returns the rejection's `response`.
pub async fn join_rejected(broker: &Broker, name: &str, room: &str) -> String {
    let mut ws = WsClient::connect(&broker.ws_url(&format!("/chat/ws/{room}"))).await;
    ws.send(&json!({"event_type": "connection_request", "username": name}).to_string())
        .await;
    let reject = ws.recv_json().await;
    assert_eq!(reject["event_type"], "connection_reject", "{reject}");
    assert_eq!(reject.as_object().unwrap().len(), 2, "{reject}");
    let closed = ws.recv_close().await;
    assert_eq!(closed.code, 1000, "{closed:?}");
    reject["response"].as_str().unwrap().to_owned()
}
