//! The workshop chat's HTTP API under `{chat.path}` (PROTOCOLS.md §2), with
//! CORS headers so the browser client can call it from another origin.
//!
//! Posting a message delivers it exactly like a WebSocket `message` (the
//! room actor stores and broadcasts it) and answers 200 only once the store
//! committed it; a room it creates is likewise committed before anyone hears
//! of it. Every error has the reference backend's shape, `{"detail": "..."}`:
//! 400 invalid input, 409 the room limit, 429 this address's rate, 503 the
//! store refused the write (nothing was broadcast). Clearing Global needs the
//! admin key.
//!
//! The API is unauthenticated, so each peer IP address gets a token bucket
//! (`chat.http_requests_per_second`, `chat.http_burst`); the buckets live in
//! one table shared by every HTTP worker, bounded to
//! [`TRACKED_ADDRESSES`] entries.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix::Addr;
use actix_cors::Cors;
use actix_web::http::StatusCode;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;
use switchboard_actors::chat::wire::{check_name, HistoryEntry, GLOBAL_ROOM};
use switchboard_actors::chat::{
    ChatDirectory, CreateRefused, EnsureRoom, FindChatRoom, GetHistory, ListRooms, NotStored,
    Purge, Room, Say,
};
use switchboard_actors::limits::TokenBucket;
use switchboard_actors::metrics::metrics;
use switchboard_actors::Protocol;
use tokio::sync::oneshot;

use super::admin::Admin;
use super::AppState;
use crate::config::ChatConfig;

/// A chat API failure: `{"detail": "..."}` with its status.
#[derive(Debug, thiserror::Error)]
pub enum ChatApiError {
    /// 400: the input breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// 409: a cap on what may be created is reached.
    #[error("{0}")]
    LimitReached(String),
    /// 429: this address sent more requests than its rate allows.
    #[error("Too many requests from this address; please slow down")]
    RateLimited,
    /// 503: the store refused the write, so nothing was done or broadcast.
    #[error("{0}")]
    NotStored(String),
    /// 500: the broker could not do it (details are logged).
    #[error("internal error")]
    Internal(String),
}

impl ResponseError for ChatApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ChatApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ChatApiError::LimitReached(_) => StatusCode::CONFLICT,
            ChatApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ChatApiError::NotStored(_) => StatusCode::SERVICE_UNAVAILABLE,
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

impl From<CreateRefused> for ChatApiError {
    fn from(refused: CreateRefused) -> Self {
        match refused {
            CreateRefused::LimitReached { .. } => ChatApiError::LimitReached(refused.to_string()),
            CreateRefused::NotSaved(_) => ChatApiError::NotStored(refused.to_string()),
            CreateRefused::Exists(_) => ChatApiError::Internal(refused.to_string()),
        }
    }
}

/// Addresses the rate limiter keeps a bucket for at most; past it, idle
/// (full) buckets are dropped first, then the longest-unused one.
pub const TRACKED_ADDRESSES: usize = 10_000;

/// Per-address token buckets for the chat API, shared by every worker. The
/// lock is held for a lookup and a little arithmetic, never across an await.
pub struct AddressLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl AddressLimiter {
    /// `rate` requests a second per address, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> Self {
        AddressLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `address` at `now`; false: over its rate.
    pub fn allow(&self, address: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(&address) && buckets.len() >= TRACKED_ADDRESSES {
            Self::make_room(&mut buckets, now);
        }
        buckets
            .entry(address)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .take(now)
    }

    /// Frees a slot: forgets every full bucket (a fresh one is the same),
    /// else the longest-unused one.
    fn make_room(buckets: &mut HashMap<IpAddr, TokenBucket>, now: Instant) {
        buckets.retain(|_, bucket| !bucket.is_full(now));
        if buckets.len() < TRACKED_ADDRESSES {
            return;
        }
        let oldest = buckets
            .iter()
            .min_by_key(|(_, bucket)| bucket.last_used())
            .map(|(address, _)| *address);
        if let Some(address) = oldest {
            buckets.remove(&address);
        }
    }

    /// How many addresses have a bucket.
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Proof that the request is within its address's chat API rate; a handler
/// that takes it answers 429 `{"detail"}` otherwise (with CORS headers, as
/// the CORS middleware wraps every answer).
pub struct WithinRate;

impl FromRequest for WithinRate {
    type Error = ChatApiError;
    type Future = Ready<Result<Self, ChatApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(limiter) = req.app_data::<web::Data<AddressLimiter>>() else {
            return ready(Err(ChatApiError::Internal(
                "the chat API's rate limiter is not configured".into(),
            )));
        };
        // A peer without an IP address (none over TCP) shares one bucket.
        let address =
            crate::client_addr::client_ip(req).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if limiter.allow(address, Instant::now()) {
            return ready(Ok(WithinRate));
        }
        metrics().limit_reached(Protocol::Chat, "http_requests_per_second");
        log::debug!("chat API: {address} is over its request rate");
        ready(Err(ChatApiError::RateLimited))
    }
}

/// The chat API for `config`: its rate limiter is made here, once, and
/// shared by every worker that mounts the returned routes.
pub fn routes(config: &ChatConfig) -> impl Fn(&mut web::ServiceConfig) + Clone + 'static {
    let limiter = Arc::new(AddressLimiter::new(
        config.http_requests_per_second,
        config.http_burst,
    ));
    move |cfg: &mut web::ServiceConfig| mount(cfg, Arc::clone(&limiter))
}

