//! WebSocket clients for the bench: the handshake (from a chosen source
//! address when one IP is not enough) and each protocol's join sequence,
//! written once and shared by every scenario.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// One client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one step of a join sequence may take before it counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a bench client could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket handshake or a frame failed.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The broker answered, but not as the protocol says it should.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The broker did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// An HTTP call failed.
    #[error("http: {0}")]
    Http(String),
    /// The arguments do not describe a run.
    #[error("{0}")]
    Usage(String),
}

/// The broker's two base URLs, derived from `--url`.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `ws://host:port` (no trailing slash).
    pub ws: String,
    /// `http://host:port` (no trailing slash).
    pub http: String,
}

impl Endpoints {
    /// Accepts `http://`, `https://`, `ws://` or `wss://` and derives the other.
    pub fn parse(url: &str) -> Result<Endpoints, BenchError> {
        let url = url.trim_end_matches('/');
        let (ws, http) = if let Some(rest) = url.strip_prefix("http://") {
            (format!("ws://{rest}"), url.to_owned())
        } else if let Some(rest) = url.strip_prefix("https://") {
            (format!("wss://{rest}"), url.to_owned())
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (url.to_owned(), format!("http://{rest}"))
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (url.to_owned(), format!("https://{rest}"))
        } else {
            return Err(BenchError::Usage(format!(
                "--url must start with http://, https://, ws:// or wss://, not {url:?}"
            )));
        };
        Ok(Endpoints { ws, http })
    }
}

/// Opens a WebSocket to `url`, from `source` when given (to spread many
/// connections over several loopback addresses), offering `subprotocol`.
pub async fn connect(
    url: &str,
    source: Option<IpAddr>,
    subprotocol: Option<&str>,
) -> Result<Ws, BenchError> {
    let mut request = url.into_client_request()?;
    if let Some(p) = subprotocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(p).map_err(|e| BenchError::Usage(e.to_string()))?,
        );
    }
    let uri = request.uri();
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| BenchError::Usage(format!("{host} does not resolve")))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(ws)
}

/// Sends one JSON value as a text frame.
pub async fn send_json(ws: &mut Ws, value: &Value) -> Result<(), BenchError> {
    ws.send(Message::text(value.to_string())).await?;
    Ok(())
}

/// Reads text frames until one parses as JSON and satisfies `wanted`;
/// `refused` turns a frame into an error (a reject, an error reply).
pub async fn expect_json(
    ws: &mut Ws,
    what: &'static str,
    wanted: impl Fn(&Value) -> bool,
    refused: impl Fn(&Value) -> Option<String>,
) -> Result<Value, BenchError> {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let Ok(value) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if let Some(reason) = refused(&value) {
                        return Err(BenchError::Protocol(format!("{what}: {reason}")));
                    }
                    if wanted(&value) {
                        return Ok(value);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(BenchError::Protocol(format!(
                        "{what}: closed by the broker ({frame:?})"
                    )))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(BenchError::Protocol(format!("{what}: connection ended"))),
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, wait)
        .await
        .map_err(|_| BenchError::Timeout(what))?
}

/// Closes politely: sends a close frame, waits (bounded) for the broker's
/// answering close, then drops the socket.
pub async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                return;
            }
        }
    })
    .await;
}

