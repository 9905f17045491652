//! WebSocket upgrades: admission, then one connection actor per socket.
//!
//! Every protocol's upgrade goes through [`admit`], which applies the
//! connection caps (503 when over) and builds the shared connection core.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use switchboard_actors::auth::{token_from, Claims};
use switchboard_actors::chat::ChatMember;
use switchboard_actors::concierge::{wire, ConciergeClient};
use switchboard_actors::connection::{ConnectionCore, Disconnect, Heartbeat};
use switchboard_actors::live::{LiveClient, LiveUser};
use switchboard_actors::metrics::metrics;
use switchboard_actors::rooms::RoomsClient;
use switchboard_actors::sessions::Watcher;
use switchboard_actors::Protocol;

use crate::http::{ApiError, AppState};

/// Takes an admission ticket for a new `protocol` connection from this peer.
fn admit(
    req: &HttpRequest,
    state: &AppState,
    protocol: Protocol,
) -> Result<ConnectionCore, ApiError> {
    let peer = req.peer_addr();
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
    ))
}

/// `GET /sessions`: a session-list watcher.
pub async fn sessions(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let core = admit(&req, &state, Protocol::Sessions)?;
    let broker = &state.broker;
    let watcher = Watcher::new(
        core,
        broker.session_feed.clone(),
        broker.session_epoch.clone(),
    );
    ws::WsResponseBuilder::new(watcher, &req, stream)
        .frame_size(broker.limits.max_frame_bytes())
        .start()
}

/// `GET /concierge`: a concierge client. The `ert-concierge` subprotocol is
/// echoed when offered; the heartbeat is the concierge's own (close 4009).
pub async fn concierge(
    req: HttpRequest,
    stream: web::Payload,
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
        close: Disconnect {
            code: wire::close::HEARTBEAT_TIMEOUT,
            reason: "heartbeat timeout".into(),
        },
    };
    let core = admit(&req, &state, Protocol::Concierge)?.with_heartbeat(heartbeat);
    let client = ConciergeClient::new(
        core,
        broker.registry.clone(),
        broker.concierge_lobby.clone(),
        settings.clone(),
    );
    ws::WsResponseBuilder::new(client, &req, stream)
        .protocols(&[wire::SUBPROTOCOL])
        .frame_size(broker.limits.max_frame_bytes())
        .start()
}

/// `GET /chat/ws` and `GET /chat/ws/{room}`: a workshop chat user. The room
/// named in the URL is checked when the user asks to join, so a bad one gets
/// the protocol's `connection_reject`.
pub async fn chat(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    room: Option<web::Path<String>>,
) -> Result<HttpResponse, actix_web::Error> {
    let core = admit(&req, &state, Protocol::Chat)?;
    let broker = &state.broker;
    let member = ChatMember::new(
        core,
        broker.registry.clone(),
        broker.chat.clone(),
        room.map(web::Path::into_inner),
    );
    ws::WsResponseBuilder::new(member, &req, stream)
        .frame_size(broker.limits.max_frame_bytes())
        .start()
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
        log::info!("token upgrade from {:?} refused: {e}", req.peer_addr());
        ApiError::InvalidToken
    })
}

/// `GET /live`: a live presence client, authenticated by its JWT.
pub async fn live(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let claims = authenticate(&req, &state)?;
    let core = admit(&req, &state, Protocol::Live)?;
    let broker = &state.broker;
    let me = LiveUser {
        id: claims.sub,
        name: claims.name,
    };
    let client = LiveClient::new(core, me, broker.store.clone(), broker.presence.clone());
    ws::WsResponseBuilder::new(client, &req, stream)
        .frame_size(broker.limits.max_frame_bytes())
        .start()
}

/// `GET /rooms`: a permissioned-rooms client, authenticated by its JWT.
pub async fn rooms(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let claims = authenticate(&req, &state)?;
    let core = admit(&req, &state, Protocol::Rooms)?;
    let broker = &state.broker;
    let client = RoomsClient::new(
        core,
        claims.sub,
        broker.registry.clone(),
        broker.rooms.clone(),
    );
    ws::WsResponseBuilder::new(client, &req, stream)
        .frame_size(broker.limits.max_frame_bytes())
        .start()
}
