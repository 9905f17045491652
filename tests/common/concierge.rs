//! Concierge clients for the end-to-end tests.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Broker, WsClient};

/// The client version every test client reports.
pub const VERSION: &str = "0.2.0";

/// An identified client.
pub struct Peer {
    pub ws: WsClient,
    pub name: String,
    pub uuid: String,
}

impl Peer {
    /// The client info others see: `{name, nickname, uuid, tags}`.
    pub fn info(&self) -> Value {
        json!({"name": self.name, "nickname": null, "uuid": self.uuid, "tags": ["test"]})
    }

    pub async fn send(&mut self, payload: Value) {
        self.ws.send(&payload.to_string()).await;
    }

    /// Asserts that the next frame is exactly `want`.
    pub async fn expect(&mut self, want: Value) {
        let got = self.ws.recv_json().await;
        assert_eq!(got, want, "{} got an unexpected frame", self.name);
    }

    /// Sends `payload` and asserts the reply.
    pub async fn ask(&mut self, payload: Value, want: Value) {
        self.send(payload).await;
        self.expect(want).await;
    }

    pub async fn silent(&mut self) {
        self.ws.expect_silence(Duration::from_millis(200)).await;
    }
}

pub fn service(name: &str, owner: &Peer, subscribers: &[&Peer]) -> Value {
    let subscribers: Vec<&str> = subscribers.iter().map(|p| p.uuid.as_str()).collect();
    json!({"name": name, "nickname": null, "owner_uuid": owner.uuid, "subscribers": subscribers})
}

pub fn identify_payload(name: &str) -> String {
    json!({"type": "IDENTIFY", "name": name, "version": VERSION, "tags": ["test"]}).to_string()
}

pub async fn connect(broker: &Broker) -> WsClient {
    WsClient::connect(&broker.ws_url("/concierge")).await
}

/// Identifies as `name` and checks HELLO.
pub async fn identify(broker: &Broker, name: &str) -> Peer {
    let mut ws = connect(broker).await;
    ws.send(&identify_payload(name)).await;
    let hello = ws.recv_json().await;
    assert_eq!(hello["type"], "HELLO", "{hello}");
    assert_eq!(hello["version"], "0.2.0");
    assert_eq!(hello.as_object().unwrap().len(), 3, "{hello}");
    let uuid = hello["uuid"].as_str().expect("uuid").to_owned();
    assert!(uuid::Uuid::parse_str(&uuid).is_ok(), "{uuid}");
    Peer {
        ws,
        name: name.to_owned(),
        uuid,
    }
}

/// Identifies every name in turn; each earlier client must see exactly the
/// later ones' CLIENT_JOINED (and nobody their own).
pub async fn identify_all(broker: &Broker, names: &[&str]) -> Vec<Peer> {
    let mut peers: Vec<Peer> = Vec::new();
    for name in names {
        let peer = identify(broker, name).await;
        for earlier in &mut peers {
            earlier
                .expect(json!({"type": "CLIENT_JOINED", "client": peer.info()}))
                .await;
        }
        peers.push(peer);
    }
    peers
}
