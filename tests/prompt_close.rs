//! Closing is prompt in every protocol: once a client's close frame is
//! answered, the broker ends the TCP connection itself. Per RFC 6455 the
//! client waits for the server to close first, so a broker that lingers
//! holds up every client's shutdown (actix-http's linger kept each socket
//! 0.5 to 1 s after the handshake; the reference closes in about 1 ms).

mod common;

use std::time::Duration;

use common::{tokens, Broker, RawWs};

/// Opcodes of the frames the raw client reads and sends.
const CLOSE: u8 = 0x8;
const TEXT: u8 = 0x1;

/// Far below actix-http's linger (at least 0.5 s), far above a loopback
/// round trip: a broker that ends the socket at the handshake passes even
/// on a busy machine, one that waits for its linger timer cannot.
const PROMPT: Duration = Duration::from_millis(400);

/// Sends `first` (if any) and reads the `answers` text frames the broker
/// sends on its own or in answer, then closes with 1000 and expects the
/// close answered with 1000 and the socket ended promptly.
fn client_close_is_prompt(broker: &Broker, path: &str, first: Option<&str>, answers: usize) {
    let mut ws = RawWs::connect(&broker.addr, path);
    if let Some(text) = first {
        ws.send_frame(TEXT, text.as_bytes());
    }
    for _ in 0..answers {
        let (opcode, _) = ws.next_frame();
        assert_eq!(opcode, TEXT, "{path}: a greeting or an answer");
    }
    ws.send_frame(CLOSE, &1000u16.to_be_bytes());
    let (before, code) = ws.read_until_close();
    assert!(
        before.is_empty(),
        "{path}: frames after the close: {before:?}"
    );
    assert_eq!(code, 1000, "{path}: the close is echoed");
    let ended = ws.ends_within(Duration::from_secs(5));
    assert!(
        ended.is_some_and(|after| after < PROMPT),
        "{path}: the socket ended {ended:?} after the close handshake, not within {PROMPT:?}"
    );
}

#[actix_rt::test]
async fn every_protocol_ends_the_socket_once_the_client_close_is_answered() {
    let broker = Broker::with(tokens::options());
    let user = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b";
    let token = tokens::token(user, "closer");
    client_close_is_prompt(
        &broker,
        "/concierge",
        Some(r#"{"type":"IDENTIFY","name":"closer","version":"0.2.0"}"#),
        1,
    );
    // connection_response, all_rooms, message_history, users_online, user_join.
    client_close_is_prompt(
        &broker,
        "/chat/ws",
        Some(r#"{"event_type":"connection_request","username":"closer"}"#),
        5,
    );
    // reset; the `session` frame with the connection's key.
    client_close_is_prompt(&broker, "/sessions", None, 1);
    client_close_is_prompt(&broker, &format!("/live?token={token}"), None, 0);
    client_close_is_prompt(&broker, &format!("/rooms?token={token}"), None, 1);
}

#[actix_rt::test]
async fn a_close_before_anything_else_is_prompt_too() {
    let broker = Broker::start();
    client_close_is_prompt(&broker, "/concierge", None, 0);
    client_close_is_prompt(&broker, "/chat/ws", None, 0);
}

/// The broker closes first (`first` is refused with `code`); the client
/// answers the close frame as RFC 6455 asks, and the broker then ends the
/// socket at once rather than after actix-http's linger.
fn broker_close_is_prompt(broker: &Broker, path: &str, first: &str, code: u16) {
    let mut ws = RawWs::connect(&broker.addr, path);
    ws.send_frame(TEXT, first.as_bytes());
    let (_, closed) = ws.read_until_close();
    assert_eq!(closed, code, "{path}: the broker's close code");
    ws.send_frame(CLOSE, &closed.to_be_bytes());
    let ended = ws.ends_within(Duration::from_secs(5));
    assert!(
        ended.is_some_and(|after| after < PROMPT),
        "{path}: the socket ended {ended:?} after the client answered, not within {PROMPT:?}"
    );
}

#[actix_rt::test]
async fn a_close_the_broker_starts_ends_the_socket_once_the_client_answers() {
    let broker = Broker::start();
    // Concierge: an incompatible version is closed with 4007.
    broker_close_is_prompt(
        &broker,
        "/concierge",
        r#"{"type":"IDENTIFY","name":"old","version":"0.0.1"}"#,
        4007,
    );
    // Chat: an invalid username is rejected, then closed with 1000.
    broker_close_is_prompt(
        &broker,
        "/chat/ws",
        r#"{"event_type":"connection_request","username":""}"#,
        1000,
    );
}

#[actix_rt::test]
async fn a_client_that_never_answers_the_close_is_cut_off_and_hears_nothing_more() {
    let broker = Broker::start();
    let mut ws = RawWs::connect(&broker.addr, "/concierge");
    ws.send_frame(
        TEXT,
        br#"{"type":"IDENTIFY","name":"old","version":"0.0.1"}"#,
    );
    let (_, closed) = ws.read_until_close();
    assert_eq!(closed, 4007);
    // Frames sent after the broker's close are ignored, and the socket ends
    // (with a FIN, not a reset) though the client never answers.
    ws.send_frame(TEXT, br#"{"type":"FETCH_CLIENTS"}"#);
    assert!(
        ws.ends_within(Duration::from_secs(5)).is_some(),
        "the broker never ended the socket"
    );
}
