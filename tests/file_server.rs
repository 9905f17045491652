//! The concierge file server's HTTP module through actix's test service, on
//! a real temporary folder, with a key directory in which alice and bob are
//! connected. (`tests/concierge_files.rs` drives the same routes through the
//! real broker with real concierge clients.)

use std::cell::Cell;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_http::{BoxedPayloadStream, Payload, Request};
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{test, web, App};
use futures_util::future::{join, select, Either, LocalBoxFuture};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use switchboard::http::files::{routes, FileCaps, FileServer, KeyDirectory, KEY_HEADER};
use switchboard::http::ApiError;
use switchboard_actors::concierge::remove_client_folder;
use tempfile::TempDir;
use tokio::sync::oneshot;
use uuid::Uuid;

const ALICE: Uuid = Uuid::from_u128(0xa11c_e000_0000_4000_8000_0000_0000_0001);
const BOB: Uuid = Uuid::from_u128(0xb0b0_0000_0000_4000_8000_0000_0000_0002);
const STRANGER: Uuid = Uuid::from_u128(0x5742_0000_0000_4000_8000_0000_0000_0003);
const LIMIT: u64 = 512 * 1024;
const BOUNDARY: &str = "concierge-test-boundary-7d1f";

/// The test's connected clients.
struct Connected(HashMap<Uuid, String>);

impl KeyDirectory for Connected {
    fn owner_of(&self, key: String) -> LocalBoxFuture<'static, Result<Option<String>, ApiError>> {
        let owner = Uuid::parse_str(&key)
            .ok()
            .and_then(|key| self.0.get(&key).cloned());
        Box::pin(async move { Ok(owner) })
    }
}

/// A key directory whose actor is unreachable.
struct Unreachable;

impl KeyDirectory for Unreachable {
    fn owner_of(&self, _: String) -> LocalBoxFuture<'static, Result<Option<String>, ApiError>> {
        Box::pin(async { Err(ApiError::Unavailable("client list unreachable".to_owned())) })
    }
}

/// A temporary folder holding the file-server root and a folder outside it.
struct Disk {
    _dir: TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Disk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), b"top secret").unwrap();
        Self {
            _dir: dir,
            root,
            outside,
        }
    }

    fn alice(&self) -> PathBuf {
        self.root.join("alice")
    }

    /// Everything under the root, as sorted relative paths.
    fn tree(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(base).unwrap().display().to_string());
                if path.is_dir() && !path.is_symlink() {
                    walk(&path, base, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }

    fn outside_untouched(&self) {
        let mut entries: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        entries.sort();
        assert_eq!(entries, ["secret.txt"]);
        assert_eq!(
            fs::read(self.outside.join("secret.txt")).unwrap(),
            b"top secret"
        );
    }
}

/// Caps far above what the tests store, unless a test is about them.
const ROOMY: FileCaps = FileCaps {
    max_files_per_client: 1000,
    max_bytes_per_client: 1 << 30,
    max_files_dir_bytes: 1 << 32,
};

fn server(root: &Path, keys: Box<dyn KeyDirectory>) -> web::Data<FileServer> {
    server_with_caps(root, keys, ROOMY)
}

fn server_with_caps(
    root: &Path,
    keys: Box<dyn KeyDirectory>,
    caps: FileCaps,
) -> web::Data<FileServer> {
    web::Data::new(FileServer::new(root.to_path_buf(), LIMIT, caps, keys).unwrap())
}

fn alice_and_bob() -> Box<dyn KeyDirectory> {
    Box::new(Connected(HashMap::from([
        (ALICE, "alice".to_owned()),
        (BOB, "bob".to_owned()),
    ])))
}

async fn app(
    disk: &Disk,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(
        App::new()
            .app_data(server(&disk.root, alice_and_bob()))
            .configure(routes("/fs")),
    )
    .await
}

