//! `concierge.fs_key` through the real broker: which key opens a client's
//! folder on the file server. The default, `"uuid"`, is the reference's (the
//! HELLO uuid, which every client learns from CLIENT_JOINED); with
//! `"secret"`, HELLO carries an extra `fs_key` that only its client gets,
//! and only that opens the folder.

mod common;

use common::concierge::{connect, identify_payload};
use common::{request_raw, Broker, Options, WsClient};
use serde_json::{json, Value};

const BOUNDARY: &str = "switchboard-fs-key-boundary";

/// An identified client and its HELLO.
struct Client {
    ws: WsClient,
    name: String,
    hello: Value,
}

impl Client {
    fn uuid(&self) -> &str {
        self.hello["uuid"].as_str().expect("uuid")
    }

    fn fs_key(&self) -> &str {
        self.hello["fs_key"].as_str().expect("fs_key")
    }
}

async fn identify(broker: &Broker, name: &str) -> Client {
    let mut ws = connect(broker).await;
    ws.send(&identify_payload(name)).await;
    let hello = ws.recv_json().await;
    assert_eq!(hello["type"], "HELLO", "{hello}");
    Client {
        ws,
        name: name.to_owned(),
        hello,
    }
}

fn multipart(content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(broker: &Broker, key: &str, path: &str, content: &[u8]) -> (u16, Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [("x-fs-key", key), ("content-type", content_type.as_str())];
    let (status, body) =
        request_raw("POST", &broker.http(path), &headers, multipart(content)).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn call(broker: &Broker, method: &str, key: &str, path: &str) -> (u16, Vec<u8>) {
    request_raw(method, &broker.http(path), &[("x-fs-key", key)], Vec::new()).await
}

fn stored(broker: &Broker, path: &str) -> Option<Vec<u8>> {
    std::fs::read(broker.data().join("files").join(path)).ok()
}

const UNKNOWN_KEY: &str = "missing or unknown file-server key (x-fs-key)";

#[actix_rt::test]
async fn by_default_the_hello_uuid_is_the_key_and_hello_has_no_fs_key() {
    let broker = Broker::start();
    let alice = identify(&broker, "alice").await;
    let bob = identify(&broker, "bob").await;
    for client in [&alice, &bob] {
        assert_eq!(
            client.hello,
            json!({"type": "HELLO", "uuid": client.uuid(), "version": "0.2.0"})
        );
    }

    let (status, json) = upload(&broker, alice.uuid(), "/fs/alice/a.txt", b"mine").await;
    assert_eq!(
        (status, json),
        (201, json!({"name": "alice", "path": "a.txt", "size": 4}))
    );
    let (status, body) = call(&broker, "GET", bob.uuid(), "/fs/alice/a.txt").await;
    assert_eq!((status, body.as_slice()), (200, b"mine".as_slice()));
    let (status, _) = upload(&broker, bob.uuid(), "/fs/alice/a.txt", b"bob's").await;
    assert_eq!(status, 403);
    let (status, _) = call(&broker, "DELETE", alice.uuid(), "/fs/alice/a.txt").await;
    assert_eq!(status, 200);
    assert_eq!(stored(&broker, "alice/a.txt"), None);
}

#[actix_rt::test]
async fn with_secret_keys_only_the_owners_secret_opens_its_folder() {
    let broker = Broker::with(Options::default().env("CONCIERGE__FS_KEY", "secret"));
    let mut alice = identify(&broker, "alice").await;
    let bob = identify(&broker, "bob").await;
    for client in [&alice, &bob] {
        let hello = client.hello.as_object().unwrap();
        assert_eq!(hello.len(), 4, "{hello:?}");
        assert_eq!(hello["version"], "0.2.0");
        let key = client.fs_key();
        assert_eq!(key.len(), 32, "{key}");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        assert_ne!(key.replace('-', ""), client.uuid().replace('-', ""));
    }
    assert_ne!(alice.fs_key(), bob.fs_key());
    // Alice learns bob's uuid, never his key.
    let joined = alice.ws.recv_json().await;
    assert_eq!(joined["type"], "CLIENT_JOINED");
    assert_eq!(joined["client"]["uuid"], bob.uuid());
    assert!(!joined.to_string().contains(bob.fs_key()), "{joined}");

    let (status, json) = upload(&broker, alice.fs_key(), "/fs/alice/a.txt", b"mine").await;
    assert_eq!(
        (status, json),
        (201, json!({"name": "alice", "path": "a.txt", "size": 4}))
    );
    // Any client's secret downloads.
    let (status, body) = call(&broker, "GET", bob.fs_key(), "/fs/alice/a.txt").await;
    assert_eq!((status, body.as_slice()), (200, b"mine".as_slice()));

    // A uuid is nobody's key, not even its own client's.
    for uuid in [bob.uuid(), alice.uuid()] {
        let (status, json) = upload(&broker, uuid, "/fs/alice/a.txt", b"evil").await;
        assert_eq!((status, json), (401, json!({"error": UNKNOWN_KEY})));
        let (status, body) = call(&broker, "DELETE", uuid, "/fs/alice/a.txt").await;
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        let (status, _) = call(&broker, "GET", uuid, "/fs/alice/a.txt").await;
        assert_eq!(status, 401);
    }
    // Another client's secret is a known key, but not the owner's.
    let (status, json) = upload(&broker, bob.fs_key(), "/fs/alice/a.txt", b"evil").await;
    assert_eq!(status, 403, "{json}");
    let (status, _) = call(&broker, "DELETE", bob.fs_key(), "/fs/alice/a.txt").await;
    assert_eq!(status, 403);
    assert_eq!(stored(&broker, "alice/a.txt").unwrap(), b"mine");

    let (status, body) = call(&broker, "DELETE", alice.fs_key(), "/fs/alice/a.txt").await;
    assert_eq!(
        (status, serde_json::from_slice::<Value>(&body).unwrap()),
        (200, json!({"deleted": "a.txt"}))
    );
    assert_eq!(stored(&broker, "alice/a.txt"), None);

    // A secret dies with its connection.
    let Client {
        ws, name, hello, ..
    } = bob;
    drop(ws);
    assert_eq!(alice.ws.recv_json().await["type"], "CLIENT_LEFT", "{name}");
    let key = hello["fs_key"].as_str().unwrap();
    let (status, _) = call(&broker, "GET", key, "/fs/alice/a.txt").await;
    assert_eq!(status, 401);
}
