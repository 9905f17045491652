//! The permissioned rooms' HTTP API: list the rooms, and (admin key) create
//! one. A created room is answered 201 only once the store committed it; if
//! the store refuses, 503 `{"error"}` and no room exists.

use actix::Addr;
use actix_web::{web, HttpResponse};
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::json;
use switchboard_actors::rooms::{AllRooms, CreateRoom, DescribeRoom, FindRoom, Room, RoomSummary};
use uuid::Uuid;

use super::admin::Admin;
use super::{ApiError, AppState};

/// Longest room name.
const MAX_NAME: usize = 100;

/// Mounts the API under `rooms.api_path`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// `GET`: every room with the users in it now.
async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rooms = summaries(&state).await?;
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}

/// Every room as `GET` shows it, in creation order (also the admin API's list).
pub async fn summaries(state: &AppState) -> Result<Vec<RoomSummary>, ApiError> {
    let rooms = state.broker.rooms_directory.send(AllRooms).await?;
    let summaries = join_all(rooms.iter().map(|room| room.send(DescribeRoom))).await;
    Ok(summaries.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// The actor of the room whose id is `id`: 400 for an id that is not a
/// UUID, 404 for an unknown room (the admin and publish APIs).
pub async fn find(state: &AppState, id: &str) -> Result<(Uuid, Addr<Room>), ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("room id {id:?} is not a UUID")))?;
    let room = state
        .broker
        .rooms_directory
        .send(FindRoom(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no room has id {id}")))?;
    Ok((id, room))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoom {
    name: String,
    #[serde(default)]
    closed: bool,
    /// Users who may invite to the room and kick (optional).
    #[serde(default)]
    admins: Vec<String>,
}

/// `POST` `{name, closed, admins?}`: creates a room.
async fn create(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewRoom>,
) -> Result<HttpResponse, ApiError> {
    let NewRoom {
        name,
        closed,
        admins,
    } = body.into_inner();
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "a room name has 1 to {MAX_NAME} characters"
        )));
    }
    let settings = &state.broker.rooms;
    let admins = admins
        .iter()
        .map(|admin| settings.user_id(admin))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::BadRequest("every admin must be a user id (a UUID)".into()))?;
    let create = CreateRoom {
        name: name.clone(),
        closed,
        admins,
        creator: None,
    };
    // Answered once the store committed the room; a refused write created nothing.
    let (room_id, _) = state
        .broker
        .rooms_directory
        .send(create)
        .await?
        .map_err(|refusal| ApiError::Unavailable(refusal.to_string()))?;
    Ok(HttpResponse::Created().json(json!({ "room_id": room_id, "name": name, "closed": closed })))
}