/// Bytes that look like a binary file: no text, all byte values.
fn binary(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// A multipart/form-data body; a part with a file name is a file part.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, file_name, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match file_name {
            Some(file_name) => {
                format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n")
            }
            None => format!("Content-Disposition: form-data; name=\"{field}\"\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn one_file(content: &[u8]) -> Vec<u8> {
    multipart(&[("file", Some("whatever.bin"), content)])
}

fn form_data() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn request(method: Method, uri: &str, key: Option<Uuid>) -> test::TestRequest {
    let req = test::TestRequest::default().method(method).uri(uri);
    match key {
        Some(key) => req.insert_header((KEY_HEADER, key.to_string())),
        None => req,
    }
}

fn post(uri: &str, key: Uuid, body: Vec<u8>) -> Request {
    request(Method::POST, uri, Some(key))
        .insert_header((header::CONTENT_TYPE, form_data()))
        .set_payload(body)
        .to_request()
}

fn get(uri: &str, key: Uuid) -> Request {
    request(Method::GET, uri, Some(key)).to_request()
}

fn delete(uri: &str, key: Uuid) -> Request {
    request(Method::DELETE, uri, Some(key)).to_request()
}

/// A POST whose body arrives in `chunk`-byte pieces with no Content-Length,
/// as a chunked upload does.
fn post_streamed(uri: &str, key: Uuid, body: Vec<u8>, chunk: usize) -> Request {
    let req = request(Method::POST, uri, Some(key))
        .insert_header((header::CONTENT_TYPE, form_data()))
        .to_request();
    let chunks: Vec<_> = body
        .chunks(chunk)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    let payload: BoxedPayloadStream = Box::pin(stream::iter(chunks));
    req.replace_payload(Payload::Stream { payload }).0
}

struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Asserts an error status with the `{"error": "..."}` body.
    fn assert_error(&self, status: StatusCode) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        assert!(json["error"].is_string(), "error body: {json}");
        assert_eq!(json.as_object().unwrap().len(), 1, "error body: {json}");
    }
}

async fn send<S, B>(app: &S, req: Request) -> Answer
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = test::read_body(res).await;
    Answer {
        status,
        headers,
        body,
    }
}

async fn upload<S, B>(app: &S, uri: &str, content: &[u8]) -> Answer
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    send(app, post(uri, ALICE, one_file(content))).await
}

#[actix_rt::test]
async fn upload_then_download_returns_the_same_bytes() {
    let disk = Disk::new();
    let app = app(&disk).await;
    let content = binary(300 * 1024);

    let up = upload(&app, "/fs/alice/data.bin", &content).await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(
        up.json(),
        json!({"name": "alice", "path": "data.bin", "size": content.len()})
    );
    assert_eq!(up.header(header::LOCATION), "/fs/alice/data.bin");

    let down = send(&app, get("/fs/alice/data.bin", ALICE)).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(down.body.len(), content.len());
    assert!(down.body == content, "downloaded bytes differ");
    assert_eq!(
        down.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"data.bin\""
    );
    assert_eq!(
        down.header(header::CONTENT_TYPE),
        "application/octet-stream"
    );
    assert_eq!(down.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
}

#[actix_rt::test]
async fn upload_into_a_nested_path_creates_the_missing_folders() {
    let disk = Disk::new();
    let app = app(&disk).await;
    let content = binary(200 * 1024);

    let up = upload(&app, "/fs/alice/reports/2025/q3/data.bin", &content).await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(up.json()["path"], "reports/2025/q3/data.bin");
    assert_eq!(
        fs::read(disk.alice().join("reports/2025/q3/data.bin")).unwrap(),
        content
    );

    let down = send(&app, get("/fs/alice/reports/2025/q3/data.bin", BOB)).await;
    assert_eq!(down.status, StatusCode::OK);
    assert!(down.body == content);
}

#[actix_rt::test]
async fn upload_arriving_in_small_chunks_without_content_length_is_stored_whole() {
    let disk = Disk::new();
    let app = app(&disk).await;
    let content = binary(400 * 1024);

    let up = send(
        &app,
        post_streamed("/fs/alice/big.bin", ALICE, one_file(&content), 1000),
    )
    .await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(up.json()["size"], content.len());
    assert!(fs::read(disk.alice().join("big.bin")).unwrap() == content);
}

#[actix_rt::test]
async fn upload_replaces_an_existing_file() {
    let disk = Disk::new();
    let app = app(&disk).await;

    assert_eq!(
        upload(&app, "/fs/alice/notes.txt", b"first version, longer")
            .await
            .status,
        StatusCode::CREATED
    );
    let second = upload(&app, "/fs/alice/notes.txt", b"second").await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.json()["size"], 6);

    let down = send(&app, get("/fs/alice/notes.txt", ALICE)).await;
    assert_eq!(down.body.as_ref(), b"second");
    assert_eq!(disk.tree(), ["alice", "alice/notes.txt"]);
}

