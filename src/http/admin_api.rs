//! The operator's HTTP API under `/api/admin` (admin key on every call):
//! an overview of the broker, paged lists of what it holds (the live users
//! online among them), one connection in detail, and three actions:
//! disconnecting a connection, removing a member from a room and lifting a
//! room ban.
//!
//! Lists answer `{"total", "offset", "limit", "items"}`; `q` searches them
//! (case-insensitive substring), `offset`/`limit` page them. Everything is
//! asked of the actors that own it; nothing here keeps state.

use std::collections::HashMap;

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_actors::admin::{
    matches, ConnectionInfo, DescribeConnection, DisconnectConnection, ListConnections, Page,
    Window,
};
use switchboard_actors::chat::{ListRooms, RemoveChatMember};
use switchboard_actors::concierge::{FetchClients, FetchServices};
use switchboard_actors::connection::Disconnect;
use switchboard_actors::live::OnlineUsers;
use switchboard_actors::monitor::{Overview, Runtime};
use switchboard_actors::rooms::{Kick, Kicker, LiftBan, ListBans, Refusal};
use switchboard_actors::Protocol;
use uuid::Uuid;

use super::admin::Admin;
use super::{ApiError, AppState};

/// Most items one page may hold.
pub const MAX_PAGE: usize = 500;

/// Items per page when `limit` is not given.
const DEFAULT_PAGE: usize = 50;

/// Longest reason a close frame can carry (125 bytes of payload minus the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// What a client is told when an operator disconnects it without a reason.
pub const DEFAULT_REASON: &str = "disconnected by an operator";

/// Mounts the API (the console's live feed included) under `/api/admin`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/admin")
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()),
            )
            .route("/overview", web::get().to(overview))
            .route("/runtime", web::get().to(runtime))
            .route("/connections", web::get().to(connections))
            .route("/connections/{id}", web::get().to(connection))
            .route("/connections/{id}/disconnect", web::post().to(disconnect))
            .route("/chat/rooms", web::get().to(chat_rooms))
            .route(
                "/chat/rooms/{room}/members/{user}",
                web::delete().to(remove_chat_member),
            )
            .route("/rooms", web::get().to(rooms))
            .route(
                "/rooms/{room_id}/members/{user}",
                web::delete().to(remove_room_member),
            )
            .route("/rooms/{room_id}/bans", web::get().to(room_bans))
            .route("/rooms/{room_id}/bans/{user}", web::delete().to(lift_ban))
            .route("/presence", web::get().to(presence))
            .route("/services", web::get().to(services))
            .route("/sessions", web::get().to(sessions))
            .route("/live", web::get().to(super::console::live)),
    );
}

/// The query of every list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Text to search for.
    q: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    /// Connections only: one protocol's.
    protocol: Option<String>,
}

impl ListQuery {
    fn window(&self) -> Result<Window, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        Ok(Window {
            offset: self.offset.unwrap_or(0),
            limit,
        })
    }

    /// The search text, lower-case; none when empty.
    fn search(&self) -> Option<String> {
        self.q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_ascii_lowercase)
    }

    /// Whether `fields` of an item contain the search text (always, without one).
    fn finds<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> bool {
        match self.search() {
            None => true,
            Some(q) => fields.into_iter().any(|field| matches(field, &q)),
        }
    }
}

/// A page as the API answers it.
#[derive(Serialize)]
struct Listing<T> {
    total: usize,
    offset: usize,
    limit: usize,
    items: Vec<T>,
}

fn listing<T: Serialize>(page: Page<T>, window: Window) -> HttpResponse {
    HttpResponse::Ok().json(Listing {
        total: page.total,
        offset: window.offset,
        limit: window.limit,
        items: page.items,
    })
}

/// `GET /overview`: the figures of the console's header.
async fn overview(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let sample = state.broker.monitor.send(Overview).await?;
    Ok(HttpResponse::Ok().json(sample))
}

