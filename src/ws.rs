//! WebSocket upgrades: admission, then one connection actor per socket.
//!
//! Every protocol's upgrade goes through [`admit`], which refuses a browser
//! page from an origin `server.allowed_origins` does not list (403), applies
//! the connection caps (503 when over) and builds the shared connection core.
//! An accepted upgrade is answered by [`accept`]: a 101 that carries the
//! actor's start, which the server's upgrade hook runs with the socket once
//! the answer is written (see `server.rs`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use switchboard_actors::auth::{token_from, Claims};
use switchboard_actors::chat::ChatMember;
use switchboard_actors::concierge::{wire, ConciergeClient};
use switchboard_actors::connection::{
    ClientHeaders, Connection, ConnectionCore, Disconnect, Heartbeat, Hooks,
};
use switchboard_actors::live::{LiveClient, LiveUser};
use switchboard_actors::metrics::metrics;
use switchboard_actors::rooms::RoomsClient;
use switchboard_actors::sessions::Watcher;
use switchboard_actors::transport::{StartConnection, Upgraded};
use switchboard_actors::Protocol;

use crate::http::{ApiError, AppState};

/// Whether a request whose `Origin` header is `origin` may proceed: always
/// when `allowed` is empty, otherwise only for a listed origin. Scheme, host
/// and port must match, compared ASCII case-insensitively, with a missing
/// port standing for the scheme's default (so `https://a.example:443` lists
/// `https://a.example`). The chat API's CORS uses the same rule.
pub fn origin_allowed(origin: &[u8], allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = std::str::from_utf8(origin).ok().and_then(Origin::parse) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|listed| Origin::parse(listed))
        .any(|listed| listed == origin)
}

/// Whether `text` is an http(s) origin `scheme://host[:port]` that
/// [`origin_allowed`] can match (how the config checks its list).
pub fn is_origin(text: &str) -> bool {
    Origin::parse(text).is_some()
}

/// A serialised origin, `scheme://host[:port]`, normalised for comparison.
#[derive(PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `None` for anything but an http(s) origin (`null` included).
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, authority) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return None;
        }
        // A bracketed IPv6 host contains colons of its own.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// 403 for a browser page whose origin is not allowed; a request without an
/// `Origin` header comes from a program, not a page, and passes.
pub(crate) fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match req.headers().get(header::ORIGIN) {
        Some(origin)
            if !origin_allowed(origin.as_bytes(), &state.config.server.allowed_origins) =>
        {
            Err(ApiError::Forbidden("origin not allowed".into()))
        }
        _ => Ok(()),
    }
}

/// Checks the origin, then takes an admission ticket for a new `protocol`
/// connection from this peer.
fn admit(
    req: &HttpRequest,
    state: &AppState,
    protocol: Protocol,
) -> Result<ConnectionCore, ApiError> {
    check_origin(req, state)?;
    let peer = crate::client_addr::client_addr(req);
    let broker = &state.broker;
    let ticket = broker
        .admission
        .admit(peer.map(|p| p.ip()))
        .map_err(|refused| {
            metrics().protocol(protocol).connections_refused.inc();
            log::warn!("{protocol} upgrade from {peer:?} refused: {refused}");
            ApiError::Unavailable(refused.to_string())
        })?;
    Ok(ConnectionCore::new(
        protocol,
        peer,
        broker.limits.clone(),
        broker.registry.clone(),
        ticket,
    )
    .with_client_headers(client_headers(req)))
}

/// Answers a WebSocket upgrade with 101, naming `subprotocol` when the
/// client offered it, and hands `start` the socket once the answer is
/// written. Requests that are not a WebSocket handshake get actix-http's
/// handshake errors (400, 405).
pub fn accept(
    req: &HttpRequest,
    subprotocol: Option<&str>,
    start: impl FnOnce(Upgraded) + 'static,
) -> Result<HttpResponse, actix_web::Error> {
    let mut answer = actix_http::ws::handshake(req.head())?;
    if let Some(subprotocol) = subprotocol.filter(|name| offered(req, name)) {
        answer.insert_header((header::SEC_WEBSOCKET_PROTOCOL, subprotocol));
    }
    let mut response = HttpResponse::from(answer.finish().map_into_boxed_body());
    response
        .extensions_mut()
        .insert(StartConnection::new(start));
    Ok(response)
}

/// Whether the client lists `name` in `Sec-WebSocket-Protocol`.
fn offered(req: &HttpRequest, name: &str) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|offer| offer.trim() == name)
}

/// Accepts the upgrade for a connection of protocol state `state`.
fn start<P: Hooks>(
    req: &HttpRequest,
    connection: Connection<P>,
    subprotocol: Option<&str>,
) -> Result<HttpResponse, actix_web::Error> {
    accept(req, subprotocol, move |upgraded| {
        connection.start_on(upgraded);
    })
}

