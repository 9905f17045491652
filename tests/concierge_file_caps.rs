//! The concierge file server's caps through the real broker:
//! `concierge.max_files_per_client`, `concierge.max_bytes_per_client` and
//! `concierge.max_files_dir_bytes`. Each is hit by a real concierge client's
//! upload, answered 413 with a JSON error naming the cap, counted in
//! `switchboard_limit_rejections_total`, and leaves nothing on disk; the
//! client can upload again once it deleted a file, and other clients are
//! not affected by one client's cap.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::concierge::{identify_all, Peer};
use common::{request, request_raw, Broker, Options};
use serde_json::{json, Value};

const BOUNDARY: &str = "switchboard-caps-boundary";

/// A multipart/form-data body with one file part.
fn multipart(content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

async fn upload(broker: &Broker, peer: &Peer, path: &str, content: &[u8]) -> (u16, Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [
        ("x-fs-key", peer.uuid.as_str()),
        ("content-type", content_type.as_str()),
    ];
    let url = broker.http(&format!("/fs/{}/{path}", peer.name));
    let (status, body) = request_raw("POST", &url, &headers, multipart(content)).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn delete(broker: &Broker, peer: &Peer, path: &str) -> u16 {
    let url = broker.http(&format!("/fs/{}/{path}", peer.name));
    let headers = [("x-fs-key", peer.uuid.as_str())];
    request_raw("DELETE", &url, &headers, Vec::new()).await.0
}

fn created(peer: &Peer, path: &str, size: usize) -> Value {
    json!({"name": peer.name, "path": path, "size": size})
}

/// Everything in `dir`, as sorted relative paths (folders too).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(&path, base, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn folder(broker: &Broker, peer: &Peer) -> PathBuf {
    broker.data().join("files").join(&peer.name)
}

/// How often the concierge's cap `limit` refused something so far.
async fn rejections(broker: &Broker, limit: &str) -> f64 {
    let reply = request("GET", &broker.http("/metrics"), None, None).await;
    reply
        .text
        .lines()
        .filter(|line| line.starts_with("switchboard_limit_rejections_total{"))
        .filter(|line| line.contains(&format!("limit=\"{limit}\"")))
        .filter(|line| line.contains("protocol=\"concierge\""))
        .find_map(|line| line.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or(0.0)
}

fn error(message: &str) -> Value {
    json!({ "error": message })
}

const FILES_CAP_ERROR: &str =
    "the client's folder already holds its limit of 2 files (concierge.max_files_per_client)";
const BYTES_CAP_ERROR: &str = "the upload would take the client's folder over its limit of 1024 bytes (concierge.max_bytes_per_client)";
const DIR_CAP_ERROR: &str = "the upload would take the files directory over its limit of 2048 bytes (concierge.max_files_dir_bytes)";

#[actix_rt::test]
async fn a_client_with_its_limit_of_files_gets_413_until_it_deletes_one() {
    let broker = Broker::with(Options::default().env("CONCIERGE__MAX_FILES_PER_CLIENT", "2"));
    let peers = identify_all(&broker, &["alice", "bob"]).await;
    let [alice, bob] = &peers[..] else {
        unreachable!()
    };
    for path in ["a.bin", "b.bin"] {
        let (status, json) = upload(&broker, alice, path, b"12345").await;
        assert_eq!((status, json), (201, created(alice, path, 5)));
    }

    // A third file, in a folder of its own: refused, and neither the file,
    // its temporary file nor the folder is left.
    let (status, json) = upload(&broker, alice, "deep/c.bin", b"x").await;
    assert_eq!((status, json), (413, error(FILES_CAP_ERROR)));
    assert_eq!(tree(&folder(&broker, alice)), ["a.bin", "b.bin"]);
    assert_eq!(rejections(&broker, "max_files_per_client").await, 1.0);

    // Replacing a file adds none, so it still works at the limit.
    let (status, json) = upload(&broker, alice, "a.bin", b"replaced").await;
    assert_eq!((status, json), (201, created(alice, "a.bin", 8)));
    assert_eq!(
        std::fs::read(folder(&broker, alice).join("a.bin")).unwrap(),
        b"replaced"
    );

    // Another client has its own limit.
    for path in ["a.bin", "b.bin"] {
        let (status, json) = upload(&broker, bob, path, b"bob").await;
        assert_eq!((status, json), (201, created(bob, path, 3)));
    }

    assert_eq!(delete(&broker, alice, "b.bin").await, 200);
    let (status, json) = upload(&broker, alice, "deep/c.bin", b"x").await;
    assert_eq!((status, json), (201, created(alice, "deep/c.bin", 1)));
    assert_eq!(
        tree(&folder(&broker, alice)),
        ["a.bin", "deep", "deep/c.bin"]
    );
    assert_eq!(rejections(&broker, "max_files_per_client").await, 1.0);
}

#[actix_rt::test]
async fn a_client_over_its_limit_of_bytes_gets_413_and_replacing_counts_the_difference() {
    let broker = Broker::with(Options::default().env("CONCIERGE__MAX_BYTES_PER_CLIENT", "1KiB"));
    let peers = identify_all(&broker, &["alice", "bob"]).await;
    let [alice, bob] = &peers[..] else {
        unreachable!()
    };
    let (status, json) = upload(&broker, alice, "a.bin", &bytes(600, 1)).await;
    assert_eq!((status, json), (201, created(alice, "a.bin", 600)));

    let (status, json) = upload(&broker, alice, "b.bin", &bytes(500, 2)).await;
    assert_eq!((status, json), (413, error(BYTES_CAP_ERROR)));
    assert_eq!(tree(&folder(&broker, alice)), ["a.bin"]);
    assert_eq!(rejections(&broker, "max_bytes_per_client").await, 1.0);

    // 600 bytes replaced by 1024: the folder holds exactly its limit.
    let full = bytes(1024, 3);
    let (status, json) = upload(&broker, alice, "a.bin", &full).await;
    assert_eq!((status, json), (201, created(alice, "a.bin", 1024)));
    // A file of the same size replaces it at the limit.
    let again = bytes(1024, 4);
    let (status, json) = upload(&broker, alice, "a.bin", &again).await;
    assert_eq!((status, json), (201, created(alice, "a.bin", 1024)));
    // One byte more does not fit, neither as a bigger replacement nor new.
    let (status, json) = upload(&broker, alice, "a.bin", &bytes(1025, 5)).await;
    assert_eq!((status, json), (413, error(BYTES_CAP_ERROR)));
    let (status, json) = upload(&broker, alice, "b.bin", b"x").await;
    assert_eq!((status, json), (413, error(BYTES_CAP_ERROR)));
    assert_eq!(tree(&folder(&broker, alice)), ["a.bin"]);
    assert_eq!(
        std::fs::read(folder(&broker, alice).join("a.bin")).unwrap(),
        again,
        "a refused replacement leaves the file as it was"
    );
    assert_eq!(rejections(&broker, "max_bytes_per_client").await, 3.0);

    // Another client has its own limit.
    let (status, json) = upload(&broker, bob, "b.bin", &bytes(1024, 6)).await;
    assert_eq!((status, json), (201, created(bob, "b.bin", 1024)));

    assert_eq!(delete(&broker, alice, "a.bin").await, 200);
    let (status, json) = upload(&broker, alice, "b.bin", &bytes(500, 2)).await;
    assert_eq!((status, json), (201, created(alice, "b.bin", 500)));
    assert_eq!(tree(&folder(&broker, alice)), ["b.bin"]);
}

#[actix_rt::test]
async fn two_uploads_at_once_cannot_both_pass_the_limit_of_bytes() {
    let broker = Broker::with(Options::default().env("CONCIERGE__MAX_BYTES_PER_CLIENT", "1MiB"));
    let peers = identify_all(&broker, &["alice"]).await;
    let alice = &peers[0];
    let content = bytes(700 * 1024, 7);

    let ((first, _), (second, _)) = futures_util::future::join(
        upload(&broker, alice, "one.bin", &content),
        upload(&broker, alice, "two.bin", &content),
    )
    .await;
    let mut statuses = [first, second];
    statuses.sort();
    assert!(
        statuses == [201, 413] || statuses == [413, 413],
        "{statuses:?}"
    );
    let stored: Vec<_> = tree(&folder(&broker, alice));
    assert_eq!(stored.len(), usize::from(statuses[0] == 201), "{stored:?}");
    for path in &stored {
        assert_eq!(
            std::fs::read(folder(&broker, alice).join(path)).unwrap(),
            content
        );
    }
}

#[actix_rt::test]
async fn the_files_directory_has_a_limit_for_all_clients_together() {
    let broker = Broker::with(Options::default().env("CONCIERGE__MAX_FILES_DIR_BYTES", "2KiB"));
    let mut peers = identify_all(&broker, &["alice", "bob"]).await;
    let (status, _) = upload(&broker, &peers[0], "a.bin", &bytes(1500, 1)).await;
    assert_eq!(status, 201);

    let bob = &peers[1];
    let (status, json) = upload(&broker, bob, "b.bin", &bytes(600, 2)).await;
    assert_eq!((status, json), (413, error(DIR_CAP_ERROR)));
    assert!(tree(&folder(&broker, bob)).is_empty());
    assert_eq!(rejections(&broker, "max_files_dir_bytes").await, 1.0);
    let (status, json) = upload(&broker, bob, "b.bin", &bytes(500, 2)).await;
    assert_eq!((status, json), (201, created(bob, "b.bin", 500)));

    // A delete frees its room at once.
    assert_eq!(delete(&broker, &peers[0], "a.bin").await, 200);
    let (status, _) = upload(&broker, bob, "c.bin", &bytes(1000, 3)).await;
    assert_eq!(status, 201);
    let (status, _) = upload(&broker, &peers[0], "a.bin", &bytes(540, 4)).await;
    assert_eq!(status, 201);

    // A client that leaves frees its room too, by the next recount (at most
    // a second after the last one).
    let Peer { ws, .. } = peers.remove(0);
    drop(ws);
    assert_eq!(peers[0].ws.recv_json().await["type"], "CLIENT_LEFT");
    let bob = &peers[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, json) = upload(&broker, bob, "d.bin", &bytes(540, 5)).await;
        if status == 201 {
            assert_eq!(json, created(bob, "d.bin", 540));
            break;
        }
        assert_eq!((status, json), (413, error(DIR_CAP_ERROR)));
        assert!(Instant::now() < deadline, "alice's bytes still count");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(tree(&folder(&broker, bob)), ["b.bin", "c.bin", "d.bin"]);
}

#[actix_rt::test]
async fn what_the_files_directory_holds_at_start_counts_towards_its_limit() {
    // Left in the directory before the start, outside any client's folder.
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("files")).unwrap();
    std::fs::write(data.path().join("files/stray.bin"), bytes(1900, 1)).unwrap();
    let broker = Broker::with(
        Options::default()
            .env("CONCIERGE__MAX_FILES_DIR_BYTES", "2KiB")
            .data(data.path()),
    );
    let peers = identify_all(&broker, &["alice"]).await;
    let (status, json) = upload(&broker, &peers[0], "a.bin", &bytes(200, 2)).await;
    assert_eq!((status, json), (413, error(DIR_CAP_ERROR)));
    assert!(tree(&folder(&broker, &peers[0])).is_empty());
    let (status, _) = upload(&broker, &peers[0], "a.bin", &bytes(148, 2)).await;
    assert_eq!(status, 201);
}
