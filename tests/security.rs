//! Security properties across the wire: the JWT checks of both token
//! protocols, and no secret or credential in the broker's output.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use common::rooms::ALICE;
use common::tokens::{base64url, options, upgrade_refused, JWT_SECRET};
use common::{request, request_raw, Broker, WsClient};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard_actors::auth::TokenKeys;

fn now() -> i64 {
    Utc::now().timestamp()
}

/// A token signed with `secret` under `alg`, whose payload is `claims` verbatim.
fn signed(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HMAC signing")
}

#[actix_rt::test]
async fn both_token_protocols_refuse_every_token_that_is_not_a_current_hs256_one() {
    let broker = Broker::with(options());
    let good = json!({"sub": ALICE, "name": "alice", "exp": now() + 3600});
    // tests/live.rs already asserts the last three on /live.
    let everywhere = [
        ("HS384", signed(Algorithm::HS384, JWT_SECRET, &good)),
        ("HS512", signed(Algorithm::HS512, JWT_SECRET, &good)),
        (
            "nbf in the future",
            signed(
                Algorithm::HS256,
                JWT_SECRET,
                &json!({"sub": ALICE, "name": "alice", "exp": now() + 3600, "nbf": now() + 600}),
            ),
        ),
        (
            "no exp",
            signed(
                Algorithm::HS256,
                JWT_SECRET,
                &json!({"sub": ALICE, "name": "alice"}),
            ),
        ),
    ];
    let rooms_only = [
        (
            "alg none",
            format!(
                "{}.{}.",
                base64url(br#"{"alg":"none","typ":"JWT"}"#),
                base64url(good.to_string().as_bytes())
            ),
        ),
        (
            "exp in the past",
            signed(
                Algorithm::HS256,
                JWT_SECRET,
                &json!({"sub": ALICE, "name": "alice", "exp": now() - 10}),
            ),
        ),
        (
            "another secret",
            signed(Algorithm::HS256, "another-secret-of-32-characters!!", &good),
        ),
    ];
    for (path, tokens) in [
        ("/live", &everywhere[..]),
        ("/rooms", &everywhere[..]),
        ("/rooms", &rooms_only[..]),
    ] {
        for (what, token) in tokens {
            eprintln!("{path}: {what}");
            upgrade_refused(&broker.ws_url(&format!("{path}?token={token}")), None).await;
            upgrade_refused(&broker.ws_url(path), Some(token)).await;
        }
    }

    // The same claims, HS256 with the right secret: accepted on both.
    let valid = signed(Algorithm::HS256, JWT_SECRET, &good);
    for path in ["/live", "/rooms"] {
        WsClient::connect(&broker.ws_url(&format!("{path}?token={valid}"))).await;
    }
}

// ---- no secret in the output ----

/// Distinctive values; every one carries this marker, so a partial leak shows too.
const MARKER: &str = "LEAKCHECK";
const ADMIN_KEY: &str = "admin-key-LEAKCHECK-7f3a9c1e5b";
const WRONG_ADMIN_KEY: &str = "admin-key-LEAKCHECK-guessed-00";
const JWT: &str = "jwt-secret-LEAKCHECK-5b8d2e4f6a1c3e5d7f9";
const OTHER_JWT: &str = "jwt-secret-LEAKCHECK-of-the-attacker-000";
const CONCIERGE: &str = "concierge-secret-LEAKCHECK-9e1d";
const WRONG_CONCIERGE: &str = "concierge-secret-LEAKCHECK-wrong";

/// A broker at debug level whose stdout and stderr are both kept.
struct Debugged {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
    stdout: Option<JoinHandle<String>>,
}

impl Debugged {
    fn start() -> Debugged {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env("SWITCHBOARD_SERVER__BIND", "127.0.0.1:0")
            .env("SWITCHBOARD_SERVER__WORKERS", "2")
            .env("SWITCHBOARD_STORAGE__PATH", dir.path().join("db"))
            .env("SWITCHBOARD_CONCIERGE__FILES_DIR", dir.path().join("files"))
            .env("SWITCHBOARD_ADMIN__API_KEY", ADMIN_KEY)
            .env("SWITCHBOARD_AUTH__JWT_SECRET", JWT)
            .env("SWITCHBOARD_CONCIERGE__SECRET", CONCIERGE)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn switchboard");
        let (tx, rx) = mpsc::channel();
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in lines.map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("switchboard listening on http://") {
                    let _ = tx.send(addr.to_owned());
                }
                all += &line;
                all.push('\n');
            }
            all
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let log = std::fs::read_to_string(dir.path().join("stderr.log"));
                panic!("broker did not start: {log:?}")
            });
        Debugged {
            child,
            addr,
            dir,
            stdout: Some(stdout),
        }
    }

    fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// SIGTERM, a clean exit, then everything it wrote: (stdout, stderr).
    fn stop(mut self) -> (String, String) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the pid of a child this test spawned and still owns.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "broker exited with {status}");
        let stdout = self
            .stdout
            .take()
            .expect("once")
            .join()
            .expect("stdout reader");
        let stderr = std::fs::read_to_string(self.dir.path().join("stderr.log")).expect("log");
        (stdout, stderr)
    }
}