/// The `Origin` and `User-Agent` of an upgrade request, as the operator
/// sees them (headers that are not text are left out).
fn client_headers(req: &HttpRequest) -> ClientHeaders {
    let text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    ClientHeaders::new(text(header::ORIGIN), text(header::USER_AGENT))
}

/// `GET /sessions`: a session-list watcher.
pub async fn sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let core = admit(&req, &state, Protocol::Sessions)?;
    let broker = &state.broker;
    let watcher = Connection::new(
        core,
        Watcher::new(broker.session_feed.clone(), broker.session_epoch.clone()),
    );
    start(&req, watcher, None)
}

/// `GET /concierge`: a concierge client. The `ert-concierge` subprotocol is
/// echoed when offered; the heartbeat is the concierge's own (close 4009).
pub async fn concierge(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let broker = &state.broker;
    let settings = &broker.concierge;
    let heartbeat = Heartbeat {
        interval: broker
            .limits
            .heartbeat_interval
            .min(settings.heartbeat_timeout / 2),
        timeout: settings.heartbeat_timeout,
        close: Disconnect::concierge(wire::close::HEARTBEAT_TIMEOUT, "heartbeat timeout"),
    };
    let core = admit(&req, &state, Protocol::Concierge)?.with_heartbeat(heartbeat);
    let client = Connection::new(
        core,
        ConciergeClient::new(
            broker.concierge_directory.clone(),
            broker.concierge_lobby.clone(),
            settings.clone(),
        ),
    );
    start(&req, client, Some(wire::SUBPROTOCOL))
}

/// `GET /chat/ws` and `GET /chat/ws/{room}`: a workshop chat user. The room
/// named in the URL is checked when the user asks to join, so a bad one gets
/// the protocol's `connection_reject`.
pub async fn chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    room: Option<web::Path<String>>,
) -> Result<HttpResponse, actix_web::Error> {
    let core = admit(&req, &state, Protocol::Chat)?;
    let broker = &state.broker;
    let member = Connection::new(
        core,
        ChatMember::new(
            broker.chat_directory.clone(),
            broker.chat.clone(),
            room.map(web::Path::into_inner),
        ),
    );
    start(&req, member, None)
}

/// The claims of the request's JWT (`?token=` or `Authorization: Bearer`);
/// anything else answers 401 before the upgrade.
fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Claims, ApiError> {
    let keys = state.tokens.as_ref().ok_or(ApiError::InvalidToken)?;
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = token_from(req.uri().query(), authorization).ok_or(ApiError::InvalidToken)?;
    keys.verify(&token).map_err(|e| {
        log::info!(
            "token upgrade from {:?} refused: {e}",
            crate::client_addr::client_addr(req)
        );
        ApiError::InvalidToken
    })
}

/// `GET /live`: a live presence client, authenticated by its JWT.
pub async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let claims = authenticate(&req, &state)?;
    let core = admit(&req, &state, Protocol::Live)?;
    let broker = &state.broker;
    let me = LiveUser {
        id: claims.sub,
        name: claims.name,
    };
    let client = Connection::new(
        core,
        LiveClient::new(me, broker.store.clone(), broker.presence.clone()),
    );
    start(&req, client, None)
}

/// `GET /rooms`: a permissioned-rooms client, authenticated by its JWT.
pub async fn rooms(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let claims = authenticate(&req, &state)?;
    // The rooms protocol keys users by UUID (PROTOCOLS.md §5).
    let user = state.broker.rooms.user_id(&claims.sub).ok_or_else(|| {
        log::info!(
            "rooms upgrade from {:?} refused: token sub is not a UUID",
            crate::client_addr::client_addr(&req)
        );
        ApiError::InvalidToken
    })?;
    let core = admit(&req, &state, Protocol::Rooms)?;
    let broker = &state.broker;
    let client = Connection::new(
        core,
        RoomsClient::new(user, broker.rooms_directory.clone(), broker.rooms.clone()),
    );
    start(&req, client, None)
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    fn allowed(origin: &str, list: &[&str]) -> bool {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        origin_allowed(origin.as_bytes(), &list)
    }

    #[test]
    fn an_empty_list_allows_anything() {
        assert!(allowed("https://evil.example", &[]));
        assert!(allowed("null", &[]));
    }

    #[test]
    fn scheme_host_and_port_must_all_match() {
        let list = ["https://app.example", "http://[::1]:8080"];
        assert!(allowed("https://app.example", &list));
        assert!(allowed("HTTPS://App.Example:443", &list));
        assert!(allowed("http://[::1]:8080", &list));
        for origin in [
            "http://app.example",
            "https://app.example:8443",
            "https://app.example.evil",
            "https://evil.example",
            "http://[::1]",
            "https://app.example/",
            "https://user@app.example",
            "https://app.example:",
            "null",
            "",
        ] {
            assert!(!allowed(origin, &list), "{origin}");
        }
    }
}
