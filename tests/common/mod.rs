//! The end-to-end harness: the real `switchboard` binary on 127.0.0.1:0
//! with its own SQLite file, driven by real WebSocket and HTTP clients.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod chat;
pub mod concierge;
pub mod rooms;
pub mod tokens;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{self, CloseReason, Frame};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

/// The admin key every test broker is started with.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// The open-connections gauge of the session list.
pub const SESSION_CONNECTIONS: &str = "switchboard_connections{protocol=\"sessions\"}";

/// How long a test waits for an expected frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker process started for one test.
pub struct Broker {
    child: Option<Child>,
    pub addr: String,
    data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// The data folder of a stopped broker, kept for a restart.
pub struct DataDir {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// Options for starting a broker: environment overrides on top of the test defaults.
#[derive(Clone, Default)]
pub struct Options {
    env: Vec<(String, String)>,
    data: Option<PathBuf>,
    no_admin_key: bool,
}

impl Options {
    /// Sets `SWITCHBOARD_<key>` (e.g. `LIMITS__BURST`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env
            .push((format!("SWITCHBOARD_{key}"), value.to_owned()));
        self
    }

    /// Starts the broker with no admin key configured.
    pub fn without_admin_key(mut self) -> Self {
        self.no_admin_key = true;
        self
    }

    /// Reuses the data folder of an earlier broker (restart tests).
    pub fn data(mut self, data: &Path) -> Self {
        self.data = Some(data.to_owned());
        self
    }
}

impl Broker {
    /// Starts a broker with the test defaults.
    pub fn start() -> Broker {
        Broker::with(Options::default())
    }

    /// Starts a broker with `options`.
    pub fn with(options: Options) -> Broker {
        let (dir, data) = match options.data {
            Some(data) => (None, data),
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let data = dir.path().to_owned();
                (Some(dir), data)
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("broker.log"))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env("SWITCHBOARD_SERVER__BIND", "127.0.0.1:0")
            .env("SWITCHBOARD_SERVER__WORKERS", "2")
            .env("SWITCHBOARD_STORAGE__PATH", data.join("switchboard.db"))
            .env("SWITCHBOARD_CONCIERGE__FILES_DIR", data.join("files"))
            .env("SWITCHBOARD_ADMIN__API_KEY", ADMIN_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if options.no_admin_key {
            cmd.env_remove("SWITCHBOARD_ADMIN__API_KEY");
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn switchboard");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    // `https://` when the broker was given a TLS certificate.
                    if let Some(addr) = line
                        .strip_prefix("switchboard listening on http://")
                        .or_else(|| line.strip_prefix("switchboard listening on https://"))
                    {
                        break addr.to_owned();
                    }
                }
                _ => {
                    let log = std::fs::read_to_string(data.join("broker.log")).unwrap_or_default();
                    panic!("broker exited before listening:\n{log}");
                }
            }
        };
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Broker {
            child: Some(child),
            addr,
            data,
            _dir: dir,
        }
    }

    /// The data folder (SQLite file and log).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:PORT` + `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends `signal` to the broker process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: kill(2) on the pid of a child this harness spawned and still owns.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    /// Waits for the broker to exit (at most `timeout`) and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker with SIGTERM, waits for a clean exit, and hands
    /// back its data folder for a restart.
    pub fn stop(mut self) -> DataDir {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(20));
        assert!(status.success(), "broker exited with {status}");
        DataDir {
            path: self.data.clone(),
            _dir: self._dir.take(),
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- broker log ----\n{}", self.log());
        }
    }
}

/// The time until `deadline` (zero once passed).
fn left(deadline: std::time::Instant) -> Duration {
    deadline.saturating_duration_since(std::time::Instant::now())
}

/// A real WebSocket client.
pub struct WsClient {
    conn: Framed<BoxedSocket, ws::Codec>,
}