#[actix_rt::test]
async fn text_files_are_served_as_utf8_text_attachments() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/notes.txt", "héllo".as_bytes()).await;

    let down = send(&app, get("/fs/alice/notes.txt", BOB)).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(
        down.header(header::CONTENT_TYPE),
        "text/plain; charset=utf-8"
    );
    assert!(down
        .header(header::CONTENT_DISPOSITION)
        .starts_with("attachment;"));
}

#[actix_rt::test]
async fn head_answers_like_get_without_a_body() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/data.bin", &binary(1234)).await;

    let head = send(
        &app,
        request(Method::HEAD, "/fs/alice/data.bin", Some(BOB)).to_request(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"data.bin\""
    );

    let missing = send(
        &app,
        request(Method::HEAD, "/fs/alice/missing.bin", Some(BOB)).to_request(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn non_ascii_names_are_decoded_once_and_round_trip() {
    let disk = Disk::new();
    let app = app(&disk).await;

    let up = upload(&app, "/fs/alice/r%C3%A9sum%C3%A9.txt", b"cv").await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(up.json()["path"], "résumé.txt");
    assert!(disk.alice().join("résumé.txt").is_file());

    let down = send(&app, get("/fs/alice/r%C3%A9sum%C3%A9.txt", BOB)).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(down.body.as_ref(), b"cv");
    assert_eq!(
        down.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    );
}

#[actix_rt::test]
async fn double_encoded_dots_are_an_ordinary_file_name_not_a_traversal() {
    let disk = Disk::new();
    let app = app(&disk).await;

    let up = upload(&app, "/fs/alice/%252e%252e", b"literal").await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(up.json()["path"], "%2e%2e");
    assert_eq!(fs::read(disk.alice().join("%2e%2e")).unwrap(), b"literal");
    disk.outside_untouched();
}

#[actix_rt::test]
async fn requests_without_a_key_header_are_unauthorized() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/a.txt", b"a").await;

    for method in [Method::GET, Method::DELETE] {
        let answer = send(&app, request(method, "/fs/alice/a.txt", None).to_request()).await;
        answer.assert_error(StatusCode::UNAUTHORIZED);
    }
    let answer = send(
        &app,
        request(Method::POST, "/fs/alice/b.txt", None)
            .insert_header((header::CONTENT_TYPE, form_data()))
            .set_payload(one_file(b"b"))
            .to_request(),
    )
    .await;
    answer.assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(disk.tree(), ["alice", "alice/a.txt"]);
}

#[actix_rt::test]
async fn a_key_that_is_not_a_uuid_is_unauthorized() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/a.txt", b"a").await;

    for garbage in ["not-a-uuid", "", "a11ce", "../../etc/passwd"] {
        let answer = send(
            &app,
            test::TestRequest::get()
                .uri("/fs/alice/a.txt")
                .insert_header((KEY_HEADER, garbage))
                .to_request(),
        )
        .await;
        answer.assert_error(StatusCode::UNAUTHORIZED);
    }
}

#[actix_rt::test]
async fn a_uuid_that_belongs_to_no_connected_client_is_unauthorized() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/a.txt", b"a").await;

    send(&app, get("/fs/alice/a.txt", STRANGER))
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    send(&app, post("/fs/alice/b.txt", STRANGER, one_file(b"b")))
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    send(&app, delete("/fs/alice/a.txt", STRANGER))
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(disk.tree(), ["alice", "alice/a.txt"]);
}

