//! `POST /api/debug/fault/chat/{room}` (admin key): makes a chat room actor
//! fail so the supervision tests can watch it restart. Compiled only with
//! the test-only `fault-injection` feature.

use actix_web::{web, HttpResponse};
use switchboard_actors::chat::FindRoom;
use switchboard_actors::fault::InjectFault;

use super::admin::Admin;
use super::{ApiError, AppState};

/// Registers the fault-injection route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/debug/fault/chat/{room}",
        web::post().to(fail_chat_room),
    );
}

async fn fail_chat_room(
    _: Admin,
    state: web::Data<AppState>,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = room.into_inner();
    let Some(addr) = state.broker.registry.send(FindRoom(room.clone())).await? else {
        return Err(ApiError::NotFound(format!("no chat room `{room}`")));
    };
    addr.do_send(InjectFault);
    Ok(HttpResponse::Accepted().finish())
}
