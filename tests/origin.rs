//! `server.allowed_origins`: WebSocket upgrades from an unlisted browser
//! origin answer 403 on every protocol and on the console's socket (which
//! also takes the broker's own origin), and the chat API's CORS allows
//! exactly the listed origins (any origin when the list is empty).

mod common;

use std::io::Write;
use std::time::Duration;

use common::rooms::BOB;
use common::tokens::{options, token};
use common::{read_http_answer, request_headers, Broker};
use serde_json::Value;

const APP: &str = "https://app.example";
const EVIL: &str = "https://evil.example";

/// A broker with the JWT secret and `allowed_origins = [APP]`.
fn guarded() -> Broker {
    Broker::with(options().env("SERVER__ALLOWED_ORIGINS", &format!("[\"{APP}\"]")))
}

/// Every protocol's upgrade path, with the subprotocol it is opened with.
fn upgrades() -> Vec<(String, Option<&'static str>)> {
    let live = token("u1", "alice");
    let rooms = token(BOB, "bob");
    vec![
        ("/sessions".to_owned(), None),
        ("/chat/ws".to_owned(), None),
        ("/chat/ws/Global".to_owned(), None),
        ("/concierge".to_owned(), Some("ert-concierge")),
        (format!("/live?token={live}"), None),
        (format!("/rooms?token={rooms}"), None),
    ]
}

/// Sends a WebSocket handshake for `path` with `origin` (none: no header)
/// and returns the status and the body of the answer (empty for 101).
fn handshake(
    addr: &str,
    path: &str,
    origin: Option<&str>,
    protocol: Option<&str>,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(origin) = origin {
        head += &format!("Origin: {origin}\r\n");
    }
    if let Some(protocol) = protocol {
        head += &format!("Sec-WebSocket-Protocol: {protocol}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes()).expect("handshake");
    read_http_answer(&mut stream)
}

/// The console's live socket serves the console page, which runs on the
/// broker's own origin: that origin passes without being listed, a listed
/// one passes too, any other page is refused.
#[test]
fn the_console_socket_takes_its_own_origin_and_the_listed_ones() {
    let broker = guarded();
    let own = format!("http://{}", broker.addr);
    for origin in [Some(own.as_str()), Some(APP), None] {
        let (status, body) = handshake(&broker.addr, "/api/admin/live", origin, None);
        assert_eq!(status, 101, "from {origin:?}: {body}");
    }
    let (status, body) = handshake(&broker.addr, "/api/admin/live", Some(EVIL), None);
    assert_eq!(status, 403, "{body}");
}

#[test]
fn an_unlisted_origin_cannot_open_any_websocket() {
    let broker = guarded();
    for (path, protocol) in upgrades() {
        let (status, body) = handshake(&broker.addr, &path, Some(EVIL), protocol);
        assert_eq!(status, 403, "{path}: {body}");
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(json["error"], "origin not allowed", "{path}");

        // The listed origin (its host in any case, its default port spelled
        // out or not) and a program without an Origin header get through.
        for origin in [
            Some(APP),
            Some("https://APP.Example"),
            Some("https://app.example:443"),
            None,
        ] {
            let (status, body) = handshake(&broker.addr, &path, origin, protocol);
            assert_eq!(status, 101, "{path} from {origin:?}: {body}");
        }
        // Another scheme or port is another origin; so is `null`.
        for origin in ["http://app.example", "https://app.example:8443", "null"] {
            let (status, _) = handshake(&broker.addr, &path, Some(origin), protocol);
            assert_eq!(status, 403, "{path} from {origin}");
        }
    }
    // A token upgrade still needs its token, whatever the origin.
    let (status, _) = handshake(&broker.addr, "/live", Some(APP), None);
    assert_eq!(status, 401);
}

#[test]
fn with_no_list_any_origin_opens_websockets() {
    let broker = Broker::with(options());
    for (path, protocol) in upgrades() {
        for origin in [Some(EVIL), Some("null"), None] {
            let (status, body) = handshake(&broker.addr, &path, origin, protocol);
            assert_eq!(status, 101, "{path} from {origin:?}: {body}");
        }
    }
}

/// A CORS preflight for `GET {chat}/messages` from `origin`: the allowed
/// origin the answer names, if any.
async fn preflight(broker: &Broker, origin: &str) -> Option<String> {
    let (_, headers) = request_headers(
        "OPTIONS",
        &broker.http("/chat/messages"),
        &[("Origin", origin), ("Access-Control-Request-Method", "GET")],
    )
    .await;
    headers.get("access-control-allow-origin").cloned()
}

/// The allowed origin named by the answer to a plain cross-origin GET.
async fn simple_get(broker: &Broker, origin: &str) -> Option<String> {
    let (status, headers) =
        request_headers("GET", &broker.http("/chat/messages"), &[("Origin", origin)]).await;
    assert_eq!(status, 200);
    headers.get("access-control-allow-origin").cloned()
}

#[actix_rt::test]
async fn the_chat_api_allows_exactly_the_listed_origins() {
    let broker = guarded();
    assert_eq!(preflight(&broker, APP).await.as_deref(), Some(APP));
    assert_eq!(preflight(&broker, EVIL).await, None);
    assert_eq!(preflight(&broker, "http://app.example").await, None);
    assert_eq!(simple_get(&broker, APP).await.as_deref(), Some(APP));
    assert_eq!(simple_get(&broker, EVIL).await, None);

    // No list: any origin, as before.
    let open = Broker::start();
    assert_eq!(preflight(&open, EVIL).await.as_deref(), Some(EVIL));
    assert_eq!(simple_get(&open, EVIL).await.as_deref(), Some(EVIL));
}
