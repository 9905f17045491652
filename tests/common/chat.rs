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
