//! The workshop chat's HTTP API under `{chat.path}` (PROTOCOLS.md §2), with
//! CORS headers so the browser client can call it from another origin.
//!
//! Posting a message delivers it exactly like a WebSocket `message` (the
//! room actor stores and broadcasts it). Invalid input answers 400 with the
//! reference backend's shape, `{"detail": "..."}`; clearing Global needs the
//! admin key.

use actix::Addr;
use actix_cors::Cors;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;
use switchboard_actors::chat::wire::{check_name, HistoryEntry, GLOBAL_ROOM};
use switchboard_actors::chat::{EnsureRoom, FindRoom, GetHistory, ListRooms, Purge, Room, Say};
use switchboard_actors::registry::Registry;

use super::admin::Admin;
use super::AppState;

/// A chat API failure: `{"detail": "..."}` with its status.
#[derive(Debug, thiserror::Error)]
pub enum ChatApiError {
    /// 400: the input breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// 500: the broker could not do it (details are logged).
    #[error("internal error")]
    Internal(String),
}

impl ResponseError for ChatApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ChatApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ChatApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ChatApiError::Internal(detail) = self {
            log::error!("chat API: {detail}");
        }
        HttpResponse::build(self.status_code()).json(json!({ "detail": self.to_string() }))
    }
}

impl From<actix::MailboxError> for ChatApiError {
    fn from(e: actix::MailboxError) -> Self {
        ChatApiError::Internal(format!("actor unreachable: {e}"))
    }
}

/// Mounts the chat API; `/ws` and `/ws/{room}` (WebSocket upgrades) first,
/// so a room may be called `ws`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let upgrade = || actix_web::guard::Header("upgrade", "websocket");
    cfg.app_data(
        web::JsonConfig::default()
            .error_handler(|e, _| ChatApiError::Invalid(format!("invalid JSON body: {e}")).into()),
    )
    .route("/ws", web::get().guard(upgrade()).to(crate::ws::chat))
    .route(
        "/ws/{room}",
        web::get().guard(upgrade()).to(crate::ws::chat),
    )
    .route("/send-message", web::post().to(send_global))
    .route("/{room}/send-message", web::post().to(send_to_room))
    .route("/messages", web::get().to(global_messages))
    .route("/{room}/messages", web::get().to(room_messages))
    .route("/{room}/messages/", web::get().to(room_messages))
    .route("/rooms", web::get().to(rooms))
    .route("/clear-chat", web::delete().to(clear_chat));
}

/// CORS for the chat API: the origins of `server.allowed_origins` may call
/// it, any origin when that list is empty (no credentials are used).
pub fn cors(allowed_origins: &[String]) -> Cors {
    let cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .max_age(3600);
    if allowed_origins.is_empty() {
        return cors.allow_any_origin();
    }
    let allowed = allowed_origins.to_vec();
    cors.allowed_origin_fn(move |origin, _| crate::ws::origin_allowed(origin.as_bytes(), &allowed))
}

/// The body of a send-message request.
#[derive(Deserialize)]
struct ChatMessage {
    username: String,
    message: String,
}

async fn send_global(
    state: web::Data<AppState>,
    body: web::Json<ChatMessage>,
) -> Result<HttpResponse, ChatApiError> {
    send(&state, GLOBAL_ROOM, body.into_inner()).await
}

async fn send_to_room(
    state: web::Data<AppState>,
    room: web::Path<String>,
    body: web::Json<ChatMessage>,
) -> Result<HttpResponse, ChatApiError> {
    send(&state, &room, body.into_inner()).await
}

/// Checks and delivers a message like a WebSocket `message`; an unknown
/// room is created with the poster as creator.
async fn send(
    state: &AppState,
    room: &str,
    body: ChatMessage,
) -> Result<HttpResponse, ChatApiError> {
    let invalid = |e: &dyn ToString| ChatApiError::Invalid(e.to_string());
    let username = check_name(&body.username).map_err(|e| invalid(&e))?;
    let room = check_name(room).map_err(|_| invalid(&"invalid room name"))?;
    let message = body.message.trim().to_owned();
    if message.is_empty() {
        return Err(invalid(&"Message is empty"));
    }
    let limit = state.config.chat.max_message_length;
    if message.chars().count() > limit {
        return Err(invalid(&format!(
            "Message is longer than {limit} characters"
        )));
    }
    let registry = &state.broker.registry;
    let room = registry
        .send(EnsureRoom {
            name: room,
            creator: username.clone(),
        })
        .await?;
    room.send(Say { username, message }).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "success", "message": "Message sent"})))
}

async fn history(
    registry: &Addr<Registry>,
    room: String,
) -> Result<Vec<HistoryEntry>, ChatApiError> {
    match registry.send(FindRoom(room)).await? {
        Some(room) => Ok(room.send(GetHistory).await?),
        None => Ok(Vec::new()),
    }
}

async fn global_messages(state: web::Data<AppState>) -> Result<HttpResponse, ChatApiError> {
    let messages = history(&state.broker.registry, GLOBAL_ROOM.to_owned()).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": messages })))
}

async fn room_messages(
    state: web::Data<AppState>,
    room: web::Path<String>,
) -> Result<HttpResponse, ChatApiError> {
    let messages = history(&state.broker.registry, room.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": messages })))
}

async fn rooms(state: web::Data<AppState>) -> Result<HttpResponse, ChatApiError> {
    let rooms = state.broker.registry.send(ListRooms).await?;
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}

/// Empties Global's history (the operator's broom; WebSocket users cannot).
async fn clear_chat(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ChatApiError> {
    let global: Option<Addr<Room>> = state
        .broker
        .registry
        .send(FindRoom(GLOBAL_ROOM.to_owned()))
        .await?;
    let global =
        global.ok_or_else(|| ChatApiError::Internal("the Global room is missing".into()))?;
    global
        .send(Purge {
            by: "admin".to_owned(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"status": "success", "message": "Chat cleared"})))
}
