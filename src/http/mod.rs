//! The HTTP surface: observability, the admin-key check, the operator's
//! API, publish API and console, and each protocol's HTTP API. Every API error is JSON `{"error": "..."}` with a fitting status.

pub mod admin;
pub mod admin_api;
pub mod chat;
pub mod console;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod files;
pub mod live;
pub mod metrics;
pub mod observe;
pub mod publish;
pub mod rooms;
pub mod sessions;

use std::sync::Arc;

use actix_web::{web, HttpResponse, ResponseError};
use switchboard_actors::auth::TokenKeys;
use switchboard_actors::Broker;

use crate::config::Config;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    /// The running actor system.
    pub broker: Broker,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The JWT keys of `auth.jwt_secret`; none: token upgrades answer 401.
    pub tokens: Option<TokenKeys>,
}

/// Largest JSON body any API accepts.
const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

/// Registers every route for `config`.
pub fn routes(config: &Config) -> impl Fn(&mut web::ServiceConfig) + Clone + 'static {
    let sessions = config.sessions.clone();
    let concierge = config.concierge.clone();
    let chat = config.chat.clone();
    let chat_api = chat::routes(&config.chat);
    let live = config.live.clone();
    let rooms = config.rooms.clone();
    let allowed_origins = config.server.allowed_origins.clone();
    let operator_here = config.admin.bind.is_none();
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(
            web::JsonConfig::default()
                .limit(MAX_JSON_BODY)
                .error_handler(|e, _| ApiError::from(e).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()),
        )
        .route("/healthz", web::get().to(observe::healthz))
        .route("/readyz", web::get().to(observe::readyz))
        .configure(publish::routes);
        if operator_here {
            cfg.configure(operator_surface);
        }
        if concierge.enabled {
            cfg.route(&concierge.path, web::get().to(crate::ws::concierge))
                .configure(files::routes(&concierge.files_path));
        }
        if chat.enabled {
            cfg.service(
                web::scope(&chat.path)
                    .wrap(chat::cors(&allowed_origins))
                    .configure(chat_api.clone()),
            );
        }
        if live.enabled {
            cfg.route(&live.path, web::get().to(crate::ws::live))
                .service(web::scope(&live.api_path).configure(live::routes));
        }
        if rooms.enabled {
            cfg.route(&rooms.path, web::get().to(crate::ws::rooms))
                .service(web::scope(&rooms.api_path).configure(self::rooms::routes));
        }
        if sessions.enabled {
            cfg.route(&sessions.path, web::get().to(crate::ws::sessions))
                .service(web::scope(&sessions.api_path).configure(sessions::routes));
        }
        #[cfg(feature = "fault-injection")]
        cfg.configure(fault::routes);
        cfg.default_service(web::to(not_found));
    }
}

/// `/metrics`, the admin API and the console: on the public listener, or
/// alone on `admin.bind`'s.
fn operator_surface(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(observe::metrics))
        .configure(admin_api::routes)
        .configure(console::routes);
}

/// The routes of the separate operator listener (`admin.bind`): the
/// operator surface and nothing else.
pub fn operator_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BODY)
            .error_handler(|e, _| ApiError::from(e).into()),
    )
    .app_data(
        web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()),
    )
    .configure(operator_surface)
    .default_service(web::to(not_found));
}

/// Any path no API serves.
async fn not_found() -> HttpResponse {
    ApiError::NotFound("no such endpoint".into()).error_response()
}

/// A path that exists, with a method it does not take.
pub async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}
