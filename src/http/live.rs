//! The live protocol's operator API: pre-registering a user, so friend
//! requests can name it before it ever connects.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use switchboard_actors::live::store::LiveUserSeen;

use super::admin::Admin;
use super::{ApiError, AppState};

/// Longest username the API accepts.
const MAX_USERNAME: usize = 64;

/// Mounts the API under `live.api_path`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/users/{id}")
            .route(web::put().to(register))
            .default_service(web::to(super::method_not_allowed)),
    );
}

#[derive(Deserialize)]
struct Registration {
    username: String,
}

/// `PUT /users/{id}` `{"username"}`: records (or renames) a user.
async fn register(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Registration>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, username) = (id.into_inner(), body.into_inner().username);
    let bad = |what: &str| {
        ApiError::BadRequest(format!(
            "{what} must be 1 to {MAX_USERNAME} characters, no control characters"
        ))
    };
    for (what, value) in [("the user id", &user_id), ("username", &username)] {
        if value.trim().is_empty()
            || value.chars().count() > MAX_USERNAME
            || value.chars().any(char::is_control)
        {
            return Err(bad(what));
        }
    }
    state
        .broker
        .store
        .send(LiveUserSeen {
            user_id: user_id.clone(),
            username: username.clone(),
        })
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({ "user_id": user_id, "username": username })))
}
