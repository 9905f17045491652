//! The session list's host API: game hosts publish their sessions here and
//! the listing actors broadcast the changes to every watcher.
//!
//! `GET` is public; everything that changes state needs the admin key. No
//! field may contain a line break (it would break the line framing): such a
//! request is refused with 400 and nothing is broadcast.

use std::collections::HashSet;

use actix::{Addr, Handler, Message};
use actix_web::{web, HttpResponse};
use futures_util::future::join_all;
use serde::Serialize;
use switchboard_actors::sessions::wire::{check_field, Epoch, Session, SessionUser};
use switchboard_actors::sessions::{
    AllListings, FindListing, GetSession, ListingError, PatchSession, PutSession, PutUser,
    RemoveUser, Resync, SessionListing, SessionPatch, Unlist, Upsert, UpsertListing,
};

use super::admin::Admin;
use super::{ApiError, AppState};

/// How often a PUT retries when the listing it found ended meanwhile.
const PUT_ATTEMPTS: usize = 3;

/// Mounts the host API under the configured prefix.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| {
        web::resource(path.to_owned()).default_service(web::to(super::method_not_allowed))
    };
    cfg.service(
        resource("")
            .route(web::get().to(list))
            .route(web::put().to(resync)),
    )
    .service(
        resource("/{id}")
            .route(web::get().to(get))
            .route(web::put().to(put))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    )
    .service(
        resource("/{id}/users/{user_id}")
            .route(web::put().to(put_user))
            .route(web::delete().to(delete_user)),
    );
}

#[derive(Serialize)]
struct SessionList {
    sessions: Vec<Session>,
}

#[derive(Serialize)]
struct Resynced {
    epoch: Epoch,
    sessions: Vec<Session>,
}

fn bad(e: impl ToString) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("session `{id}` not found"))
}

fn from_listing(id: &str, e: ListingError) -> ApiError {
    match e {
        ListingError::Gone => not_found(id),
        ListingError::UnknownUser => {
            ApiError::NotFound(format!("user not found in session `{id}`"))
        }
    }
}

/// Checks a session (with its id already set) for everything the wire
/// format and the listing need.
fn validate(session: &Session) -> Result<(), ApiError> {
    if session.session_id.is_empty() {
        return Err(bad("`session_id` must not be empty"));
    }
    session.check_framing().map_err(bad)?;
    let mut seen = HashSet::new();
    for user in &session.users {
        if !seen.insert(user.user_id.as_str()) {
            return Err(bad(format!(
                "user `{}` appears twice in session `{}`",
                user.user_id, session.session_id
            )));
        }
    }
    Ok(())
}

/// Takes the session id from the path; a body that names another id is refused.
fn with_path_id(id: &str, mut session: Session) -> Result<Session, ApiError> {
    check_field("session_id", id).map_err(bad)?;
    if !session.session_id.is_empty() && session.session_id != id {
        return Err(bad(format!(
            "`session_id` in the body ({}) differs from the path ({id})",
            session.session_id
        )));
    }
    session.session_id = id.to_owned();
    validate(&session)?;
    Ok(session)
}

/// Sends `msg` to the listing of session `id` and answers with the session
/// it returns (404 when the session is not listed).
async fn ask<M>(state: &AppState, id: &str, msg: M) -> Result<HttpResponse, ApiError>
where
    M: Message<Result = Result<Session, ListingError>> + Send + 'static,
    SessionListing: Handler<M>,
{
    let listing = find(state, id).await?;
    let session = listing.send(msg).await?.map_err(|e| from_listing(id, e))?;
    Ok(HttpResponse::Ok().json(session))
}

async fn find(state: &AppState, id: &str) -> Result<Addr<SessionListing>, ApiError> {
    check_field("session_id", id).map_err(bad)?;
    state
        .broker
        .listing_directory
        .send(FindListing(id.to_owned()))
        .await?
        .ok_or_else(|| not_found(id))
}

/// `GET /api/sessions`: every listed session.
async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let sessions = listed(&state).await?;
    Ok(HttpResponse::Ok().json(SessionList { sessions }))
}

/// Every listed session, in session id order (also the admin API's list);
/// a listing that ended meanwhile is left out.
pub async fn listed(state: &AppState) -> Result<Vec<Session>, ApiError> {
    let listings = state.broker.listing_directory.send(AllListings).await?;
    Ok(join_all(listings.iter().map(|l| l.send(GetSession)))
        .await
        .into_iter()
        .filter_map(|r| r.ok().and_then(Result::ok))
        .collect())
}

/// `GET /api/sessions/{id}`.
async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ask(&state, &id, GetSession).await
}

/// `PUT /api/sessions`: full resync under a new epoch.
async fn resync(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<Vec<Session>>,
) -> Result<HttpResponse, ApiError> {
    let sessions = body.into_inner();
    let mut ids = HashSet::new();
    for session in &sessions {
        validate(session)?;
        if !ids.insert(session.session_id.as_str()) {
            return Err(bad(format!(
                "session `{}` appears twice",
                session.session_id
            )));
        }
    }
    // Answered once the new epoch is committed; if the store refuses,
    // nothing changed for any watcher.
    let epoch = state
        .broker
        .listing_directory
        .send(Resync(sessions.clone()))
        .await?
        .map_err(|refused| ApiError::Unavailable(refused.to_string()))?;
    Ok(HttpResponse::Ok().json(Resynced { epoch, sessions }))
}

/// `PUT /api/sessions/{id}`: create (201) or replace (200); refreshes the TTL.
async fn put(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Session>,
) -> Result<HttpResponse, ApiError> {
    let session = with_path_id(&id, body.into_inner())?;
    for _ in 0..PUT_ATTEMPTS {
        match state
            .broker
            .listing_directory
            .send(UpsertListing(session.clone()))
            .await?
        {
            Upsert::Created(created) => return Ok(HttpResponse::Created().json(created)),
            Upsert::Existing(listing) => {
                if let Ok(Ok(replaced)) = listing.send(PutSession(session.clone())).await {
                    return Ok(HttpResponse::Ok().json(replaced));
                }
                // The listing ended between the lookup and the update; the
                // directory has heard of it by now, so ask again.
            }
        }
    }
    Err(ApiError::Unavailable(format!(
        "session `{id}` is changing too fast; retry"
    )))
}

/// `PATCH /api/sessions/{id}`: name and counts only.
async fn patch(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<SessionPatch>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner();
    if let Some(name) = &patch.session_name {
        check_field("session_name", name).map_err(bad)?;
    }
    ask(&state, &id, PatchSession(patch)).await
}

/// `DELETE /api/sessions/{id}`: unlist and broadcast `remove`.
async fn delete(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    ask(&state, &id, Unlist).await
}

/// `PUT /api/sessions/{id}/users/{user_id}`: add or replace one user.
async fn put_user(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<SessionUser>,
) -> Result<HttpResponse, ApiError> {
    let (id, user_id) = path.into_inner();
    let user = body.into_inner();
    check_field("user_id", &user_id).map_err(bad)?;
    if user.user_id != user_id {
        return Err(bad(format!(
            "`user_id` in the body ({}) differs from the path ({user_id})",
            user.user_id
        )));
    }
    user.check_framing().map_err(bad)?;
    ask(&state, &id, PutUser(user)).await
}

/// `DELETE /api/sessions/{id}/users/{user_id}`: remove one user.
async fn delete_user(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, user_id) = path.into_inner();
    ask(&state, &id, RemoveUser(user_id)).await
}
