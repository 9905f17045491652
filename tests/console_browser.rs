//! The operator console in a real browser (issue 9): headless Chromium,
//! driven by `tests/browser/console.mjs` (playwright-core), against a real
//! broker. Needs Debian's `chromium` and `npm ci --prefix tests/browser`,
//! which `.ci/run` installs; run it with
//! `cargo test --test console_browser -- --ignored`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::rooms::{ALICE, BOB};
use common::tokens::token;
use common::{Broker, ADMIN_KEY};

/// How long the browser script may take before it is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// A screenshot of the console is larger than this (a blank page is not).
const MIN_SCREENSHOT_BYTES: usize = 20 * 1024;

/// `target/console.png` under `CARGO_TARGET_DIR` or this crate's `target/`.
fn screenshot_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| manifest.join(dir))
        .unwrap_or_else(|| manifest.join("target"));
    target.join("console.png")
}

/// Reads a child's pipe to the end on its own thread, so it never blocks.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The width and height of a PNG, read from its IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 24 || &bytes[..8] != SIGNATURE || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    Some((word(16), word(20)))
}

/// The console end to end: a wrong key is refused; the right key signs in;
/// the connection count pushed over `/api/admin/live` rises when four chat
/// clients and a session-list watcher connect; a chat publish through the
/// form and its confirmation reaches every member as exactly
/// `{"event_type":"system","severity":"info","message":...}`; disconnecting a
/// client from the Connections list closes it with 1008 and the typed
/// reason; removing a user from the room on the Chat rooms tab closes it
/// with 1008 naming the room and the room sees it leave; the overview shows
/// the process's memory and descriptors and those closes under 1008; the
/// Live presence tab shows a live user and its game; a connection's detail
/// names its protocol, identity, peer and chat room, and its close button
/// closes it with 1008; sorting the connections by id orders the rows; a
/// permanent removal from a permissioned room shows in the room's bans and
/// lifting it there lets the user enter again; the page logs no script or
/// CSP error; and a full-page screenshot is saved for the README.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules; .ci/run runs it"]
fn the_console_shows_the_broker_live_and_acts_on_it() {
    let broker = Broker::with(common::tokens::options());
    let user = |id: &str, name: &str| serde_json::json!({"id": id, "name": name, "token": token(id, name)});
    let tokens = serde_json::json!({
        "live": user("live-console-1", "livia"),
        "owner": user(ALICE, "alice"),
        "guest": user(BOB, "bob"),
    });
    let screenshot = screenshot_path();
    std::fs::create_dir_all(screenshot.parent().unwrap()).expect("target dir");
    let _ = std::fs::remove_file(&screenshot);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs");
    let mut node = Command::new("node")
        .arg(&script)
        .env("SWITCHBOARD_URL", broker.http(""))
        .env("SWITCHBOARD_ADMIN_KEY", ADMIN_KEY)
        .env("SCREENSHOT", &screenshot)
        .env("SWITCHBOARD_TOKENS", tokens.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (is Node.js installed?)");
    let stdout = drain(node.stdout.take().unwrap());
    let stderr = drain(node.stderr.take().unwrap());

    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = node.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!(
        "--- node stdout\n{}--- node stderr\n{}--- broker log (tail)\n{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
        tail(&broker.log(), 40),
    );
    match status {
        None => panic!("console.mjs did not finish within {SCRIPT_TIMEOUT:?}\n{output}"),
        Some(status) => assert!(status.success(), "console.mjs failed ({status})\n{output}"),
    }
    println!("{output}");

    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{output}", screenshot.display()));
    let (width, height) =
        png_size(&png).unwrap_or_else(|| panic!("{} is not a PNG", screenshot.display()));
    assert!(
        png.len() > MIN_SCREENSHOT_BYTES,
        "the screenshot is only {} bytes",
        png.len()
    );
    assert_eq!(width, 1366, "screenshot width");
    assert!(height >= 768, "screenshot height {height}");
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}
