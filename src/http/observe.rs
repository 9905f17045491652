//! `/metrics`, `/healthz` and `/readyz`.

use std::sync::Once;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use switchboard_actors::metrics::metrics as broker_metrics;
use switchboard_actors::{registry, store};

use super::{ApiError, AppState};

/// How long readiness waits for each actor.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The binary's version, as `switchboard_build_info{version}`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from (`build.rs`; `unknown` outside
/// a git checkout), as `switchboard_build_info{commit}`.
pub const COMMIT: &str = env!("BUILD_GIT_COMMIT");

static FIXED_SERIES: Once = Once::new();

/// Prometheus text format. The series that never change while the process
/// runs (`switchboard_build_info`, `switchboard_max_connections`) are set
/// at the first scrape, the only place they are read.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    FIXED_SERIES.call_once(|| {
        let m = broker_metrics();
        m.set_build_info(VERSION, COMMIT);
        m.max_connections
            .set(i64::try_from(state.config.limits.max_connections).unwrap_or(i64::MAX));
    });
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