/// `GET /runtime`: the process's memory, CPU time and descriptors, the
/// store's latency and the closes per code (the console's overview).
async fn runtime(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let figures = state.broker.monitor.send(Runtime).await?;
    Ok(HttpResponse::Ok().json(figures))
}

/// `GET /connections[?protocol=]`: open connections in id order.
async fn connections(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let protocol = query
        .protocol
        .as_deref()
        .map(str::parse::<Protocol>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let page: Page<ConnectionInfo> = state
        .broker
        .registry
        .send(ListConnections {
            protocol,
            search: query.search(),
            window,
        })
        .await?;
    Ok(listing(page, window))
}

/// A connection id from the path: 400 when it is not a number.
fn connection_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("connection id {id:?} is not a number")))
}

/// `GET /connections/{id}`: one open connection, as the list shows it.
async fn connection(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = connection_id(&id)?;
    let info = state
        .broker
        .registry
        .send(DescribeConnection(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no open connection has id {id}")))?;
    Ok(HttpResponse::Ok().json(info))
}

/// The optional body of a disconnect.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    reason: Option<String>,
}

/// `POST /connections/{id}/disconnect` `{reason?}`: closes the connection
/// with 1008 and the reason.
async fn disconnect(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = connection_id(&id)?;
    let body: DisconnectBody = optional_json(&body)?;
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REASON.to_owned());
    if reason.len() > MAX_CLOSE_REASON {
        return Err(ApiError::BadRequest(format!(
            "a close reason holds at most {MAX_CLOSE_REASON} bytes"
        )));
    }
    let close = Disconnect::by_operator(reason);
    if !state
        .broker
        .registry
        .send(DisconnectConnection { id, close })
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no open connection has id {id}"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({ "disconnected": id })))
}

/// A JSON body that may be left out entirely.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A chat room as the operator sees it.
#[derive(Serialize)]
struct ChatRoomItem {
    name: String,
    creator: String,
    users: Vec<String>,
}

/// `GET /chat/rooms`: chat rooms by name, with their users.
async fn chat_rooms(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let mut rooms: Vec<ChatRoomItem> = state
        .broker
        .chat_directory
        .send(ListRooms)
        .await?
        .into_iter()
        .map(|room| ChatRoomItem {
            name: room.room_name,
            creator: room.room_creator,
            users: room.connected_users,
        })
        .filter(|room| {
            let users = room.users.iter().map(String::as_str);
            query.finds(
                [room.name.as_str(), room.creator.as_str()]
                    .into_iter()
                    .chain(users),
            )
        })
        .collect();
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing(Page::of(rooms, window), window))
}

/// `DELETE /chat/rooms/{room}/members/{user}`: ends the user's chat
/// connection (a chat user is always in exactly one room).
async fn remove_chat_member(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, username) = path.into_inner();
    state
        .broker
        .chat_directory
        .send(RemoveChatMember {
            room: room.clone(),
            username: username.clone(),
        })
        .await?
        .map_err(|refused| ApiError::NotFound(format!("{refused}: {room}, {username}")))?;
    Ok(HttpResponse::Ok().json(json!({ "removed": username, "room": room })))
}

/// `GET /rooms`: permissioned rooms by name, with the users entered.
async fn rooms(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let mut summaries = super::rooms::summaries(&state).await?;
    summaries.retain(|room| {
        let id = room.room_id.to_string();
        let members = room.members.iter().map(String::as_str);
        query.finds([room.name.as_str(), id.as_str()].into_iter().chain(members))
    });
    summaries.sort_by(|a, b| a.name.cmp(&b.name).then(a.room_id.cmp(&b.room_id)));
    Ok(listing(Page::of(summaries, window), window))
}

/// The optional body of a room member's removal.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    /// Shown to the user in its `kick`.
    message: Option<String>,
    /// A ban that survives reconnects and restarts.
    #[serde(default)]
    permanent: bool,
}