#[actix_rt::test]
async fn the_key_is_checked_before_the_path() {
    let disk = Disk::new();
    let app = app(&disk).await;

    send(&app, get("/fs/alice/../bob/x", STRANGER))
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    send(&app, get("/fs/al.ce/x", STRANGER))
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

#[actix_rt::test]
async fn the_path_is_checked_before_ownership() {
    let disk = Disk::new();
    let app = app(&disk).await;

    send(&app, post("/fs/alice/../bob/x", BOB, one_file(b"x")))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(&app, delete("/fs/alice/%2e%2e/x", BOB))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert!(disk.tree().is_empty());
}

#[actix_rt::test]
async fn ownership_is_checked_before_existence() {
    let disk = Disk::new();
    let app = app(&disk).await;

    send(&app, delete("/fs/alice/missing.txt", BOB))
        .await
        .assert_error(StatusCode::FORBIDDEN);
}

#[actix_rt::test]
async fn bob_cannot_upload_into_alices_folder() {
    let disk = Disk::new();
    let app = app(&disk).await;

    send(&app, post("/fs/alice/evil.txt", BOB, one_file(b"evil")))
        .await
        .assert_error(StatusCode::FORBIDDEN);
    assert!(disk.tree().is_empty());
}

#[actix_rt::test]
async fn bob_cannot_delete_alices_file() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/a.txt", b"keep me").await;

    send(&app, delete("/fs/alice/a.txt", BOB))
        .await
        .assert_error(StatusCode::FORBIDDEN);
    assert_eq!(fs::read(disk.alice().join("a.txt")).unwrap(), b"keep me");
}

#[actix_rt::test]
async fn bob_can_download_alices_file() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/shared.bin", &binary(4096)).await;

    let down = send(&app, get("/fs/alice/shared.bin", BOB)).await;
    assert_eq!(down.status, StatusCode::OK);
    assert!(down.body == binary(4096));
}

#[actix_rt::test]
async fn a_missing_file_is_not_found() {
    let disk = Disk::new();
    let app = app(&disk).await;

    // No folder for alice yet, then a folder without the file.
    send(&app, get("/fs/alice/missing.txt", BOB))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    upload(&app, "/fs/alice/present.txt", b"p").await;
    send(&app, get("/fs/alice/missing.txt", BOB))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    send(&app, get("/fs/alice/present.txt/below", BOB))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    send(&app, delete("/fs/alice/missing.txt", ALICE))
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn a_folder_is_not_a_file() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/docs/a.txt", b"a").await;

    send(&app, get("/fs/alice/docs", BOB))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    send(&app, delete("/fs/alice/docs", ALICE))
        .await
        .assert_error(StatusCode::NOT_FOUND);
    send(&app, post("/fs/alice/docs", ALICE, one_file(b"x")))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(
        &app,
        post("/fs/alice/docs/a.txt/b.txt", ALICE, one_file(b"x")),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(disk.tree(), ["alice", "alice/docs", "alice/docs/a.txt"]);
}

#[actix_rt::test]
async fn delete_removes_the_file_and_a_later_download_is_not_found() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/docs/a.txt", b"a").await;

    let deleted = send(&app, delete("/fs/alice/docs/a.txt", ALICE)).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.json(), json!({"deleted": "docs/a.txt"}));
    assert!(!disk.alice().join("docs/a.txt").exists());

    send(&app, get("/fs/alice/docs/a.txt", ALICE))
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

/// Paths that must be refused with 400 for every method, before the file
/// system is touched.
const BAD_PATHS: &[&str] = &[
    // Traversal, plain and encoded (decoded once, then checked).
    "/fs/alice/..",
    "/fs/alice/../bob/x",
    "/fs/alice/x/../../bob/x",
    "/fs/alice/%2e%2e/x",
    "/fs/alice/%2E%2E/x",
    "/fs/alice/..%2fx",
    "/fs/alice/x%2f..%2f..%2fbob%2fx",
    "/fs/alice/./x",
    "/fs/alice/%2e/x",
    // Absolute after decoding, empty, or with an empty segment.
    "/fs/alice/%2Fetc%2Fpasswd",
    "/fs/alice/",
    "/fs/alice",
    "/fs/alice//x",
    "/fs/alice/x/",
    // Invalid client names.
    "/fs/al.ce/x",
    "/fs/%2e%2e/x",
    "/fs/../x",
    "/fs/alice%2Fx/y",
    "/fs//alice/x",
    "/fs/ali%20ce/x",
    "/fs/caf%C3%A9/x",
    // Characters no segment may hold, and text that is not UTF-8.
    "/fs/alice/a%5Cb",
    "/fs/alice/..%5Cx",
    "/fs/alice/a%00b",
    "/fs/alice/a%0Ab",
    "/fs/alice/a%7Fb",
    "/fs/alice/%FF.txt",
];