/// Keeps `ws` alive until `stop` changes: reads everything (which answers
/// WebSocket pings), answers the rooms protocol's JSON pings, then closes.
pub async fn hold(mut ws: Ws, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(pong) = rooms_pong(&text) {
                        let _ = ws.send(Message::text(pong)).await;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
    close(ws).await;
}

fn field<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The workshop chat: connect to `room` (created if new) as `name` and wait
/// until the room has announced us.
pub async fn chat_join(endpoints: &Endpoints, room: &str, name: &str) -> Result<Ws, BenchError> {
    let mut ws = connect(&format!("{}/chat/ws/{room}", endpoints.ws), None, None).await?;
    send_json(
        &mut ws,
        &json!({"event_type": "connection_request", "username": name}),
    )
    .await?;
    expect_json(
        &mut ws,
        "chat user_join",
        |v| field(v, "event_type") == "user_join" && field(v, "username") == name,
        |v| (field(v, "event_type") == "connection_reject").then(|| field(v, "message").to_owned()),
    )
    .await?;
    Ok(ws)
}

/// A chat message frame from `name`.
pub fn chat_message(name: &str, text: &str) -> String {
    json!({"event_type": "message", "username": name, "message": text}).to_string()
}

/// The chat: moves to `room` and waits for the answer.
pub async fn chat_switch(ws: &mut Ws, room: &str) -> Result<(), BenchError> {
    send_json(
        ws,
        &json!({"event_type": "room_switch_request", "room_name": room}),
    )
    .await?;
    expect_json(
        ws,
        "chat room_switch_response",
        |v| field(v, "event_type") == "room_switch_response",
        |v| (field(v, "event_type") == "room_switch_reject").then(|| v.to_string()),
    )
    .await
    .map(drop)
}

/// The concierge: connect and IDENTIFY as `name`; returns after HELLO.
pub async fn concierge_identify(
    endpoints: &Endpoints,
    name: &str,
    secret: Option<&str>,
    source: Option<IpAddr>,
) -> Result<Ws, BenchError> {
    let url = format!("{}/concierge", endpoints.ws);
    let mut ws = connect(&url, source, Some("ert-concierge")).await?;
    send_json(
        &mut ws,
        &json!({"type": "IDENTIFY", "name": name, "nickname": null,
                "version": "0.2.0", "tags": [], "secret": secret}),
    )
    .await?;
    expect_json(
        &mut ws,
        "concierge HELLO",
        |v| field(v, "type") == "HELLO",
        |_| None,
    )
    .await?;
    Ok(ws)
}

/// The concierge: a request whose sequenced reply has type `reply` and,
/// when it says, `successful: true`.
pub async fn concierge_request(
    ws: &mut Ws,
    request: &Value,
    reply: &'static str,
) -> Result<(), BenchError> {
    send_json(ws, request).await?;
    expect_json(
        ws,
        reply,
        |v| v.get("seq").is_some() && field(v, "type") == reply,
        |v| {
            let ty = field(v, "type");
            let failed = v.get("seq").is_some()
                && (ty.starts_with("INVALID_")
                    || ty.starts_with("ERROR_")
                    || ty == "BAD"
                    || (ty == reply && v.get("successful") == Some(&Value::Bool(false))));
            failed.then(|| v.to_string())
        },
    )
    .await
    .map(drop)
}

/// A concierge MESSAGE to every subscriber of `service`.
pub fn concierge_message(service: &str, data: &str) -> String {
    json!({"type": "MESSAGE", "target": {"type": "SERVICE", "service": service}, "data": data})
        .to_string()
}

/// A permissioned-rooms connection: its session key and user id.
pub struct RoomsSession {
    /// The socket.
    pub ws: Ws,
    /// The session key every command carries.
    pub key: String,
    /// Our user id (the token's `sub`).
    pub user_id: String,
}

/// Permissioned rooms: connect as `name` with a token minted from `secret`
/// and read the session frame. A rooms user id (the token's `sub`) must be
/// a UUID (PROTOCOLS.md §5), so each connection is a new user with a random
/// one; `name` is the token's `name` claim.
pub async fn rooms_connect(
    endpoints: &Endpoints,
    secret: &str,
    name: &str,
    source: Option<IpAddr>,
) -> Result<RoomsSession, BenchError> {
    let user_id = uuid::Uuid::new_v4().to_string();
    let keys = switchboard_actors::auth::TokenKeys::new(secret.as_bytes());
    let token = keys.mint(&user_id, name, Duration::from_secs(3600));
    let url = format!("{}/rooms?token={token}", endpoints.ws);
    let mut ws = connect(&url, source, None).await?;
    let session = expect_json(
        &mut ws,
        "rooms session",
        |v| field(v, "type") == "session",
        |v| (field(v, "type") == "error").then(|| field(v, "message").to_owned()),
    )
    .await?;
    Ok(RoomsSession {
        ws,
        key: field(&session, "key").to_owned(),
        user_id,
    })
}

impl RoomsSession {
    /// Creates an open room and waits until we are in it (the creator
    /// enters at once, as its admin); returns its id.
    pub async fn create_room(&mut self, name: &str) -> Result<String, BenchError> {
        send_json(
            &mut self.ws,
            &json!({"type": "create", "key": self.key, "name": name, "closed": false}),
        )
        .await?;
        let created = self
            .answer("rooms created", |v| field(v, "type") == "created")
            .await?;
        self.own_event("enter").await?;
        Ok(field(&created, "room_id").to_owned())
    }

    /// Enters `room_id` and waits for our own `enter`.
    pub async fn enter(&mut self, room_id: &str) -> Result<(), BenchError> {
        self.move_to("enter", room_id).await
    }

    /// Leaves `room_id` and waits for our own `exit`.
    pub async fn exit(&mut self, room_id: &str) -> Result<(), BenchError> {
        self.move_to("exit", room_id).await
    }

    async fn move_to(&mut self, command: &'static str, room_id: &str) -> Result<(), BenchError> {
        send_json(
            &mut self.ws,
            &json!({"type": command, "key": self.key, "room_id": room_id}),
        )
        .await?;
        self.own_event(command).await
    }

    /// Waits for the room's `event` about us.
    async fn own_event(&mut self, event: &'static str) -> Result<(), BenchError> {
        let me = self.user_id.clone();
        self.answer(event, |v| {
            field(v, "type") == event && field(v, "user_id") == me
        })
        .await
        .map(drop)
    }

    /// Waits for a frame satisfying `wanted`; an `error` frame fails.
    async fn answer(
        &mut self,
        what: &'static str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Value, BenchError> {
        expect_json(&mut self.ws, what, wanted, |v| {
            (field(v, "type") == "error").then(|| field(v, "message").to_owned())
        })
        .await
    }
}

/// The answer a rooms client owes to the server's JSON `ping {time}`.
pub fn rooms_pong(frame: &str) -> Option<String> {
    if !frame.starts_with(r#"{"type":"ping""#) {
        return None;
    }
    let ping: Value = serde_json::from_str(frame).ok()?;
    Some(json!({"type": "pong", "time": ping.get("time")?}).to_string())
}

/// One value of the broker's `/metrics`: the sum over every series of
/// `name` (all label sets), or `None` when the broker does not export it.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// Fetches the broker's `/metrics` text (blocking; call from a blocking task).
pub fn scrape(http: &str) -> Result<String, BenchError> {
    let agent = http_agent();
    agent
        .get(&format!("{http}/metrics"))
        .call()
        .map_err(|e| BenchError::Http(e.to_string()))?
        .body_mut()
        .read_to_string()
        .map_err(|e| BenchError::Http(e.to_string()))
}

/// Fetches `/metrics` from async code.
pub async fn scrape_async(http: &str) -> Result<String, BenchError> {
    let http = http.to_owned();
    blocking(move || scrape(&http)).await
}

/// Runs a blocking HTTP call off the async workers; an HTTP error, like a
/// task that could not run, is [`BenchError::Http`].
pub async fn blocking<T, E>(
    call: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, BenchError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| BenchError::Http(e.to_string()))?
        .map_err(|e| BenchError::Http(e.to_string()))
}