/// Mounts the chat API; `/ws` and `/ws/{room}` (WebSocket upgrades) first,
/// so a room may be called `ws`.
fn mount(cfg: &mut web::ServiceConfig, limiter: Arc<AddressLimiter>) {
    let upgrade = || actix_web::guard::Header("upgrade", "websocket");
    cfg.app_data(web::Data::from(limiter))
        .app_data(
            web::JsonConfig::default().error_handler(|e, _| {
                ChatApiError::Invalid(format!("invalid JSON body: {e}")).into()
            }),
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
    _: WithinRate,
    state: web::Data<AppState>,
    body: web::Json<ChatMessage>,
) -> Result<HttpResponse, ChatApiError> {
    send(&state, GLOBAL_ROOM, body.into_inner()).await
}

async fn send_to_room(
    _: WithinRate,
    state: web::Data<AppState>,
    room: web::Path<String>,
    body: web::Json<ChatMessage>,
) -> Result<HttpResponse, ChatApiError> {
    send(&state, &room, body.into_inner()).await
}

/// A room name from the path, checked like a WebSocket one.
fn room_name(raw: &str) -> Result<String, ChatApiError> {
    check_name(raw).map_err(|_| ChatApiError::Invalid("invalid room name".into()))
}

/// Checks and delivers a message like a WebSocket `message`; an unknown
/// room is created with the poster as creator. Answers 200 once the message
/// is committed and broadcast; if the store refuses the room or the
/// message, 503 and nothing was broadcast.
async fn send(
    state: &AppState,
    room: &str,
    body: ChatMessage,
) -> Result<HttpResponse, ChatApiError> {
    let invalid = |e: &dyn ToString| ChatApiError::Invalid(e.to_string());
    let username = check_name(&body.username).map_err(|e| invalid(&e))?;
    let room = room_name(room)?;
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
    let room = state
        .broker
        .chat_directory
        .send(EnsureRoom {
            name: room,
            creator: username.clone(),
        })
        .await??;
    let (confirm, confirmed) = oneshot::channel();
    room.send(Say {
        username,
        message,
        confirm: Some(confirm),
    })
    .await?;
    when_committed(
        confirmed,
        "The message could not be saved, so it was not sent; try again later",
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"status": "success", "message": "Message sent"})))
}

async fn history(
    directory: &Addr<ChatDirectory>,
    room: String,
) -> Result<Vec<HistoryEntry>, ChatApiError> {
    match directory.send(FindChatRoom(room)).await? {
        Some(room) => Ok(room.send(GetHistory).await?),
        None => Ok(Vec::new()),
    }
}

async fn global_messages(
    _: WithinRate,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ChatApiError> {
    let messages = history(&state.broker.chat_directory, GLOBAL_ROOM.to_owned()).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": messages })))
}

/// A room's history; an invalid name is 400, an unknown valid one an empty list.
async fn room_messages(
    _: WithinRate,
    state: web::Data<AppState>,
    room: web::Path<String>,
) -> Result<HttpResponse, ChatApiError> {
    let room = room_name(&room)?;
    let messages = history(&state.broker.chat_directory, room).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": messages })))
}

async fn rooms(_: WithinRate, state: web::Data<AppState>) -> Result<HttpResponse, ChatApiError> {
    let rooms = state.broker.chat_directory.send(ListRooms).await?;
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}

/// Empties Global's history (the operator's broom; WebSocket users cannot).
/// 200 once the store committed it and `room_chat_clear` was broadcast; if
/// the store refuses, 503 and the history is kept.
async fn clear_chat(
    _: WithinRate,
    _: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ChatApiError> {
    let global: Option<Addr<Room>> = state
        .broker
        .chat_directory
        .send(FindChatRoom(GLOBAL_ROOM.to_owned()))
        .await?;
    let global =
        global.ok_or_else(|| ChatApiError::Internal("the Global room is missing".into()))?;
    let (confirm, confirmed) = oneshot::channel();
    global
        .send(Purge {
            by: "admin".to_owned(),
            confirm,
        })
        .await?;
    when_committed(
        confirmed,
        "The chat could not be cleared, so its history is kept; try again later",
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"status": "success", "message": "Chat cleared"})))
}

/// Waits for a room's word on a change: committed and broadcast, or refused
/// (a room that stopped without answering counts as refused) with `refusal`.
async fn when_committed(
    confirmed: oneshot::Receiver<Result<(), NotStored>>,
    refusal: &str,
) -> Result<(), ChatApiError> {
    match confirmed.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(NotStored)) | Err(_) => Err(ChatApiError::NotStored(refusal.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_address_has_its_own_bucket() {
        let limiter = AddressLimiter::new(1, 2);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let now = Instant::now();
        assert!(limiter.allow(a, now) && limiter.allow(a, now));
        assert!(!limiter.allow(a, now), "a's burst is spent");
        assert!(limiter.allow(b, now), "b is not affected");
        assert!(
            limiter.allow(a, now + Duration::from_secs(1)),
            "a token back"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = AddressLimiter::new(1, 2);
        let now = Instant::now();
        let address = |i: usize| IpAddr::from(std::net::Ipv6Addr::from(i as u128));
        // Every bucket half spent, so none is idle enough to forget.
        for i in 0..TRACKED_ADDRESSES {
            assert!(limiter.allow(address(i), now));
        }
        assert_eq!(limiter.tracked(), TRACKED_ADDRESSES);
        let later = now + Duration::from_millis(100);
        assert!(limiter.allow(address(TRACKED_ADDRESSES), later));
        assert_eq!(limiter.tracked(), TRACKED_ADDRESSES, "the oldest made room");
        // Long after, every bucket is full again: all are forgotten at once.
        let idle = later + Duration::from_secs(10);
        assert!(limiter.allow(address(TRACKED_ADDRESSES + 1), idle));
        assert_eq!(limiter.tracked(), 1);
    }
}