#[actix_rt::test]
async fn traversal_absolute_empty_and_malformed_paths_are_bad_requests() {
    let disk = Disk::new();
    let app = app(&disk).await;

    for &uri in BAD_PATHS {
        for req in [
            get(uri, ALICE),
            post(uri, ALICE, one_file(b"x")),
            delete(uri, ALICE),
        ] {
            let method = req.head().method.clone();
            let answer = send(&app, req).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{method} {uri}: {}",
                String::from_utf8_lossy(&answer.body)
            );
            answer.assert_error(StatusCode::BAD_REQUEST);
        }
    }
    assert!(disk.tree().is_empty(), "created: {:?}", disk.tree());
    disk.outside_untouched();
}

#[actix_rt::test]
async fn overlong_names_and_segments_are_bad_requests() {
    let disk = Disk::new();
    let app = app(&disk).await;

    let long_name = format!("/fs/{}/x", "a".repeat(256));
    let long_segment = format!("/fs/alice/{}", "s".repeat(256));
    let long_path = format!("/fs/alice/{}", ["d"; 600].join("/"));
    for uri in [&long_name, &long_segment, &long_path] {
        send(&app, post(uri, ALICE, one_file(b"x")))
            .await
            .assert_error(StatusCode::BAD_REQUEST);
    }
    let longest_name = "n".repeat(64);
    let keys = Connected(HashMap::from([(STRANGER, longest_name.clone())]));
    let app = test::init_service(
        App::new()
            .app_data(server(&disk.root, Box::new(keys)))
            .configure(routes("/fs")),
    )
    .await;
    let up = send(
        &app,
        post(&format!("/fs/{longest_name}/x"), STRANGER, one_file(b"x")),
    )
    .await;
    assert_eq!(up.status, StatusCode::CREATED);
}

#[actix_rt::test]
async fn a_symlink_inside_the_folder_pointing_outside_the_root_is_refused() {
    let disk = Disk::new();
    let app = app(&disk).await;
    fs::create_dir(disk.alice()).unwrap();
    symlink(
        disk.outside.join("secret.txt"),
        disk.alice().join("link.txt"),
    )
    .unwrap();

    send(&app, get("/fs/alice/link.txt", ALICE))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(&app, delete("/fs/alice/link.txt", ALICE))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(
        &app,
        post("/fs/alice/link.txt", ALICE, one_file(b"overwritten")),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST);
    disk.outside_untouched();
    assert!(disk.alice().join("link.txt").is_symlink());
}

#[actix_rt::test]
async fn a_symlinked_folder_leading_outside_the_root_is_refused() {
    let disk = Disk::new();
    let app = app(&disk).await;
    fs::create_dir(disk.alice()).unwrap();
    symlink(&disk.outside, disk.alice().join("out")).unwrap();

    send(&app, get("/fs/alice/out/secret.txt", BOB))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(&app, delete("/fs/alice/out/secret.txt", ALICE))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(&app, post("/fs/alice/out/new.txt", ALICE, one_file(b"x")))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(
        &app,
        post("/fs/alice/out/sub/new.txt", ALICE, one_file(b"x")),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST);
    disk.outside_untouched();
}

#[actix_rt::test]
async fn a_client_folder_that_is_a_symlink_is_refused() {
    let disk = Disk::new();
    let app = app(&disk).await;
    symlink(&disk.outside, disk.alice()).unwrap();

    send(&app, get("/fs/alice/secret.txt", BOB))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    send(&app, post("/fs/alice/new.txt", ALICE, one_file(b"x")))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    disk.outside_untouched();
}

#[actix_rt::test]
async fn a_file_of_exactly_the_limit_is_accepted() {
    let disk = Disk::new();
    let app = app(&disk).await;
    let content = binary(LIMIT as usize);

    let up = upload(&app, "/fs/alice/max.bin", &content).await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(up.json()["size"], LIMIT);
}

#[actix_rt::test]
async fn a_file_one_byte_over_the_limit_is_too_large_and_leaves_nothing_behind() {
    let disk = Disk::new();
    let app = app(&disk).await;

    upload(&app, "/fs/alice/big.bin", &binary(LIMIT as usize + 1))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(disk.tree(), ["alice"], "the partial file must be removed");
}

