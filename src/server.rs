//! Wiring the HTTP server to the actor system, and graceful shutdown.
//!
//! actix-web's own signal handling is off: on SIGTERM or SIGINT the broker
//! first tells every WebSocket to close with 1001, waits (up to
//! `server.shutdown_timeout`) for them to go, then stops the HTTP server,
//! flushes the store and returns, so the process exits 0.
//!
//! With `server.tls_cert` and `server.tls_key` set the listener speaks TLS
//! only (rustls with the *ring* provider): https and wss, no plaintext.
//!
//! With `admin.bind` set, `/metrics`, the admin API and the console move to
//! a second listener of their own (one worker) and the public one answers
//! 404 for them; it stops when the public server has.

use std::any::Any;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::{Extensions, ServerHandle};
use actix_web::rt::net::TcpStream;
use actix_web::{web, App, HttpServer};
use futures_util::future::{select, Either};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_actors::auth::TokenKeys;
use switchboard_actors::connection::AcceptedSocket;
use switchboard_actors::monitor::ProbeStore;
use switchboard_actors::store::{SqliteStore, StoreError};
use switchboard_actors::{Broker, BrokerSettings};

use crate::config::{cores, Config, ConfigError};
use crate::http::files::{DirectoryKeys, FileCaps, FileServer};
use crate::http::{operator_routes, routes, AppState};

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
    /// The TLS certificate chain or private key could not be used.
    #[error("TLS {what} {path}: {reason}")]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
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
    // Validation guarantees both or neither; a bad file fails before anything starts.
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let db = SqliteStore::open_with(&config.storage.path, config.storage.synchronous).map_err(
        |source| ServeError::Store {
            path: config.storage.path.display().to_string(),
            source,
        },
    )?;
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
            console_interval: config.admin.console_interval,
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
    let concierge = &config.concierge;
    let files = FileServer::new(
        concierge.files_dir.clone(),
        concierge.max_file_size.as_u64(),
        FileCaps {
            max_files_per_client: concierge.max_files_per_client,
            max_bytes_per_client: concierge.max_bytes_per_client.as_u64(),
            max_files_dir_bytes: concierge.max_files_dir_bytes.as_u64(),
        },
        Box::new(DirectoryKeys(broker.concierge_directory.clone())),
    )
    .map_err(|source| ServeError::Files {
        path: concierge.files_dir.display().to_string(),
        source,
    })?;
    let files = web::Data::new(files);
    let routes = routes(&config);
    let write_timeout = config.limits.write_timeout;
    let operator_state = state.clone();
    let operator_tls = tls.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::http::metrics::record))
            .app_data(state.clone())
            .app_data(files.clone())
            .configure(routes.clone())
    })
    .workers(config.workers())
    .disable_signals()
    .shutdown_timeout(config.server.shutdown_timeout.as_secs().max(1))
    .on_connect(move |conn, ext| tune_accepted_socket(conn, ext, write_timeout));
    let (server, scheme) = match tls {
        Some(tls) => (server.bind_rustls_0_23(&config.server.bind, tls)?, "https"),
        None => (server.bind(&config.server.bind)?, "http"),
    };
    let operator = match &config.admin.bind {
        Some(bind) => Some(operator_listener(
            bind,
            operator_state,
            operator_tls,
            write_timeout,
        )?),
        None => None,
    };
    broker.monitor.do_send(ProbeStore(broker.store.clone()));
    for addr in server.addrs() {
        log::info!("listening on {scheme}://{addr}");
        // Scripts and tests read the bound address (port 0 picks one) from stdout.
        println!("switchboard listening on {scheme}://{addr}");
    }
    std::io::stdout().flush()?;

    let server = server.run();
    let shutdown = actix_rt::spawn(shutdown_on_signal(
        server.handle(),
        broker.clone(),
        config.server.shutdown_timeout,
    ));
    let operator = operator.map(|operator| {
        let handle = operator.handle();
        actix_rt::spawn(operator);
        handle
    });
    match select(Box::pin(server), shutdown).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => log::warn!("shutdown deadline reached with connections still open"),
    }
    if let Some(operator) = operator {
        operator.stop(false).await;
    }
    broker.stop().await;
    log::info!("stopped");
    Ok(())
}

/// The separate listener of `admin.bind`: `/metrics`, the admin API and the
/// console only (TLS too when the public listener has it), bound before
/// the public listener's address is printed.
fn operator_listener(
    bind: &str,
    state: web::Data<AppState>,
    tls: Option<rustls::ServerConfig>,
    write_timeout: Duration,
) -> Result<actix_web::dev::Server, ServeError> {
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::http::metrics::record))
            .app_data(state.clone())
            .configure(operator_routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .on_connect(move |conn, ext| tune_accepted_socket(conn, ext, write_timeout));
    let (server, scheme) = match tls {
        Some(tls) => (server.bind_rustls_0_23(bind, tls)?, "https"),
        None => (server.bind(bind)?, "http"),
    };
    for addr in server.addrs() {
        log::info!("operator listener (metrics, admin API, console) on {scheme}://{addr}");
        println!("switchboard admin listening on {scheme}://{addr}");
    }
    Ok(server.run())
}

/// The rustls server configuration for the PEM chain at `cert` and the PEM
/// private key (PKCS#8, PKCS#1 or SEC1) at `key`; every failure names the file.
fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    let fail = |what, path: &Path, reason: String| ServeError::Tls {
        what,
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(fail("certificate", cert, "no CERTIFICATE block".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let reason = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PKCS#8, PKCS#1 or SEC1 private key block".to_owned()
            }
            other => other.to_string(),
        };
        fail("key", key, reason)
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| fail("key", key, format!("{e} (certificate {})", cert.display())))
}

/// Sets TCP_USER_TIMEOUT on every accepted socket: a peer that stops reading
/// (zero window) is aborted by the kernel after `timeout`, which frees its
/// connection even though its actor cannot run while the write buffer is
/// full. Also turns Nagle's algorithm off, and records the socket for the
/// connection actor ([`AcceptedSocket`]) to end promptly after a close.
fn tune_accepted_socket(conn: &dyn Any, ext: &mut Extensions, timeout: Duration) {
    let tcp = conn.downcast_ref::<TcpStream>().or_else(|| {
        conn.downcast_ref::<TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    if let Some(tcp) = tcp {
        let socket = socket2::SockRef::from(tcp);
        if let Err(e) = socket.set_tcp_user_timeout(Some(timeout)) {
            log::warn!("cannot set TCP_USER_TIMEOUT: {e}");
        }
        // Real-time frames go out when written, not after the peer's delayed
        // ACK (Nagle held small frames back by up to 40 ms).
        if let Err(e) = socket.set_tcp_nodelay(true) {
            log::warn!("cannot set TCP_NODELAY: {e}");
        }
        ext.insert(AcceptedSocket::new(tcp.as_raw_fd()));
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
