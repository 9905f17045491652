//! The outbound queue's byte bound, end to end: a chat member that stops
//! reading while large messages are broadcast is closed as a slow consumer
//! (1013) once `limits.outbound_queue_bytes` of text waits for it, long
//! before `limits.outbound_queue` messages would have; what the broker held
//! for it is bounded by bytes, not by the message count times the frame size.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{metric, read_server_frame, wait_for_metric, Broker, Options, WsClient};
use serde_json::{json, Value};

/// `limits.outbound_queue`: so large that the count never fills during the flood.
const QUEUE_MESSAGES: usize = 1000;
/// `limits.outbound_queue_bytes`: 16 of the flood's messages.
const QUEUE_BYTES: usize = 256 * 1024;
/// `limits.slow_consumer_drops`.
const EVICT_AFTER: usize = 4;
/// Characters in each flood message (ASCII, so bytes too).
const MESSAGE_CHARS: usize = 16 * 1024;
/// Messages in the flood: fewer than `QUEUE_MESSAGES`, so without a byte
/// bound the stalled member never overflows and is never closed, but
/// 6.4 MiB, far more than its socket buffers and `QUEUE_BYTES` hold.
const FLOOD_MESSAGES: usize = 400;
/// At most this many flood messages reach the stalled member before its
/// close: `QUEUE_BYTES` (16 messages), what the kernel's socket buffers and
/// actix's write buffer absorbed before the member's actor stalled (some
/// 150 KiB, ~10 messages), and the batch being written then. Without a
/// byte bound it would be all `FLOOD_MESSAGES`.
const RECEIVED_BOUND: usize = 64;

const CHAT_SLOW_CONSUMERS: &str = "switchboard_slow_consumers_total{protocol=\"chat\"}";
const CHAT_SLOW_DROPS: &str =
    "switchboard_messages_dropped_total{protocol=\"chat\",reason=\"slow\"}";

/// The `i`th flood message: its number, then filler up to `MESSAGE_CHARS`.
fn flood_message(i: usize) -> String {
    let mut text = format!("{i:06} ");
    text.extend(std::iter::repeat_n('x', MESSAGE_CHARS - text.len()));
    text
}

/// Joins the Global room as `name` and reads up to its own `user_join`.
async fn join(broker: &Broker, name: &str) -> WsClient {
    let mut client = WsClient::connect(&broker.ws_url("/chat/ws")).await;
    let request = json!({"event_type": "connection_request", "username": name});
    client.send(&request.to_string()).await;
    let joined = json!({"event_type": "user_join", "username": name});
    while client.recv_json().await != joined {}
    client
}

/// Reads until the close frame: the flood messages received before it (in
/// order, checked) and the close code.
fn read_until_close(stream: &mut TcpStream) -> (usize, u16) {
    let mut received = 0;
    loop {
        let (opcode, payload) = read_server_frame(stream);
        match opcode {
            0x8 => return (received, u16::from_be_bytes([payload[0], payload[1]])),
            0x1 => {
                let event: Value = serde_json::from_slice(&payload).expect("JSON");
                if event["event_type"] == "message" {
                    received += 1;
                    assert_eq!(event["message"], flood_message(received), "in order");
                }
            }
            _ => {}
        }
    }
}

#[actix_rt::test]
async fn a_member_that_stops_reading_is_closed_by_the_byte_bound_before_the_count_bound() {
    let broker = Broker::with(
        Options::default()
            .env("LIMITS__OUTBOUND_QUEUE", &QUEUE_MESSAGES.to_string())
            .env("LIMITS__OUTBOUND_QUEUE_BYTES", &QUEUE_BYTES.to_string())
            .env("LIMITS__SLOW_CONSUMER_DROPS", &EVICT_AFTER.to_string())
            .env("LIMITS__WRITE_TIMEOUT", "5m")
            .env("LIMITS__MESSAGES_PER_SECOND", "100000")
            .env("LIMITS__BURST", "100000")
            .env("LIMITS__HEARTBEAT_INTERVAL", "1h")
            .env("LIMITS__HEARTBEAT_TIMEOUT", "2h")
            .env("CHAT__MAX_MESSAGE_LENGTH", &MESSAGE_CHARS.to_string()),
    );
    let mut sender = join(&broker, "sender").await;

    // A member with a 4 KiB receive buffer that joins, then stops reading.
    let mut stalled = common::stalled_socket(&broker.addr, "/chat/ws");
    let request = json!({"event_type": "connection_request", "username": "stalled"});
    common::send_raw_text(&mut stalled, &request.to_string());
    let arrived = json!({"event_type": "user_join", "username": "stalled"});
    while sender.recv_json().await != arrived {}

    // The flood, one message at a time: the sender reads its own echo of
    // each, so it is never behind. The member's departure may come between.
    let gone = json!({"event_type": "user_leave", "username": "stalled"});
    let mut saw_it_go = false;
    for i in 1..=FLOOD_MESSAGES {
        let message = json!({"event_type": "message", "username": "sender",
                             "message": flood_message(i)});
        sender.send(&message.to_string()).await;
        loop {
            let event = sender.recv_json().await;
            if event == message {
                break;
            }
            assert_eq!(
                event, gone,
                "the sender sees only its messages and the departure"
            );
            saw_it_go = true;
        }
    }

    // The byte bound filled, the drops were counted and the member removed.
    wait_for_metric(&broker, CHAT_SLOW_CONSUMERS, 1.0, Duration::from_secs(10)).await;
    let drops = metric(&broker, CHAT_SLOW_DROPS).await.unwrap_or(0.0);
    assert!(drops >= EVICT_AFTER as f64, "{drops} slow drops");
    assert!(
        drops <= (FLOOD_MESSAGES - EVICT_AFTER) as f64,
        "{drops} slow drops: the member was removed while the flood went on"
    );

    // Reading again, it finds a bounded prefix of the flood, then 1013.
    let (received, code) = read_until_close(&mut stalled);
    assert_eq!(code, 1013, "closed as a slow consumer");
    assert!(
        received <= RECEIVED_BOUND,
        "{received} messages reached the stalled member before its close (bound {RECEIVED_BOUND})"
    );
    eprintln!("stalled member: {received} messages, then 1013; {drops} slow drops");

    // The room goes on without the member.
    if !saw_it_go {
        assert_eq!(sender.recv_json().await, gone);
    }
    let after = json!({"event_type": "message", "username": "sender", "message": "still here"});
    sender.send(&after.to_string()).await;
    assert_eq!(sender.recv_json().await, after);
}