/// What a client observed when it expected a close.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl WsClient {
    /// Connects to `url`; panics unless the upgrade succeeds.
    pub async fn connect(url: &str) -> WsClient {
        WsClient::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("upgrade of {url} failed: {e}"))
    }

    /// Connects to `url`, or returns the upgrade error.
    pub async fn try_connect(url: &str) -> Result<WsClient, awc::error::WsClientError> {
        Ok(WsClient::connect_with_protocols(url, &[]).await?.0)
    }

    /// Connects offering `protocols` (Sec-WebSocket-Protocol); returns the
    /// client and the subprotocol the server chose, if any.
    pub async fn connect_with_protocols(
        url: &str,
        protocols: &[&str],
    ) -> Result<(WsClient, Option<String>), awc::error::WsClientError> {
        let mut request = http_client().ws(url).max_frame_size(16 * 1024 * 1024);
        if !protocols.is_empty() {
            request = request.protocols(protocols);
        }
        let (response, conn) = request.connect().await?;
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((WsClient { conn }, chosen))
    }

    /// Sends a text message.
    pub async fn send(&mut self, text: &str) {
        self.conn
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// Sends a raw WebSocket message.
    pub async fn send_message(&mut self, msg: ws::Message) {
        self.conn.send(msg).await.expect("send");
    }

    /// The next frame other than a ping (pings are answered), before `deadline`.
    async fn next_unpinged(&mut self, deadline: std::time::Instant) -> Frame {
        loop {
            let frame = actix_rt::time::timeout(left(deadline), self.conn.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended without a close frame")
                .expect("protocol error");
            match frame {
                Frame::Ping(payload) => {
                    let _ = self.conn.send(ws::Message::Pong(payload)).await;
                }
                other => return other,
            }
        }
    }

    /// The next data or close frame (pings are answered, pongs skipped).
    pub async fn next_frame(&mut self) -> Frame {
        let deadline = std::time::Instant::now() + FRAME_TIMEOUT;
        loop {
            match self.next_unpinged(deadline).await {
                Frame::Pong(_) => {}
                other => return other,
            }
        }
    }

    /// Sends a ping and waits for its pong (answering the server's pings).
    pub async fn ping(&mut self, payload: &[u8]) {
        self.send_message(ws::Message::Ping(payload.to_vec().into()))
            .await;
        let deadline = std::time::Instant::now() + FRAME_TIMEOUT;
        loop {
            match self.next_unpinged(deadline).await {
                Frame::Pong(got) if got == payload => return,
                Frame::Pong(_) => {}
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    }

    /// The next text frame; panics on anything else.
    pub async fn recv(&mut self) -> String {
        match self.next_frame().await {
            Frame::Text(bytes) => String::from_utf8(bytes.to_vec()).expect("UTF-8 text"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame as JSON.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Waits for the close frame, skipping nothing else: any data frame first is a failure.
    pub async fn recv_close(&mut self) -> Closed {
        match self.next_frame().await {
            Frame::Close(Some(CloseReason { code, description })) => Closed {
                code: code.into(),
                reason: description.unwrap_or_default(),
            },
            Frame::Close(None) => Closed {
                code: 1005,
                reason: String::new(),
            },
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `wait` (pings are answered).
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match actix_rt::time::timeout(left, self.conn.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Frame::Ping(payload)))) => {
                    let _ = self.conn.send(ws::Message::Pong(payload)).await;
                }
                Ok(Some(Ok(Frame::Pong(_)))) => {}
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Whether the server ends the TCP connection (its close frame aside).
    pub async fn ended(&mut self) -> bool {
        let deadline = std::time::Instant::now() + FRAME_TIMEOUT;
        loop {
            match actix_rt::time::timeout(left(deadline), self.conn.next()).await {
                Ok(Some(Ok(Frame::Close(_) | Frame::Ping(_) | Frame::Pong(_)))) => {}
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) | Err(_) => return false,
            }
        }
    }
}

/// An HTTP answer: status and parsed JSON body (`Value::Null` when not JSON).
pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub text: String,
}

/// The HTTP client of the tests.
fn http_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

/// Sends an HTTP request; `key` becomes `Authorization: Bearer <key>`.
pub async fn request(method: &str, url: &str, key: Option<&str>, body: Option<&Value>) -> Reply {
    let mut req = http_client().request(method.parse().expect("method"), url);
    if let Some(key) = key {
        req = req.insert_header(("Authorization", format!("Bearer {key}")));
    }
    let mut resp = match body {
        Some(body) => req.send_json(body).await,
        None => req.send().await,
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let bytes = resp.body().limit(16 * 1024 * 1024).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply {
        status: resp.status().as_u16(),
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Sends a request with raw `body` bytes and extra `headers`.
pub async fn request_raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut req = http_client().request(method.parse().expect("method"), url);
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    let mut resp = req
        .send_body(body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let bytes = resp.body().limit(64 * 1024 * 1024).await.expect("body");
    (resp.status().as_u16(), bytes.to_vec())
}

/// Sends a bodiless request with `headers`; returns the status and the
/// response headers (lower-case names).
pub async fn request_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::HashMap<String, String>) {
    let mut req = http_client().request(method.parse().expect("method"), url);
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (resp.status().as_u16(), headers)
}

/// Sends a request with the admin key.
pub async fn admin(method: &str, url: &str, body: Option<&Value>) -> Reply {
    request(method, url, Some(ADMIN_KEY), body).await
}

/// Makes every store write of `broker` fail (`true`) or succeed again
/// (`false`), through the test build's fault injection.
pub async fn fail_store_writes(broker: &Broker, fail: bool) {
    let reply = admin(
        "PUT",
        &broker.http("/api/debug/fault/store"),
        Some(&serde_json::json!({ "fail_writes": fail })),
    )
    .await;
    assert_eq!(reply.status, 204, "store fault switch: {}", reply.text);
}

/// Makes every store write of `broker` take `delay` longer (zero: back to
/// normal), through the test build's fault injection: a slow disk.
pub async fn slow_store_writes(broker: &Broker, delay: Duration) {
    let reply = admin(
        "PUT",
        &broker.http("/api/debug/fault/store"),
        Some(&serde_json::json!({ "delay_ms": delay.as_millis() as u64 })),
    )
    .await;
    assert_eq!(reply.status, 204, "store fault switch: {}", reply.text);
}

/// Waits until the sample `series` equals `want`; fails after `within`.
pub async fn wait_for_metric(broker: &Broker, series: &str, want: f64, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        seen = metric(broker, series).await;
        if seen == Some(want) {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{series} is {seen:?}, expected {want} within {within:?}");
}

/// The value of one Prometheus sample line (`name{labels} value`), if present.
pub async fn metric(broker: &Broker, series: &str) -> Option<f64> {
    let reply = request("GET", &broker.http("/metrics"), None, None).await;
    reply.text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// A WebSocket client that writes raw frames, for bytes a well-behaved
/// client library refuses to send (invalid UTF-8, bad opcodes).
pub struct RawWs {
    stream: std::net::TcpStream,
}

impl RawWs {
    /// Connects and completes the handshake for `path`.
    pub fn connect(addr: &str, path: &str) -> RawWs {
        RawWs::connect_with_headers(addr, path, &[])
    }

    /// Connects and completes the handshake for `path`, sending `headers`
    /// (name, value) with the upgrade request.
    pub fn connect_with_headers(addr: &str, path: &str, headers: &[(&str, &str)]) -> RawWs {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(FRAME_TIMEOUT))
            .expect("read timeout");
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        RawWs { stream }
    }

    /// Sends one final frame with `opcode` and `payload` (masked with a zero key).
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        use std::io::Write;
        assert!(payload.len() < 126, "short frames only");
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).expect("send frame");
    }

    /// Reads one frame: (opcode, payload).
    pub fn next_frame(&mut self) -> (u8, Vec<u8>) {
        use std::io::Read;
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).expect("frame header");
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.stream.read_exact(&mut ext).expect("length");
                u16::from_be_bytes(ext) as usize
            }
            127 => {
                let mut ext = [0u8; 8];
                self.stream.read_exact(&mut ext).expect("length");
                u64::from_be_bytes(ext) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).expect("payload");
        (head[0] & 0x0f, payload)
    }

    /// How long after now the server ends the TCP connection with a FIN
    /// (reads and discards anything before the end); `None` if it is still
    /// open after `within`. A reset instead of a FIN fails the test.
    pub fn ends_within(&mut self, within: Duration) -> Option<Duration> {
        use std::io::Read;
        let start = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            let left = within.checked_sub(start.elapsed())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    panic!("the server reset the connection instead of closing it")
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads frames until a close frame and returns its code; data frames
    /// before it are returned too, as (opcode, payload).
    pub fn read_until_close(&mut self) -> (Vec<(u8, Vec<u8>)>, u16) {
        let mut before = Vec::new();
        loop {
            let (opcode, payload) = self.next_frame();
            if opcode == 0x8 {
                return (before, u16::from_be_bytes([payload[0], payload[1]]));
            }
            before.push((opcode, payload));
        }
    }
}

impl Broker {
    /// Kills the broker with SIGKILL (no graceful stop: nothing is flushed,
    /// nobody is told), waits for it, and hands back its data folder.
    pub fn kill(mut self) -> DataDir {
        self.signal(libc::SIGKILL);
        let status = self.wait_exit(Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "broker exited with {status} before the kill"
        );
        DataDir {
            path: self.data.clone(),
            _dir: self._dir.take(),
        }
    }
}

/// What a client saw next, for tests that must not panic on a lost connection.
#[derive(Debug)]
pub enum Next {
    /// A text frame.
    Text(String),
    /// A close frame.
    Close(Closed),
    /// The connection ended (or failed) without a close frame.
    Ended,
    /// Nothing arrived in time.
    TimedOut,
}

impl WsClient {
    /// The next text or close frame within `within`, never panicking: pings
    /// are answered, pongs and binary frames skipped.
    pub async fn next_or_end(&mut self, within: Duration) -> Next {
        let deadline = std::time::Instant::now() + within;
        loop {
            let frame = match actix_rt::time::timeout(left(deadline), self.conn.next()).await {
                Err(_) => return Next::TimedOut,
                Ok(None) | Ok(Some(Err(_))) => return Next::Ended,
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Frame::Text(bytes) => {
                    return Next::Text(String::from_utf8_lossy(&bytes).into_owned())
                }
                Frame::Close(Some(CloseReason { code, description })) => {
                    return Next::Close(Closed {
                        code: code.into(),
                        reason: description.unwrap_or_default(),
                    })
                }
                Frame::Close(None) => {
                    return Next::Close(Closed {
                        code: 1005,
                        reason: String::new(),
                    })
                }
                Frame::Ping(payload) => {
                    let _ = self.conn.send(ws::Message::Pong(payload)).await;
                }
                Frame::Pong(_) | Frame::Binary(_) | Frame::Continuation(_) => {}
            }
        }
    }

    /// Sends a text message; false if the connection is gone.
    pub async fn try_send(&mut self, text: &str) -> bool {
        self.conn
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .is_ok()
    }
}

impl Broker {
    /// The broker's process id, for what only `/proc` shows (its open fds,
    /// its memory).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

/// The messages of a chat room's history, oldest first (over HTTP).
pub async fn chat_history(broker: &Broker, room: &str) -> Vec<String> {
    let reply = request(
        "GET",
        &broker.http(&format!("/chat/{room}/messages")),
        None,
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}

/// Opens a WebSocket to `path` from a client that never reads: a 4 KiB
/// receive buffer, so its window closes after a few KiB. Returns the socket
/// once the handshake is answered.
///
/// The MSS is set to Ethernet's 1460 bytes: on loopback it is 64 KiB, and
/// Linux sizes the broker's send buffer from it (2 × 10 segments, ~3.9 MiB
/// per socket), which a real peer does not get and which would take 2,000
/// stalled sockets past the host's TCP memory limit (7.8 GiB). With it the
/// broker's send buffer starts at ~70 KiB and grows to ~115 KiB, as for a
/// peer on a real network.
pub fn stalled_socket(addr: &str, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_tcp_mss(1460).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(FRAME_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads an HTTP answer from a raw client's socket: its status and body
/// (no body for a 101).
pub fn read_http_answer(stream: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("answer head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head[9..12].parse().expect("status code");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse().expect("content-length"));
    let mut body = vec![0u8; if status == 101 { 0 } else { length }];
    stream.read_exact(&mut body).expect("answer body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Reads one server frame from a raw client's socket: (opcode, payload).
/// Server frames are never masked.
pub fn read_server_frame(stream: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).expect("length");
            usize::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).expect("length");
            usize::try_from(u64::from_be_bytes(ext)).expect("a sane length")
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("payload");
    (head[0] & 0x0f, payload)
}

/// Sends one short text frame from a raw client (masked with a zero key).
pub fn send_raw_text(stream: &mut std::net::TcpStream, text: &str) {
    use std::io::Write;
    assert!(text.len() < 126, "short frames only");
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    stream.write_all(&frame).unwrap();
}