/// A keep-alive HTTP client whose error statuses are values, not errors.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(STEP_TIMEOUT))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_derive_each_other() {
        let e = Endpoints::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (e.ws.as_str(), e.http.as_str()),
            ("ws://127.0.0.1:8080", "http://127.0.0.1:8080")
        );
        let e = Endpoints::parse("ws://127.0.0.1:9100").unwrap();
        assert_eq!(e.http, "http://127.0.0.1:9100");
        assert!(Endpoints::parse("127.0.0.1:8080").is_err());
    }

    #[test]
    fn a_metric_sums_its_series_and_ignores_longer_names() {
        let text = "# HELP x\nswitchboard_connections{protocol=\"chat\"} 3\n\
                    switchboard_connections{protocol=\"live\"} 4\n\
                    switchboard_connections_total 99\n";
        assert_eq!(metric(text, "switchboard_connections"), Some(7.0));
        assert_eq!(metric(text, "switchboard_missing"), None);
    }

    #[test]
    fn only_a_rooms_ping_gets_a_pong() {
        assert_eq!(
            rooms_pong(r#"{"type":"ping","time":42}"#).as_deref(),
            Some(r#"{"time":42,"type":"pong"}"#)
        );
        assert_eq!(rooms_pong(r#"{"type":"message","content":"ping"}"#), None);
    }
}