#[actix_rt::test]
async fn a_streamed_file_is_cut_off_at_the_limit_and_leaves_nothing_behind() {
    let disk = Disk::new();
    let app = app(&disk).await;
    let req = request(Method::POST, "/fs/alice/endless.bin", Some(ALICE))
        .insert_header((header::CONTENT_TYPE, form_data()))
        .to_request();
    let part_head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"e.bin\"\r\n\r\n"
    );
    // Like a socket, the body is never all there at once: each chunk is
    // "not ready" first. Far more than the limit is on offer, and the test
    // counts how much of it the server pulled.
    const CHUNK: usize = 16 * 1024;
    let pulled = Rc::new(Cell::new(0_usize));
    let counter = Rc::clone(&pulled);
    let chunk = Bytes::from(binary(CHUNK));
    let body = stream::once(async move { Ok(Bytes::from(part_head)) }).chain(
        stream::iter(0..4096).then(move |_| {
            let (chunk, counter) = (chunk.clone(), Rc::clone(&counter));
            async move {
                actix_rt::task::yield_now().await;
                counter.set(counter.get() + 1);
                Ok(chunk)
            }
        }),
    );
    let payload: BoxedPayloadStream = Box::pin(body);
    let req = req.replace_payload(Payload::Stream { payload }).0;

    let answer = send(&app, req).await;
    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        pulled.get() <= LIMIT as usize / CHUNK + 2,
        "read {} chunks of {CHUNK} bytes for a limit of {LIMIT}",
        pulled.get()
    );
    assert_eq!(disk.tree(), ["alice"]);
}

#[actix_rt::test]
async fn a_failed_replacement_leaves_the_existing_file_intact() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/doc.bin", b"original").await;

    upload(&app, "/fs/alice/doc.bin", &binary(LIMIT as usize + 1))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    let two = multipart(&[("a", Some("a"), b"one"), ("b", Some("b"), b"two")]);
    send(&app, post("/fs/alice/doc.bin", ALICE, two))
        .await
        .assert_error(StatusCode::BAD_REQUEST);

    assert_eq!(fs::read(disk.alice().join("doc.bin")).unwrap(), b"original");
    assert_eq!(disk.tree(), ["alice", "alice/doc.bin"]);
}

#[actix_rt::test]
async fn a_declared_length_far_over_the_limit_is_refused_before_reading() {
    let disk = Disk::new();
    let app = app(&disk).await;

    let answer = send(
        &app,
        request(Method::POST, "/fs/alice/huge.bin", Some(ALICE))
            .insert_header((header::CONTENT_TYPE, form_data()))
            .set_payload(one_file(b"small"))
            // After the payload, which sets the true length.
            .insert_header((header::CONTENT_LENGTH, (LIMIT * 10).to_string()))
            .to_request(),
    )
    .await;
    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(disk.tree().is_empty());
}

#[actix_rt::test]
async fn two_file_parts_are_a_bad_request_and_store_nothing() {
    let disk = Disk::new();
    let app = app(&disk).await;

    let body = multipart(&[("a", Some("a.bin"), b"one"), ("b", Some("b.bin"), b"two")]);
    send(&app, post("/fs/alice/x.bin", ALICE, body))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(disk.tree(), ["alice"]);
}

#[actix_rt::test]
async fn a_body_without_a_file_part_is_a_bad_request() {
    let disk = Disk::new();
    let app = app(&disk).await;

    for body in [
        multipart(&[("comment", None, b"no file here")]),
        multipart(&[]),
    ] {
        send(&app, post("/fs/alice/x.bin", ALICE, body))
            .await
            .assert_error(StatusCode::BAD_REQUEST);
    }
    assert!(!disk.alice().join("x.bin").exists());
}

#[actix_rt::test]
async fn a_body_that_is_not_multipart_form_data_is_a_bad_request() {
    let disk = Disk::new();
    let app = app(&disk).await;

    for content_type in [
        Some("application/octet-stream"),
        Some("multipart/form-data"),
        Some("multipart/mixed; boundary=x"),
        None,
    ] {
        let mut req = request(Method::POST, "/fs/alice/raw.bin", Some(ALICE));
        if let Some(content_type) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, content_type));
        }
        send(&app, req.set_payload(binary(100)).to_request())
            .await
            .assert_error(StatusCode::BAD_REQUEST);
    }
    let garbled = request(Method::POST, "/fs/alice/raw.bin", Some(ALICE))
        .insert_header((header::CONTENT_TYPE, form_data()))
        .set_payload(binary(100))
        .to_request();
    send(&app, garbled)
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert!(!disk.alice().join("raw.bin").exists());
    assert!(disk.tree().iter().all(|p| !p.contains("raw")));
}

