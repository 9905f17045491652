//! `/metrics`, `/healthz` and `/readyz`.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use switchboard_actors::metrics::metrics as broker_metrics;
use switchboard_actors::{registry, store};

use super::{ApiError, AppState};

/// How long readiness waits for each actor.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Prometheus text format.
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(broker_metrics().render())
}

/// Alive: the process serves HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready: the store and the registry answer.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let unavailable = |what: &str| ApiError::Unavailable(format!("{what} not answering"));
    match actix_rt::time::timeout(READY_TIMEOUT, state.broker.store.send(store::Ping)).await {
        Ok(Ok(Ok(()))) => {}
        _ => return Err(unavailable("store")),
    }
    let connections =
        match actix_rt::time::timeout(READY_TIMEOUT, state.broker.registry.send(registry::Ping))
            .await
        {
            Ok(Ok(n)) => n,
            _ => return Err(unavailable("registry")),
        };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "connections": connections,
    })))
}
