//! `POST /api/publish` (admin key): a backend publishes a server-originated
//! message into a chat room, a concierge service or a permissioned room
//! with one HTTP call.
//!
//! The message goes to the room's or service's own actor, which encodes it
//! once and fans it out exactly like a client's message; only the sender
//! differs (a chat `system` event, a concierge origin and a rooms `user_id`
//! that mark the server). Body: `{"protocol", "target", "data",
//! "severity"?}`; the answer says how many members it was handed to.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use switchboard_actors::chat::wire::Severity;
use switchboard_actors::chat::{FindChatRoom, Notice};
use switchboard_actors::concierge::{FindService, PublishRefused, ServerPublish};
use switchboard_actors::metrics::metrics;
use switchboard_actors::rooms::ServerSay;
use switchboard_actors::Protocol;

use super::admin::Admin;
use super::{ApiError, AppState};

/// Mounts `POST /api/publish`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/publish")
            .route(web::post().to(publish))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The body of a publish.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publication {
    /// `chat`, `concierge` or `rooms`.
    protocol: String,
    /// The room name, service name or room id.
    target: String,
    /// A string for chat and rooms; any JSON for the concierge (relayed verbatim).
    data: Box<RawValue>,
    /// Chat only: how the notice is styled (`info` unless given).
    severity: Option<String>,
}

async fn publish(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<Publication>,
) -> Result<HttpResponse, ApiError> {
    let publication = body.into_inner();
    let protocol: Protocol = publication.protocol.parse().map_err(
        |e: switchboard_actors::protocol::UnknownProtocol| ApiError::BadRequest(e.to_string()),
    )?;
    if publication.severity.is_some() && protocol != Protocol::Chat {
        return Err(ApiError::BadRequest("severity applies to chat only".into()));
    }
    let enabled = match protocol {
        Protocol::Chat => state.config.chat.enabled,
        Protocol::Concierge => state.config.concierge.enabled,
        Protocol::Rooms => state.config.rooms.enabled,
        Protocol::Live | Protocol::Sessions => {
            return Err(ApiError::BadRequest(format!(
                "{protocol} has no rooms or services to publish into: use chat, concierge or rooms"
            )))
        }
    };
    if !enabled {
        return Err(ApiError::NotFound(format!("{protocol} is not enabled")));
    }
    let target = publication.target.clone();
    let recipients = match protocol {
        Protocol::Chat => into_chat(&state, publication).await?,
        Protocol::Concierge => into_service(&state, publication).await?,
        _ => into_room(&state, publication).await?,
    };
    metrics().protocol(protocol).published.inc();
    log::info!("published into {protocol} {target:?}: {recipients} recipients");
    Ok(HttpResponse::Ok().json(json!({
        "protocol": protocol.as_str(),
        "target": target,
        "recipients": recipients,
    })))
}

/// The data as text: chat notices and room messages carry a string.
fn text(publication: &Publication) -> Result<String, ApiError> {
    let text: String = serde_json::from_str(publication.data.get()).map_err(|_| {
        ApiError::BadRequest(format!(
            "{} data must be a JSON string",
            publication.protocol
        ))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest("data must not be empty".into()));
    }
    Ok(text)
}

fn severity(name: Option<&str>) -> Result<Severity, ApiError> {
    match name.unwrap_or("info") {
        "info" => Ok(Severity::Info),
        "success" => Ok(Severity::Success),
        "warning" => Ok(Severity::Warning),
        "error" => Ok(Severity::Error),
        other => Err(ApiError::BadRequest(format!(
            "severity {other:?} is not one of info, success, warning, error"
        ))),
    }
}

/// A `system` event to everyone in the chat room (not kept in its history).
async fn into_chat(state: &AppState, publication: Publication) -> Result<usize, ApiError> {
    let message = text(&publication)?;
    let severity = severity(publication.severity.as_deref())?;
    let room = state
        .broker
        .chat_directory
        .send(FindChatRoom(publication.target.clone()))
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("no chat room named {:?}", publication.target))
        })?;
    Ok(room.send(Notice { severity, message }).await?)
}

/// A MESSAGE from the server to every subscriber of the service.
async fn into_service(state: &AppState, publication: Publication) -> Result<usize, ApiError> {
    let unknown = || {
        ApiError::NotFound(format!(
            "no concierge service named {:?}",
            publication.target
        ))
    };
    let service = state
        .broker
        .concierge_directory
        .send(FindService(publication.target.clone()))
        .await?
        .ok_or_else(unknown)?;
    match service
        .send(ServerPublish {
            data: publication.data.clone(),
        })
        .await?
    {
        Ok(recipients) => Ok(recipients),
        Err(PublishRefused::Deleted) => Err(unknown()),
        Err(other) => Err(ApiError::Internal(format!(
            "publish into a service: {other}"
        ))),
    }
}

/// A message from the server to everyone entered in the room.
async fn into_room(state: &AppState, publication: Publication) -> Result<usize, ApiError> {
    let content = text(&publication)?;
    let (id, room) = super::rooms::find(state, &publication.target).await?;
    room.send(ServerSay { content })
        .await?
        .map_err(|refused| ApiError::Internal(format!("publish into room {id}: {refused}")))
}