#[actix_rt::test]
async fn form_fields_beside_the_file_are_ignored() {
    let disk = Disk::new();
    let app = app(&disk).await;

    let body = multipart(&[
        ("comment", None, b"hello"),
        ("file", Some("ignored-name.bin"), b"payload"),
        ("more", None, b"world"),
    ]);
    let up = send(&app, post("/fs/alice/x.bin", ALICE, body)).await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(fs::read(disk.alice().join("x.bin")).unwrap(), b"payload");
    assert_eq!(disk.tree(), ["alice", "alice/x.bin"]);
}

#[actix_rt::test]
async fn too_many_parts_are_a_bad_request() {
    let disk = Disk::new();
    let app = app(&disk).await;

    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("f", None, b"x"); 16];
    parts.push(("file", Some("x.bin"), b"x"));
    send(&app, post("/fs/alice/x.bin", ALICE, multipart(&parts)))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert!(!disk.alice().join("x.bin").exists());
}

#[actix_rt::test]
async fn other_methods_are_not_allowed() {
    let disk = Disk::new();
    let app = app(&disk).await;

    for method in [Method::PUT, Method::PATCH, Method::OPTIONS] {
        let answer = send(
            &app,
            request(method.clone(), "/fs/alice/x.bin", Some(ALICE)).to_request(),
        )
        .await;
        answer.assert_error(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.header(header::ALLOW), "GET, HEAD, POST, DELETE");
    }
    assert!(disk.tree().is_empty());
}

#[actix_rt::test]
async fn a_failing_key_directory_is_answered_with_its_error() {
    let disk = Disk::new();
    let app = test::init_service(
        App::new()
            .app_data(server(&disk.root, Box::new(Unreachable)))
            .configure(routes("/fs")),
    )
    .await;

    send(&app, get("/fs/alice/x.bin", ALICE))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);
}

#[actix_rt::test]
async fn routes_work_inside_a_scope_and_with_a_trailing_slash_prefix() {
    let disk = Disk::new();
    let app = test::init_service(
        App::new()
            .app_data(server(&disk.root, alice_and_bob()))
            .service(web::scope("/api").configure(routes("/files/"))),
    )
    .await;

    let up = send(&app, post("/api/files/alice/a.txt", ALICE, one_file(b"a"))).await;
    assert_eq!(up.status, StatusCode::CREATED);
    assert_eq!(up.json()["path"], "a.txt");
    let down = send(&app, get("/api/files/alice/a.txt", BOB)).await;
    assert_eq!(down.body.as_ref(), b"a");
    send(&app, get("/api/files/alice/%2e%2e/bob/a.txt", BOB))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn remove_client_folder_removes_the_folder_and_everything_in_it() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/deep/down/a.bin", &binary(10)).await;
    upload(&app, "/fs/alice/b.bin", &binary(10)).await;

    remove_client_folder(&disk.root, "alice").await.unwrap();
    assert!(!disk.alice().exists());
    assert!(disk.root.is_dir());
}

#[actix_rt::test]
async fn remove_client_folder_of_a_client_without_a_folder_is_a_no_op() {
    let disk = Disk::new();
    remove_client_folder(&disk.root, "nobody").await.unwrap();
    remove_client_folder(&disk.root.join("missing-root"), "nobody")
        .await
        .unwrap();
}

#[actix_rt::test]
async fn remove_client_folder_refuses_invalid_names() {
    let disk = Disk::new();
    fs::create_dir(disk.alice()).unwrap();

    for name in ["", "..", ".", "alice/..", "../outside", "al.ce"] {
        let error = remove_client_folder(&disk.root, name).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{name:?}");
    }
    assert!(disk.alice().is_dir());
    disk.outside_untouched();
}

