//! Wiring the HTTP server to the actor system, and graceful shutdown.
//!
//! actix-web's own signal handling is off: on SIGTERM or SIGINT the broker
//! first tells every WebSocket to close with 1001, waits (up to
//! `server.shutdown_timeout`) for them to go, then stops the HTTP server,
//! flushes the store and returns, so the process exits 0.

use std::any::Any;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Extensions, ServerHandle};
use actix_web::{web, App, HttpServer};
use futures_util::future::{select, Either};
use switchboard_actors::auth::TokenKeys;
use switchboard_actors::store::{SqliteStore, StoreError};
use switchboard_actors::{Broker, BrokerSettings};

use crate::config::{cores, Config, ConfigError};
use crate::http::files::{FileServer, RegistryKeys};
use crate::http::{routes, AppState};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error("opening the store at {path}: {source}")]
    Store {
        /// The database path.
        path: String,
        /// What failed.
        source: StoreError,
    },
    /// The file server's root folder could not be created.
    #[error("creating the concierge files folder {path}: {source}")]
    Files {
        /// The folder.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The configuration does not hold together.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The listener could not be bound, or the server failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// How often shutdown checks whether every WebSocket has gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Runs the broker until SIGTERM or SIGINT, and returns at the latest
/// `server.shutdown_timeout` after the signal.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let db = SqliteStore::open(&config.storage.path).map_err(|source| ServeError::Store {
        path: config.storage.path.display().to_string(),
        source,
    })?;
    if config.concierge.enabled {
        let files = &config.concierge.files_dir;
        std::fs::create_dir_all(files).map_err(|source| ServeError::Files {
            path: files.display().to_string(),
            source,
        })?;
    }
    let broker = Broker::start(
        BrokerSettings {
            limits: config.limits.clone(),
            sessions: config.sessions.settings(),
            concierge: config.concierge.settings()?,
            chat: config.chat.settings(),
            rooms: config.rooms.settings(),
            arbiters: cores(),
        },
        db,
    )
    .map_err(|source| ServeError::Store {
        path: config.storage.path.display().to_string(),
        source,
    })?;

    let state = web::Data::new(AppState {
        broker: broker.clone(),
        config: Arc::clone(&config),
        tokens: config
            .auth
            .jwt_secret
            .as_ref()
            .map(|secret| TokenKeys::new(secret.expose().as_bytes())),
    });
    let files = web::Data::new(FileServer {
        root: config.concierge.files_dir.clone(),
        max_file_size: config.concierge.max_file_size.as_u64(),
        keys: Box::new(RegistryKeys(broker.registry.clone())),
    });
    let routes = routes(&config);
    let write_timeout = config.limits.write_timeout;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(files.clone())
            .configure(routes.clone())
    })
    .workers(config.workers())
    .disable_signals()
    .shutdown_timeout(config.server.shutdown_timeout.as_secs().max(1))
    .on_connect(move |conn, ext| abort_stalled_peers(conn, ext, write_timeout))
    .bind(&config.server.bind)?;
    for addr in server.addrs() {
        log::info!("listening on http://{addr}");
        // Scripts and tests read the bound address (port 0 picks one) from stdout.
        println!("switchboard listening on http://{addr}");
    }
    std::io::stdout().flush()?;

    let server = server.run();
    let shutdown = actix_rt::spawn(shutdown_on_signal(
        server.handle(),
        broker.clone(),
        config.server.shutdown_timeout,
    ));
    match select(Box::pin(server), shutdown).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => log::warn!("shutdown deadline reached with connections still open"),
    }
    broker.stop().await;
    log::info!("stopped");
    Ok(())
}

/// Sets TCP_USER_TIMEOUT on every accepted socket: a peer that stops reading
/// (zero window) is aborted by the kernel after `timeout`, which frees its
/// connection even though its actor cannot run while the write buffer is full.
fn abort_stalled_peers(conn: &dyn Any, _: &mut Extensions, timeout: Duration) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout)) {
            log::warn!("cannot set TCP_USER_TIMEOUT: {e}");
        }
    }
}

/// Waits for a signal, closes every WebSocket with 1001, lets them drain,
/// stops the HTTP server, and returns at the shutdown deadline.
async fn shutdown_on_signal(server: ServerHandle, broker: Broker, timeout: Duration) {
    let signal =
        match actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                let term = Box::pin(async move { term.recv().await });
                match select(term, Box::pin(actix_rt::signal::ctrl_c())).await {
                    Either::Left(_) => "SIGTERM",
                    Either::Right(_) => "SIGINT",
                }
            }
            Err(e) => {
                log::error!("cannot listen for SIGTERM ({e}); SIGINT only");
                let _ = actix_rt::signal::ctrl_c().await;
                "SIGINT"
            }
        };
    let deadline = Instant::now() + timeout;
    let told = broker.disconnect_all().await;
    log::info!("{signal}: shutting down, closing {told} connections");
    while broker.admission.open() > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(DRAIN_POLL).await;
    }
    let left = broker.admission.open();
    if left > 0 {
        log::warn!("{left} connections still open at the shutdown deadline");
    }
    // In-flight HTTP requests may finish while time remains; `serve` stops
    // waiting for them when this task returns at the deadline.
    actix_rt::spawn(server.stop(true));
    actix_rt::time::sleep_until(deadline.into()).await;
}