/// `DELETE /rooms/{room_id}/members/{user}` `{message?, permanent?}`: kicks
/// the user out as an admin would.
async fn remove_room_member(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (room_id, user) = path.into_inner();
    let RemoveBody { message, permanent } = optional_json(&body)?;
    let (id, room) = super::rooms::find(&state, &room_id).await?;
    let kick = Kick {
        by: Kicker::Operator,
        user: user.clone(),
        message,
        permanent,
    };
    match room.send(kick).await? {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "removed": user, "room_id": id }))),
        Err(Refusal::TargetNotInRoom) => Err(ApiError::NotFound(format!(
            "user {user:?} is not in room {id}"
        ))),
        Err(other) => Err(ApiError::Internal(format!("kick in room {id}: {other}"))),
    }
}

/// `GET /rooms/{room_id}/bans`: the users banned from a room, sorted.
async fn room_bans(
    _: Admin,
    state: web::Data<AppState>,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, room) = super::rooms::find(&state, &room_id).await?;
    let banned = room.send(ListBans).await?;
    Ok(HttpResponse::Ok().json(json!({ "room_id": id, "banned": banned })))
}

/// `DELETE /rooms/{room_id}/bans/{user}`: lifts a permanent kick; 204 once
/// the stored ban is deleted, 404 when the room has no such ban.
async fn lift_ban(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, user) = path.into_inner();
    let (id, room) = super::rooms::find(&state, &room_id).await?;
    let user = state
        .broker
        .rooms
        .user_id(&user)
        .ok_or_else(|| ApiError::BadRequest(format!("user id {user:?} is not a UUID")))?;
    match room.send(LiftBan { user: user.clone() }).await? {
        Ok(true) => {
            log::info!("room {id}: ban of {user} lifted by an operator");
            Ok(HttpResponse::NoContent().finish())
        }
        Ok(false) => Err(ApiError::NotFound(format!(
            "user {user:?} is not banned from room {id}"
        ))),
        Err(refusal) => Err(ApiError::Unavailable(format!(
            "lifting the ban in room {id}: {refusal}"
        ))),
    }
}

/// `GET /presence`: the live users online, by username, with what they
/// play and how many connections each has open.
async fn presence(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let users = state
        .broker
        .presence
        .send(OnlineUsers)
        .await?
        .into_iter()
        .filter(|user| {
            query.finds(
                [
                    Some(user.user_id.as_str()),
                    Some(user.name.as_str()),
                    user.playing.as_deref(),
                ]
                .into_iter()
                .flatten(),
            )
        });
    Ok(listing(Page::of(users, window), window))
}

/// A concierge service as the operator sees it (its owner by name: the
/// owner's uuid is its file-server key).
#[derive(Serialize)]
struct ServiceItem {
    name: String,
    nickname: Option<String>,
    owner: Option<String>,
    subscribers: usize,
}

/// `GET /services`: concierge services by name.
async fn services(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let directory = &state.broker.concierge_directory;
    let services = directory.send(FetchServices).await?;
    let clients = directory.send(FetchClients).await?;
    let names: HashMap<Uuid, String> = clients.into_iter().map(|c| (c.uuid, c.name)).collect();
    let items = services
        .into_iter()
        .map(|service| ServiceItem {
            owner: names.get(&service.owner_uuid).cloned(),
            subscribers: service.subscribers.len(),
            name: service.name,
            nickname: service.nickname,
        })
        .filter(|s| {
            query.finds(
                [
                    Some(s.name.as_str()),
                    s.nickname.as_deref(),
                    s.owner.as_deref(),
                ]
                .into_iter()
                .flatten(),
            )
        });
    Ok(listing(Page::of(items, window), window))
}

/// `GET /sessions`: listed game sessions by name.
async fn sessions(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = query.window()?;
    let mut sessions: Vec<_> = super::sessions::listed(&state)
        .await?
        .into_iter()
        .filter(|s| {
            query.finds([
                s.session_id.as_str(),
                s.session_name.as_str(),
                s.host_username.as_str(),
            ])
        })
        .collect();
    sessions.sort_by(|a, b| a.session_name.cmp(&b.session_name));
    Ok(listing(Page::of(sessions, window), window))
}
