//! Fault injection for the tests, compiled only with the test-only
//! `fault-injection` feature (admin key on both):
//! - `POST /api/debug/fault/chat/{room}` makes a chat room actor fail so the
//!   supervision tests can watch it restart;
//! - `PUT /api/debug/fault/store` with `{"fail_writes": bool}` makes every
//!   store write fail (or succeed again), so the durability tests can check
//!   that nothing uncommitted is acknowledged or broadcast; `{"delay_ms": n}`
//!   makes every store write take n ms longer (0: back to normal).

use actix_web::{web, HttpResponse};
use switchboard_actors::chat::FindChatRoom;
use switchboard_actors::fault::InjectFault;

use super::admin::Admin;
use super::{ApiError, AppState};

/// Registers the fault-injection route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/debug/fault/chat/{room}",
        web::post().to(fail_chat_room),
    )
    .route("/api/debug/fault/store", web::put().to(fail_store_writes));
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFault {
    fail_writes: Option<bool>,
    delay_ms: Option<u64>,
}

async fn fail_store_writes(_: Admin, fault: web::Json<StoreFault>) -> HttpResponse {
    if let Some(fail) = fault.fail_writes {
        switchboard_actors::fault::fail_store_writes(fail);
    }
    if let Some(ms) = fault.delay_ms {
        switchboard_actors::fault::slow_store_writes(std::time::Duration::from_millis(ms));
    }
    HttpResponse::NoContent().finish()
}

async fn fail_chat_room(
    _: Admin,
    state: web::Data<AppState>,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = room.into_inner();
    let Some(addr) = state
        .broker
        .chat_directory
        .send(FindChatRoom(room.clone()))
        .await?
    else {
        return Err(ApiError::NotFound(format!("no chat room `{room}`")));
    };
    addr.do_send(InjectFault);
    Ok(HttpResponse::Accepted().finish())
}
