//! Back-pressure, end to end: clients whose process really stops reading
//! their socket (tiny receive buffer, zero window) while a room or the
//! session list is flooded. The broker must remove them, count them, keep
//! serving everyone else in order, stay within a memory bound, and free
//! their sockets (fd and connection gauge) within `limits.write_timeout`.

mod common;

use std::cell::Cell;
use std::collections::HashSet;
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use actix_codec::Framed;
use actix_web::web::Bytes;
use awc::ws::{self, Frame};
use awc::BoxedSocket;
use common::{admin, metric, wait_for_metric, Broker, Options, WsClient};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// A session-list watcher that never reads.
fn stalled_watcher(addr: &str) -> TcpStream {
    common::stalled_socket(addr, "/sessions")
}

/// What `/proc` shows of the broker process.
mod proc {
    use std::collections::{HashMap, HashSet};

    /// How many fds the process has open.
    pub fn fds(pid: u32) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the broker's fd table")
            .count()
    }

    /// The inodes of the sockets the process holds an fd for.
    pub fn socket_inodes(pid: u32) -> HashSet<u64> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the broker's fd table")
            .filter_map(|entry| {
                let target = std::fs::read_link(entry.ok()?.path()).ok()?;
                let target = target.to_str()?;
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// The socket inode of the broker's end of each TCP connection from a
    /// port in `clients` to `broker_port` (by client port), from /proc/net/tcp.
    pub fn broker_ends(broker_port: u16, clients: &HashSet<u16>) -> HashMap<u16, u64> {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let port = |field: &str| u16::from_str_radix(field.rsplit_once(':')?.1, 16).ok();
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (local, remote) = (port(fields.get(1)?)?, port(fields.get(2)?)?);
                let inode: u64 = fields.get(9)?.parse().ok()?;
                (local == broker_port && clients.contains(&remote) && inode != 0)
                    .then_some((remote, inode))
            })
            .collect()
    }

    /// The resident set size, in bytes.
    pub fn rss(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

/// Samples the broker's RSS every few milliseconds on its own thread (so a
/// busy test runtime cannot skip the peak) and keeps the highest value.
struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(proc::rss(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(proc::rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssPeak { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Polls `check` every 50 ms until it holds; fails with `what` (and the
/// last state `check` reported) after `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        let Err(state) = check() else {
            return;
        };
        assert!(
            started.elapsed() < within,
            "{what} not within {within:?}: {state}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The broker's fd count once it has not changed for 300 ms (HTTP
/// connections of earlier metric reads closing).
async fn settled_fds(pid: u32) -> usize {
    let mut last = proc::fds(pid);
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let now = proc::fds(pid);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

/// A session whose name is 16 KiB, so each `update` is a big frame.
fn name(i: usize) -> String {
    format!("{i:05}-{}", "x".repeat(16 * 1024))
}

/// Lists the session `flood` and returns its host API URL.
async fn create_flood_session(broker: &Broker) -> String {
    let url = broker.http("/api/sessions/flood");
    let created = admin(
        "PUT",
        &url,
        Some(&json!({
            "session_name": name(0), "active_users": 0, "joined_users": 0,
            "host_username": "h", "host_registration_date": "2020-01-01T00:00:00Z",
            "host_is_patron": false, "host_is_mentor": false,
            "session_begin_time": "2025-01-01T00:00:00Z",
        })),
    )
    .await;
    assert_eq!(created.status, 201);
    url
}

/// Renames the session `updates` times: `updates` × 16 KiB broadcast.
async fn flood(url: &str, updates: usize) {
    for i in 1..=updates {
        let body = json!({"session_name": name(i), "active_users": i});
        assert_eq!(admin("PATCH", url, Some(&body)).await.status, 200);
    }
}

/// A broker with small mailboxes listing the session `flood`, one watcher
/// that reads everything (past its snapshot) and one that never reads.
struct Scene {
    broker: Broker,
    url: String,
    healthy: WsClient,
    stalled: TcpStream,
}

async fn scene(options: Options) -> Scene {
    let broker = Broker::with(options.env("LIMITS__OUTBOUND_QUEUE", "8"));
    let url = create_flood_session(&broker).await;
    let mut healthy = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(healthy.recv().await, "reset\n1\n1.0.0");
    assert!(healthy.recv().await.starts_with("add\n1\nflood\n"));
    let stalled = stalled_watcher(&broker.addr);
    wait_for_metric(
        &broker,
        common::SESSION_CONNECTIONS,
        2.0,
        Duration::from_secs(10),
    )
    .await;
    Scene {
        broker,
        url,
        healthy,
        stalled,
    }
}

#[actix_rt::test]
async fn a_watcher_that_stops_reading_is_removed_and_its_socket_freed() {
    // Long enough that the fan-out notices the full mailbox before the kernel
    // gives up on the socket, even on a loaded machine.
    let write_timeout = Duration::from_secs(5);
    let Scene {
        broker,
        url,
        mut healthy,
        stalled,
    } = scene(Options::default().env("LIMITS__WRITE_TIMEOUT", "5s")).await;

    // 8 MiB of updates: far more than the socket buffers and the mailbox hold.
    let updates = 500;
    let reader = actix_rt::spawn(async move {
        for i in 1..=updates {
            let frame = healthy.recv().await;
            assert_eq!(
                frame,
                format!("update\n1\nflood\n{}\n{i}\n0", name(i)),
                "update {i}"
            );
        }
        healthy
    });
    for i in 1..=updates {
        let reply = admin(
            "PATCH",
            &url,
            Some(&json!({"session_name": name(i), "active_users": i})),
        )
        .await;
        assert_eq!(reply.status, 200);
    }
    let mut healthy = reader
        .await
        .expect("the healthy watcher got every update in order");

    // The stalled watcher was removed as a slow consumer and counted...
    wait_for_metric(
        &broker,
        "switchboard_slow_consumers_total{protocol=\"sessions\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    let slow = metric(
        &broker,
        "switchboard_messages_dropped_total{protocol=\"sessions\",reason=\"slow\"}",
    )
    .await;
    assert!(slow >= Some(1.0), "{slow:?}");
    // ...and the kernel deadline aborted its socket although its actor is frozen.
    wait_for_metric(
        &broker,
        common::SESSION_CONNECTIONS,
        1.0,
        write_timeout + Duration::from_secs(10),
    )
    .await;
    drop(stalled);

    // The broker still serves the healthy watcher.
    let reply = admin("PATCH", &url, Some(&json!({"joined_users": 7}))).await;
    assert_eq!(reply.status, 200);
    assert!(healthy.recv().await.ends_with(&format!("\n{updates}\n7")));
}

#[actix_rt::test]
async fn shutdown_is_not_held_up_by_a_client_that_stopped_reading() {
    // The kernel deadline is far away: only the shutdown deadline can end this.
    let Scene {
        mut broker,
        url,
        mut healthy,
        stalled: _stalled,
    } = scene(
        Options::default()
            .env("LIMITS__WRITE_TIMEOUT", "10m")
            .env("SERVER__SHUTDOWN_TIMEOUT", "1s"),
    )
    .await;
    let reader = actix_rt::spawn(async move {
        loop {
            match healthy.next_frame().await {
                awc::ws::Frame::Close(reason) => return reason,
                _ => continue,
            }
        }
    });
    flood(&url, 300).await;

    broker.signal(libc::SIGTERM);
    let reason = reader.await.unwrap().expect("a close reason");
    assert_eq!(u16::from(reason.code), 1001);
    let status = broker.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", broker.log());
    assert!(
        broker.log().contains("still open at the shutdown deadline"),
        "{}",
        broker.log()
    );
}

/// The chat's open-connections gauge.
const CHAT_CONNECTIONS: &str = "switchboard_connections{protocol=\"chat\"}";
/// Users joined to a chat room.
const CHAT_MEMBERS: &str = "switchboard_chat_members";
/// Chat messages a full member queue could not take.
const CHAT_SLOW_DROPS: &str =
    "switchboard_messages_dropped_total{protocol=\"chat\",reason=\"slow\"}";
/// Chat members removed as slow consumers.
const CHAT_SLOW_CONSUMERS: &str = "switchboard_slow_consumers_total{protocol=\"chat\"}";

/// `limits.outbound_queue` of the chat test, in deliveries (one message each).
const CHAT_QUEUE: usize = 16;
/// `limits.slow_consumer_drops` of the chat test.
const CHAT_EVICT_AFTER: usize = 4;
/// Messages in the chat flood and characters in each (ASCII: one byte each):
/// 3,000 × 16 KiB = 47 MiB, far more than the stalled member's socket
/// buffers (~125 KiB), actix's write buffer (32 KiB) and its queue hold.
const FLOOD_MESSAGES: usize = 3000;
const MESSAGE_CHARS: usize = 16 * 1024;
/// The sender stays at most this many messages ahead of the slowest healthy
/// member, so a healthy member never has more than this queued: it cannot
/// be mistaken for a slow consumer (`CHAT_QUEUE` is twice as much), however
/// slow the machine. The stalled member is not waited for.
const WINDOW: usize = 8;
/// How much the broker's RSS may grow during the flood.
///
/// What the bounded design holds at most: 5 members × `CHAT_QUEUE`
/// deliveries × 16 KiB = 1.25 MiB queued (frames are shared, so this counts
/// every copy); per connection actix's 32 KiB write buffer plus one written
/// batch (≤ `CHAT_QUEUE` × 16 KiB): 5 × 288 KiB = 1.4 MiB; the room's history
/// (100 × 16 KiB = 1.6 MiB) in the room and in SQLite's page cache (2 MiB):
/// ~6.5 MiB. Measured: +5 to +7.5 MiB (debug build, also beside two CPU
/// hogs). The rest is slack for the allocator (glibc's per-thread arenas keep
/// what they freed).
///
/// An unbounded queue holds every message sent between the stalled member's
/// freeze and the kernel's abort `write_timeout` later, up to all 47 MiB:
/// measured +63 MiB with `limits.outbound_queue = 1000000`, and still over
/// this bound beside two CPU hogs, where the flood is three times slower
/// (which is why this test's `write_timeout` is 10 s, not 5).
const RSS_GROWTH_BOUND: u64 = 20 * 1024 * 1024;

type Conn = Framed<BoxedSocket, ws::Codec>;

/// Filler for the flood's messages.
static FILLER: LazyLock<String> = LazyLock::new(|| "x".repeat(MESSAGE_CHARS));

/// The `i`th message of the flood: its sequence number, then filler.
fn chat_message(i: usize) -> String {
    format!("{i:06} {}", &FILLER[7..])
}

/// The `message` event of the flood's `i`th message: what the sender sends
/// and, byte for byte, what the broker relays (compared whole, not parsed:
/// this test binary is unoptimised and parsing 128 MiB of JSON would slow
/// the readers more than the broker).
fn message_frame(i: usize) -> String {
    format!(
        r#"{{"event_type":"message","username":"sender","message":"{}"}}"#,
        chat_message(i)
    )
}

/// The next text frame (pings and pongs skipped), within `within`.
async fn next_text<S>(stream: &mut S, within: Duration, who: &str) -> Bytes
where
    S: futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>> + Unpin,
{
    loop {
        let frame = actix_rt::time::timeout(within, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no chat event within {within:?}"))
            .unwrap_or_else(|| panic!("{who}: the connection ended"))
            .unwrap_or_else(|e| panic!("{who}: protocol error {e}"));
        match frame {
            Frame::Text(bytes) => return bytes,
            Frame::Ping(_) | Frame::Pong(_) => {}
            other => panic!("{who}: expected a text frame, got {other:?}"),
        }
    }
}

/// The next chat event (pings and pongs skipped), within `within`.
async fn next_event<S>(stream: &mut S, within: Duration, who: &str) -> Value
where
    S: futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>> + Unpin,
{
    let text = next_text(stream, within, who).await;
    serde_json::from_slice(&text).expect("JSON")
}

/// Joins the chat's Global room as `name`, reading up to its own `user_join`.
async fn chat_join(broker: &Broker, name: &str) -> Conn {
    let (_, mut conn) = awc::Client::new()
        .ws(broker.ws_url("/chat/ws"))
        .max_frame_size(1 << 20)
        .connect()
        .await
        .expect("chat upgrade");
    let request = json!({"event_type": "connection_request", "username": name});
    conn.send(ws::Message::Text(request.to_string().into()))
        .await
        .expect("send");
    let first = next_event(&mut conn, common::FRAME_TIMEOUT, name).await;
    assert_eq!(first["event_type"], "connection_response", "{first}");
    while next_event(&mut conn, common::FRAME_TIMEOUT, name).await
        != json!({"event_type": "user_join", "username": name})
    {}
    conn
}

/// Reads the flood as `who`: every message must be the next one, from the
/// sender, whole. Returns the stream and the other events seen in between.
async fn read_flood(
    who: String,
    mut stream: SplitStream<Conn>,
    progress: Rc<Cell<usize>>,
    wake: Rc<Notify>,
) -> (SplitStream<Conn>, Vec<Value>) {
    let mut others = Vec::new();
    while progress.get() < FLOOD_MESSAGES {
        let i = progress.get() + 1;
        let text = next_text(&mut stream, common::FRAME_TIMEOUT, &who).await;
        if text == message_frame(i).as_bytes() {
            progress.set(i);
            wake.notify_one();
            continue;
        }
        let event: Value = serde_json::from_slice(&text).expect("JSON");
        assert_ne!(
            event["event_type"],
            "message",
            "{who} expected message {i}, got {:.80}",
            String::from_utf8_lossy(&text)
        );
        others.push(event);
    }
    (stream, others)
}

/// Sends the flood, never more than `WINDOW` messages ahead of the slowest reader.
async fn send_flood(
    sink: &mut SplitSink<Conn, ws::Message>,
    progress: &[Rc<Cell<usize>>],
    wake: &Notify,
) {
    for i in 1..=FLOOD_MESSAGES {
        while progress.iter().map(|p| p.get()).min().unwrap_or(0) + WINDOW < i {
            wake.notified().await;
        }
        sink.send(ws::Message::Text(message_frame(i).into()))
            .await
            .expect("send");
    }
}

#[actix_rt::test]
async fn a_chat_member_that_stops_reading_is_dropped_and_the_others_get_everything_in_order() {
    let write_timeout = Duration::from_secs(10);
    let broker = Broker::with(
        Options::default()
            .env("LIMITS__OUTBOUND_QUEUE", &CHAT_QUEUE.to_string())
            .env("LIMITS__SLOW_CONSUMER_DROPS", &CHAT_EVICT_AFTER.to_string())
            .env("LIMITS__WRITE_TIMEOUT", "10s")
            .env("LIMITS__MESSAGES_PER_SECOND", "100000")
            .env("LIMITS__BURST", "100000")
            // Only the kernel deadline can end the stalled connection (its
            // frozen actor could not run a heartbeat anyway).
            .env("LIMITS__HEARTBEAT_INTERVAL", "1h")
            .env("LIMITS__HEARTBEAT_TIMEOUT", "2h")
            .env("CHAT__MAX_MESSAGE_LENGTH", &MESSAGE_CHARS.to_string()),
    );
    let pid = broker.pid();
    let names = ["sender", "h1", "h2", "h3"];
    let mut conns = Vec::new();
    for name in names {
        conns.push(chat_join(&broker, name).await);
    }
    wait_for_metric(&broker, CHAT_CONNECTIONS, 4.0, Duration::from_secs(10)).await;
    let baseline_fds = settled_fds(pid).await;

    // A member that joins, then never reads again.
    let mut stalled = common::stalled_socket(&broker.addr, "/chat/ws");
    let request = json!({"event_type": "connection_request", "username": "stalled"});
    common::send_raw_text(&mut stalled, &request.to_string());
    let arrived = json!({"event_type": "user_join", "username": "stalled"});
    for (conn, name) in conns.iter_mut().zip(names) {
        loop {
            let event = next_event(conn, common::FRAME_TIMEOUT, name).await;
            if event == arrived {
                break;
            }
            assert_eq!(event["event_type"], "user_join", "{name}: {event}");
        }
    }
    wait_for_metric(&broker, CHAT_MEMBERS, 5.0, Duration::from_secs(10)).await;
    let port = stalled.local_addr().unwrap().port();
    let broker_port: u16 = broker.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let stalled_end = proc::broker_ends(broker_port, &HashSet::from([port]))[&port];
    assert!(proc::socket_inodes(pid).contains(&stalled_end));

    // The flood: the sender's own echo makes a fourth healthy member.
    let wake = Rc::new(Notify::new());
    let progress: Vec<Rc<Cell<usize>>> = names.iter().map(|_| Rc::default()).collect();
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    for ((conn, name), progress) in conns.into_iter().zip(names).zip(&progress) {
        let (sink, stream) = conn.split();
        sinks.push(sink);
        readers.push(actix_rt::spawn(read_flood(
            name.to_owned(),
            stream,
            progress.clone(),
            wake.clone(),
        )));
    }
    let rss_before = proc::rss(pid);
    let rss = RssPeak::start(pid);
    let flood_started = Instant::now();
    send_flood(&mut sinks[0], &progress, &wake).await;
    let mut streams = Vec::new();
    for reader in readers {
        let got = reader.await;
        streams.push(got.expect("every healthy member got every message in order"));
    }
    let flood_ended = Instant::now();

    // Memory stayed bounded: nothing arrives after the flood, so its peak is behind us.
    let growth = rss.finish().saturating_sub(rss_before);
    eprintln!(
        "chat flood: {FLOOD_MESSAGES} × {MESSAGE_CHARS} B in {:?}; broker RSS {} MiB before, \
         peak +{:.1} MiB (bound +{} MiB)",
        flood_ended - flood_started,
        rss_before >> 20,
        growth as f64 / (1 << 20) as f64,
        RSS_GROWTH_BOUND >> 20,
    );
    assert!(
        growth < RSS_GROWTH_BOUND,
        "the broker's RSS grew by {} KiB during the flood (bound {} KiB)",
        growth >> 10,
        RSS_GROWTH_BOUND >> 10
    );

    // The stalled member was dropped from the room as a slow consumer...
    wait_for_metric(&broker, CHAT_SLOW_CONSUMERS, 1.0, Duration::from_secs(5)).await;
    let dropped = metric(&broker, CHAT_SLOW_DROPS).await;
    assert!(dropped >= Some(CHAT_EVICT_AFTER as f64), "{dropped:?}");
    let log = broker.log();
    assert!(
        log.contains("chat connection") && log.contains("removed as a slow consumer"),
        "{log}"
    );
    // ...and the kernel deadline aborted its socket although its actor is
    // frozen: the connection, the membership and the fd are gone (the
    // socket stalled when the flood began, so this is generous).
    let deadline = write_timeout + Duration::from_secs(10);
    let left = || deadline.saturating_sub(flood_ended.elapsed());
    wait_for_metric(&broker, CHAT_CONNECTIONS, 4.0, left()).await;
    wait_for_metric(&broker, CHAT_MEMBERS, 4.0, left()).await;
    eventually(left(), "the stalled member's fd freed", || {
        let open = proc::socket_inodes(pid).contains(&stalled_end);
        let fds = proc::fds(pid);
        if open || fds > baseline_fds {
            return Err(format!(
                "its socket open: {open}; {fds} fds, {baseline_fds} before it"
            ));
        }
        Ok(())
    })
    .await;
    eprintln!(
        "chat: stalled socket freed {:?} after the flood began; {dropped:?} slow drops",
        flood_started.elapsed()
    );

    // Everyone else saw it leave, and nothing else happened to them.
    let gone = json!({"event_type": "user_leave", "username": "stalled"});
    for ((stream, others), name) in streams.iter_mut().zip(names) {
        assert!(others.iter().all(|e| *e == gone), "{name}: {others:?}");
        if others.is_empty() {
            assert_eq!(next_event(stream, common::FRAME_TIMEOUT, name).await, gone);
        }
    }
    // The room still works for them.
    let after = json!({"event_type": "message", "username": "sender", "message": "still here"});
    sinks[0]
        .send(ws::Message::Text(after.to_string().into()))
        .await
        .unwrap();
    for ((stream, _), name) in streams.iter_mut().zip(names) {
        assert_eq!(next_event(stream, common::FRAME_TIMEOUT, name).await, after);
    }
    drop(stalled);
}

/// Session-list watchers that never read, in the second test.
const STALLED_WATCHERS: usize = 2000;
/// Updates in its flood (16 KiB each): 640 KiB per watcher, several times
/// what a stalled one absorbs before its actor freezes (~8 KiB receive
/// buffer, ~115 KiB broker send buffer, actix's 32 KiB write buffer, then its
/// queue of 8). The kernel holds ~220 MiB for the 2,000 until their abort.
const WATCHER_UPDATES: usize = 40;

#[actix_rt::test]
async fn two_thousand_connections_that_never_read_do_not_pin_their_fds() {
    let write_timeout = Duration::from_secs(5);
    let broker = Broker::with(
        Options::default()
            .env("LIMITS__OUTBOUND_QUEUE", "8")
            .env("LIMITS__WRITE_TIMEOUT", "5s")
            .env("LIMITS__MAX_CONNECTIONS_PER_IP", "2100")
            .env("LIMITS__HEARTBEAT_INTERVAL", "1h")
            .env("LIMITS__HEARTBEAT_TIMEOUT", "2h"),
    );
    let pid = broker.pid();
    let mut healthy = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(healthy.recv().await, "reset\n1\n1.0.0");
    wait_for_metric(
        &broker,
        common::SESSION_CONNECTIONS,
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let baseline_fds = settled_fds(pid).await;

    // 2,000 watchers that never read (4 threads open them).
    let connecting = Instant::now();
    let addr = broker.addr.clone();
    let stalled: Vec<TcpStream> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..STALLED_WATCHERS / 4)
                        .map(|_| stalled_watcher(&addr))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    wait_for_metric(
        &broker,
        common::SESSION_CONNECTIONS,
        (STALLED_WATCHERS + 1) as f64,
        Duration::from_secs(30),
    )
    .await;
    let ports: HashSet<u16> = stalled
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let broker_port: u16 = broker.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let ends: HashSet<u64> = proc::broker_ends(broker_port, &ports)
        .into_values()
        .collect();
    assert_eq!(ends.len(), STALLED_WATCHERS);
    let open = proc::socket_inodes(pid);
    assert!(ends.is_subset(&open));
    let fds_open = proc::fds(pid);
    assert!(fds_open >= baseline_fds + STALLED_WATCHERS, "{fds_open}");
    let connected_in = connecting.elapsed();

    // The flood, never more than 4 updates ahead of the healthy watcher.
    let url = create_flood_session(&broker).await;
    assert!(healthy.recv().await.starts_with("add\n1\nflood\n"));
    let progress = Rc::new(Cell::new(0));
    let wake = Rc::new(Notify::new());
    let reader = actix_rt::spawn({
        let (progress, wake) = (progress.clone(), wake.clone());
        async move {
            for i in 1..=WATCHER_UPDATES {
                let frame = healthy.recv().await;
                assert_eq!(
                    frame,
                    format!("update\n1\nflood\n{}\n{i}\n0", name(i)),
                    "update {i}"
                );
                progress.set(i);
                wake.notify_one();
            }
            healthy
        }
    });
    let flood_started = Instant::now();
    for i in 1..=WATCHER_UPDATES {
        while progress.get() + 4 < i {
            wake.notified().await;
        }
        let body = json!({"session_name": name(i), "active_users": i});
        assert_eq!(admin("PATCH", &url, Some(&body)).await.status, 200);
    }
    let mut healthy = reader
        .await
        .expect("the healthy watcher got every update in order");
    let flood_ended = Instant::now();

    // Within the deadline every stalled socket is aborted and its fd freed,
    // although their actors cannot run.
    let deadline = write_timeout + Duration::from_secs(10);
    wait_for_metric(
        &broker,
        common::SESSION_CONNECTIONS,
        1.0,
        deadline.saturating_sub(flood_ended.elapsed()),
    )
    .await;
    eventually(
        deadline.saturating_sub(flood_ended.elapsed()),
        "the stalled watchers' fds freed",
        || {
            let still = proc::socket_inodes(pid).intersection(&ends).count();
            let fds = proc::fds(pid);
            if still > 0 || fds > baseline_fds {
                return Err(format!(
                    "{still} stalled sockets open; {fds} fds, {baseline_fds} before them"
                ));
            }
            Ok(())
        },
    )
    .await;
    let slow = metric(
        &broker,
        "switchboard_slow_consumers_total{protocol=\"sessions\"}",
    )
    .await;
    eprintln!(
        "{STALLED_WATCHERS} stalled watchers connected in {connected_in:?}; flood of \
         {WATCHER_UPDATES} updates in {:?}; all freed {:?} after the flood began; \
         {slow:?} removed as slow consumers",
        flood_ended - flood_started,
        flood_started.elapsed(),
    );

    // The broker still serves the healthy watcher.
    let reply = admin("PATCH", &url, Some(&json!({"joined_users": 7}))).await;
    assert_eq!(reply.status, 200);
    assert!(healthy
        .recv()
        .await
        .ends_with(&format!("\n{WATCHER_UPDATES}\n7")));
    // Close this process's ends too (the broker reset them).
    drop(stalled);
}
