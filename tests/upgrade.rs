//! The upgrade hook and the socket a connection owns, played by raw TCP
//! clients with habits a WebSocket library hides: a first frame sent in the
//! same packet as the upgrade request, a frame dribbled out a byte at a
//! time, a handshake that is not one, an upgrade to a path nobody serves.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{read_http_answer, read_server_frame, Broker};
use serde_json::{json, Value};

/// The upgrade request for `path`, with `extra` header lines.
fn upgrade_request(addr: &str, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         {extra}\r\n"
    )
}

/// The handshake headers of a well-behaved client.
const HANDSHAKE: &str =
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// A masked client text frame (the mask is fixed: the test is not a browser).
fn masked_text(text: &str) -> Vec<u8> {
    assert!(text.len() < 126, "short frames only");
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads server text frames until one equals `want`.
fn read_until(stream: &mut TcpStream, want: &Value) {
    loop {
        let (opcode, payload) = read_server_frame(stream);
        assert_ne!(opcode, 0x8, "closed before {want}");
        if opcode == 0x1 && serde_json::from_slice::<Value>(&payload).ok().as_ref() == Some(want) {
            return;
        }
    }
}

fn join_request(name: &str) -> String {
    json!({"event_type": "connection_request", "username": name}).to_string()
}

fn joined(name: &str) -> Value {
    json!({"event_type": "user_join", "username": name})
}

#[actix_rt::test]
async fn a_frame_sent_with_the_upgrade_request_is_read() {
    let broker = Broker::start();
    let mut stream = connect(&broker.addr);
    let mut packet = upgrade_request(&broker.addr, "/chat/ws", HANDSHAKE).into_bytes();
    packet.extend(masked_text(&join_request("early")));
    stream.write_all(&packet).expect("one write");
    assert_eq!(read_http_answer(&mut stream).0, 101);
    read_until(&mut stream, &joined("early"));
}

#[actix_rt::test]
async fn a_frame_dribbled_out_a_byte_at_a_time_is_read_whole() {
    let broker = Broker::start();
    let mut stream = connect(&broker.addr);
    let request = upgrade_request(&broker.addr, "/chat/ws", HANDSHAKE);
    stream.write_all(request.as_bytes()).expect("upgrade");
    assert_eq!(read_http_answer(&mut stream).0, 101);
    for byte in masked_text(&join_request("slow")) {
        stream.write_all(&[byte]).expect("one byte");
        std::thread::sleep(Duration::from_millis(2));
    }
    read_until(&mut stream, &joined("slow"));
}

#[actix_rt::test]
async fn a_handshake_that_is_not_one_is_refused() {
    let broker = Broker::start();
    for (what, headers, status) in [
        ("no key", "Sec-WebSocket-Version: 13\r\n", 400),
        // RFC 6455 4.4: 426 Upgrade Required names the version spoken.
        (
            "an old version",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
            426,
        ),
    ] {
        for path in ["/sessions", "/chat/ws", "/concierge"] {
            let mut stream = connect(&broker.addr);
            let request = upgrade_request(&broker.addr, path, headers);
            stream.write_all(request.as_bytes()).expect("upgrade");
            assert_eq!(read_http_answer(&mut stream).0, status, "{what} on {path}");
        }
    }
}

#[actix_rt::test]
async fn an_upgrade_to_a_path_nobody_serves_gets_the_apis_404() {
    let broker = Broker::start();
    let mut stream = connect(&broker.addr);
    let request = upgrade_request(&broker.addr, "/nowhere", HANDSHAKE);
    stream.write_all(request.as_bytes()).expect("upgrade");
    let (status, body) = read_http_answer(&mut stream);
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body, json!({"error": "no such endpoint"}));
    // The answer ends the connection.
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).expect("end of stream"), 0);
}