impl Drop for Debugged {
    fn drop(&mut self) {
        // A no-op after `stop`; on a failed test, the broker must not outlive it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that none of `secrets` (nor the marker they all carry) is in `output`.
fn assert_clean(what: &str, output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "{what} contains {secret:?}:\n{output}"
        );
    }
    assert!(
        !output.contains(MARKER),
        "{what} contains a secret:\n{output}"
    );
}

const BOUNDARY: &str = "leak-check-boundary";

fn one_file(content: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{content}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

fn identify(secret: &str) -> String {
    json!({"type": "IDENTIFY", "name": "alice", "version": "0.2.0", "secret": secret}).to_string()
}

#[actix_rt::test]
async fn no_secret_key_or_token_reaches_the_output_even_at_debug_level() {
    let broker = Debugged::start();

    // Admin APIs: a wrong key, then the right one.
    let clear = broker.http("/chat/clear-chat");
    assert_eq!(
        request("DELETE", &clear, Some(WRONG_ADMIN_KEY), None)
            .await
            .status,
        401
    );
    assert_eq!(
        request("DELETE", &clear, Some(ADMIN_KEY), None)
            .await
            .status,
        200
    );

    // Concierge: a wrong secret in IDENTIFY, then the right one.
    let mut wrong = WsClient::connect(&broker.ws("/concierge")).await;
    wrong.send(&identify(WRONG_CONCIERGE)).await;
    assert_eq!(wrong.recv_close().await.code, 4006);
    let mut alice = WsClient::connect(&broker.ws("/concierge")).await;
    alice.send(&identify(CONCIERGE)).await;
    let hello = alice.recv_json().await;
    assert_eq!(hello["type"], "HELLO", "{hello}");
    let fs_key = hello["uuid"].as_str().expect("uuid").to_owned();

    // File server: the key upload, reads, deletes; an unknown key is refused.
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, _) = request_raw(
        "POST",
        &broker.http("/fs/alice/a.txt"),
        &[("x-fs-key", &fs_key), ("content-type", &content_type)],
        one_file("hello"),
    )
    .await;
    assert_eq!(status, 201);
    for (method, want) in [("GET", 200), ("DELETE", 200), ("GET", 404)] {
        let (status, _) = request_raw(
            method,
            &broker.http("/fs/alice/a.txt"),
            &[("x-fs-key", &fs_key)],
            Vec::new(),
        )
        .await;
        assert_eq!(status, want, "{method}");
    }
    let unknown_key = uuid::Uuid::new_v4().to_string();
    let (status, _) = request_raw(
        "GET",
        &broker.http("/fs/alice/a.txt"),
        &[("x-fs-key", &unknown_key)],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 401);

    // Tokens: a forged one refused, a valid one accepted (query and header).
    let forged = TokenKeys::new(OTHER_JWT.as_bytes()).mint(ALICE, "alice", Duration::from_secs(60));
    upgrade_refused(&broker.ws(&format!("/live?token={forged}")), None).await;
    upgrade_refused(&broker.ws("/rooms"), Some(&forged)).await;
    let valid = TokenKeys::new(JWT.as_bytes()).mint(ALICE, "alice", Duration::from_secs(600));
    let live = WsClient::connect(&broker.ws(&format!("/live?token={valid}"))).await;
    let (_, rooms) = awc::Client::new()
        .ws(broker.ws("/rooms"))
        .bearer_auth(&valid)
        .connect()
        .await
        .expect("bearer upgrade");
    drop((live, rooms, alice));

    let (stdout, stderr) = broker.stop();
    let signature = |jwt: &str| jwt.rsplit('.').next().expect("signature").to_owned();
    let credentials = [
        ADMIN_KEY,
        WRONG_ADMIN_KEY,
        JWT,
        OTHER_JWT,
        CONCIERGE,
        WRONG_CONCIERGE,
        &valid,
        &signature(&valid),
        &forged,
        &signature(&forged),
        &fs_key,
        &unknown_key,
    ];
    // The level took effect: the broker's own debug lines are there.
    assert!(
        stderr.contains("DEBUG") && stderr.contains("connection"),
        "{stderr}"
    );
    assert_clean("stderr", &stderr, &credentials);
    assert_clean("stdout", &stdout, &credentials);

    // `check-config` shows every secret key, redacted.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .output()
        .expect("check-config");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("\"<redacted>\"").count(), 3, "{stdout}");
    assert_clean("check-config stdout", &stdout, &credentials);
    assert_clean(
        "check-config stderr",
        &String::from_utf8_lossy(&output.stderr),
        &credentials,
    );
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(
        &path,
        format!(
            "[admin]\napi_key = \"{ADMIN_KEY}\"\n[auth]\njwt_secret = \"{JWT}\"\n\
             [concierge]\nsecret = \"{CONCIERGE}\"\n"
        ),
    )
    .expect("write config");
    path
}
