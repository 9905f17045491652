//! The concierge file server through the real broker: keys are the HELLO
//! uuids of real concierge clients, files land in the real folder, and a
//! client's folder goes when it disconnects.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use common::concierge::{identify_all, Peer};
use common::{request_raw, Broker, Options};
use serde_json::{json, Value};

const BOUNDARY: &str = "switchboard-test-boundary";

/// A multipart/form-data body with one file part.
fn multipart(file_name: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Bytes of every value, so a text-mangling bug shows.
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn files(broker: &Broker) -> PathBuf {
    broker.data().join("files")
}

async fn upload(broker: &Broker, key: &str, path: &str, content: &[u8]) -> (u16, Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [("x-fs-key", key), ("content-type", content_type.as_str())];
    let (status, body) = request_raw(
        "POST",
        &broker.http(path),
        &headers,
        multipart("upload.bin", content),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn call(broker: &Broker, method: &str, key: &str, path: &str) -> (u16, Vec<u8>) {
    request_raw(method, &broker.http(path), &[("x-fs-key", key)], Vec::new()).await
}

/// A GET written byte for byte, so no client library can normalise the path.
fn raw_get_status(broker: &Broker, path: &str, key: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(&broker.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nx-fs-key: {key}\r\nConnection: close\r\n\r\n",
        broker.addr
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn error_of(body: &[u8]) -> String {
    let json: Value = serde_json::from_slice(body).expect("JSON error body");
    json["error"].as_str().expect("error text").to_owned()
}

#[actix_rt::test]
async fn a_client_uploads_any_client_downloads_only_the_owner_deletes() {
    let broker = Broker::start();
    let peers = identify_all(&broker, &["alice", "bob"]).await;
    let [alice, bob] = &peers[..] else {
        unreachable!()
    };
    let content = binary(300 * 1024);

    let (status, json) = upload(
        &broker,
        &alice.uuid,
        "/fs/alice/maps/level%201.bin",
        &content,
    )
    .await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(
        json,
        json!({"name": "alice", "path": "maps/level 1.bin", "size": content.len()})
    );
    assert_eq!(
        std::fs::read(files(&broker).join("alice/maps/level 1.bin")).unwrap(),
        content,
        "stored byte for byte"
    );

    let (status, body) = call(&broker, "GET", &bob.uuid, "/fs/alice/maps/level%201.bin").await;
    assert_eq!(status, 200);
    assert_eq!(body, content, "downloaded byte for byte");

    // Only the owner changes its folder.
    let (status, json) = upload(&broker, &bob.uuid, "/fs/alice/evil.bin", b"x").await;
    assert_eq!(status, 403, "{json}");
    let (status, body) = call(&broker, "DELETE", &bob.uuid, "/fs/alice/maps/level%201.bin").await;
    assert_eq!(status, 403, "{}", error_of(&body));

    let (status, body) = call(
        &broker,
        "DELETE",
        &alice.uuid,
        "/fs/alice/maps/level%201.bin",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"deleted": "maps/level 1.bin"})
    );
    let (status, body) = call(&broker, "GET", &bob.uuid, "/fs/alice/maps/level%201.bin").await;
    assert_eq!(status, 404, "{}", error_of(&body));
    let (status, _) = call(
        &broker,
        "DELETE",
        &alice.uuid,
        "/fs/alice/maps/level%201.bin",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&broker, "PUT", &alice.uuid, "/fs/alice/x").await;
    assert_eq!(status, 405);
}

#[actix_rt::test]
async fn requests_without_a_connected_clients_key_are_unauthorized() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["alice", "bob"]).await;
    let (status, _) = upload(&broker, &peers[0].uuid, "/fs/alice/a.txt", b"hi").await;
    assert_eq!(status, 201);

    let (status, body) = request_raw("GET", &broker.http("/fs/alice/a.txt"), &[], Vec::new()).await;
    assert_eq!(status, 401);
    assert_eq!(
        error_of(&body),
        "missing or unknown file-server key (x-fs-key)"
    );
    let stranger = uuid::Uuid::new_v4().to_string();
    for key in ["not-a-uuid", stranger.as_str()] {
        let (status, _) = call(&broker, "GET", key, "/fs/alice/a.txt").await;
        assert_eq!(status, 401, "{key}");
        let (status, _) = upload(&broker, key, "/fs/alice/b.txt", b"hi").await;
        assert_eq!(status, 401, "{key}");
    }

    // A client's key dies with its connection.
    let Peer { ws, uuid, .. } = peers.remove(1);
    drop(ws);
    peers[0].ws.recv_json().await; // bob's CLIENT_LEFT
    let (status, _) = call(&broker, "GET", &uuid, "/fs/alice/a.txt").await;
    assert_eq!(status, 401);
}

#[actix_rt::test]
async fn paths_that_leave_the_clients_folder_are_bad_requests() {
    let broker = Broker::start();
    let peers = identify_all(&broker, &["alice", "bob"]).await;
    let key = &peers[0].uuid;
    let (status, _) = upload(&broker, &peers[1].uuid, "/fs/bob/secret.txt", b"bob's").await;
    assert_eq!(status, 201);
    // Something outside the files root that must never be served.
    std::fs::write(broker.data().join("outside.txt"), b"private").unwrap();
    // A link planted inside alice's folder that points outside the root.
    std::os::unix::fs::symlink(
        broker.data().join("outside.txt"),
        files(&broker).join("alice/link.txt"),
    )
    .unwrap();

    for path in [
        "/fs/alice/../bob/secret.txt",
        "/fs/../outside.txt",
        "/fs/alice/../../outside.txt",
        "/fs/alice/%2e%2e/bob/secret.txt",
        "/fs/alice/%2E%2E/%2E%2E/outside.txt",
        "/fs/alice/..%2f..%2foutside.txt",
        "/fs/alice/%2Fetc%2Fpasswd",
        "/fs/alice//etc/passwd",
        "/fs/alice/",
        "/fs/al.ce/x",
        "/fs/alice/link.txt",
    ] {
        assert_eq!(raw_get_status(&broker, path, key), 400, "{path}");
    }
    let (status, _) = upload(
        &broker,
        key,
        "/fs/alice/..%2fbob%2fsecret.txt",
        b"overwrite",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        std::fs::read(files(&broker).join("bob/secret.txt")).unwrap(),
        b"bob's"
    );
    // The planted link was not followed to write either.
    let (status, _) = upload(&broker, key, "/fs/alice/link.txt", b"overwrite").await;
    assert_eq!(status, 400);
    assert_eq!(
        std::fs::read(broker.data().join("outside.txt")).unwrap(),
        b"private"
    );
}

#[actix_rt::test]
async fn an_upload_over_the_size_limit_is_refused_and_leaves_nothing() {
    let broker = Broker::with(Options::default().env("CONCIERGE__MAX_FILE_SIZE", "1KiB"));
    let peers = identify_all(&broker, &["alice"]).await;
    let key = &peers[0].uuid;

    let (status, json) = upload(&broker, key, "/fs/alice/big.bin", &binary(1025)).await;
    assert_eq!(status, 413, "{json}");
    let (status, json) = upload(&broker, key, "/fs/alice/fits.bin", &binary(1024)).await;
    assert_eq!(status, 201, "{json}");
    let left: Vec<_> = std::fs::read_dir(files(&broker).join("alice"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["fits.bin"], "no partial upload is left behind");

    // Bodies that are not one file part.
    let (status, body) = request_raw(
        "POST",
        &broker.http("/fs/alice/x.bin"),
        &[("x-fs-key", key), ("content-type", "application/json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{}", error_of(&body));
}

#[actix_rt::test]
async fn a_clients_folder_is_removed_when_it_disconnects() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["alice", "bob"]).await;
    let (status, _) = upload(&broker, &peers[0].uuid, "/fs/alice/deep/a.bin", b"a").await;
    assert_eq!(status, 201);
    let (status, _) = upload(&broker, &peers[1].uuid, "/fs/bob/b.bin", b"b").await;
    assert_eq!(status, 201);
    let alice_dir = files(&broker).join("alice");
    assert!(alice_dir.join("deep/a.bin").is_file());

    let Peer { ws, .. } = peers.remove(0);
    drop(ws);
    assert_eq!(peers[0].ws.recv_json().await["type"], "CLIENT_LEFT");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alice_dir.exists() {
        assert!(std::time::Instant::now() < deadline, "folder still there");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        files(&broker).join("bob/b.bin").is_file(),
        "other folders stay"
    );
}

#[actix_rt::test]
async fn a_new_client_starts_with_an_empty_folder() {
    let broker = Broker::start();
    // Left behind under the name, e.g. by a crash.
    let stale = files(&broker).join("alice/old/stale.txt");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"someone else's").unwrap();

    let peers = identify_all(&broker, &["alice"]).await;
    let entries = std::fs::read_dir(files(&broker).join("alice"))
        .unwrap()
        .count();
    assert_eq!(entries, 0, "the folder is fresh at HELLO");
    let (status, _) = call(&broker, "GET", &peers[0].uuid, "/fs/alice/old/stale.txt").await;
    assert_eq!(status, 404);
}