#[actix_rt::test]
async fn remove_client_folder_removes_only_the_link_when_the_folder_is_a_symlink() {
    let disk = Disk::new();
    symlink(&disk.outside, disk.alice()).unwrap();

    remove_client_folder(&disk.root, "alice").await.unwrap();
    assert!(!disk.alice().is_symlink());
    disk.outside_untouched();
}

/// Caps small enough to hit: 1 KiB per client.
const TIGHT: FileCaps = FileCaps {
    max_files_per_client: 10,
    max_bytes_per_client: 1024,
    max_files_dir_bytes: 1 << 30,
};

async fn tight_app(
    disk: &Disk,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(
        App::new()
            .app_data(server_with_caps(&disk.root, alice_and_bob(), TIGHT))
            .configure(routes("/fs")),
    )
    .await
}

/// An upload of alice's whose body sends a file part's head and `first`,
/// then tells `reached` (the server has taken in `first` and asks for more)
/// and waits for `rest` before it sends the end.
fn post_paused(
    uri: &str,
    first: Vec<u8>,
    reached: oneshot::Sender<()>,
    rest: oneshot::Receiver<()>,
) -> Request {
    let req = request(Method::POST, uri, Some(ALICE))
        .insert_header((header::CONTENT_TYPE, form_data()))
        .to_request();
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.bin\"\r\n\r\n"
    );
    let body = stream::iter([Ok(Bytes::from(head)), Ok(Bytes::from(first))]).chain(stream::once(
        async move {
            let _ = reached.send(());
            let _ = rest.await;
            Ok(Bytes::from(format!("\r\n--{BOUNDARY}--\r\n")))
        },
    ));
    let payload: BoxedPayloadStream = Box::pin(body);
    req.replace_payload(Payload::Stream { payload }).0
}

#[actix_rt::test]
async fn an_upload_in_flight_holds_its_room_against_a_second_one() {
    let disk = Disk::new();
    let app = tight_app(&disk).await;
    let (reached, streaming) = oneshot::channel();
    let (go, rest) = oneshot::channel();
    let first = binary(700);

    let (paused, second) = join(
        send(
            &app,
            post_paused("/fs/alice/first.bin", first.clone(), reached, rest),
        ),
        async {
            // The first upload has reserved what it streamed so far.
            streaming.await.unwrap();
            let second = upload(&app, "/fs/alice/second.bin", &binary(400)).await;
            go.send(()).unwrap();
            second
        },
    )
    .await;
    second.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        second.json()["error"],
        "the upload would take the client's folder over its limit of 1024 bytes \
         (concierge.max_bytes_per_client)"
    );
    assert_eq!(paused.status, StatusCode::CREATED);
    assert_eq!(paused.json()["size"], 700);
    assert_eq!(disk.tree(), ["alice", "alice/first.bin"]);
    assert!(fs::read(disk.alice().join("first.bin")).unwrap() == first);
}

#[actix_rt::test]
async fn an_upload_abandoned_mid_way_gives_its_room_and_its_files_back() {
    let disk = Disk::new();
    let app = tight_app(&disk).await;
    let (reached, streaming) = oneshot::channel();
    let (_never, rest) = oneshot::channel();

    let abandoned = Box::pin(send(
        &app,
        post_paused("/fs/alice/deep/gone.bin", binary(900), reached, rest),
    ));
    match select(abandoned, streaming).await {
        Either::Left(_) => panic!("the paused upload finished"),
        // As when the client goes away: the handler is dropped mid-upload.
        Either::Right((_, abandoned)) => drop(abandoned),
    }

    let up = upload(&app, "/fs/alice/whole.bin", &binary(1024)).await;
    assert_eq!(up.status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(5);
    while disk.tree() != ["alice", "alice/whole.bin"] {
        assert!(Instant::now() < deadline, "{:?}", disk.tree());
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_delete_removes_the_folders_it_leaves_empty() {
    let disk = Disk::new();
    let app = app(&disk).await;
    upload(&app, "/fs/alice/a/b/c.txt", b"c").await;
    upload(&app, "/fs/alice/a/d.txt", b"d").await;

    let deleted = send(&app, delete("/fs/alice/a/b/c.txt", ALICE)).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(disk.tree(), ["alice", "alice/a", "alice/a/d.txt"]);
    let deleted = send(&app, delete("/fs/alice/a/d.txt", ALICE)).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(disk.tree(), ["alice"]);
}
