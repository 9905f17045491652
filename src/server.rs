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
//!
//! The HTTP service is actix-http's with an upgrade hook ([`upgrade`]): a
//! WebSocket upgrade request goes through the same actix-web app as every
//! other request (routing, origin, admission, tokens, metrics), and when the
//! app answers 101 the hook writes the answer and hands the socket itself to
//! the connection actor (`switchboard_actors::transport`), so that no HTTP
//! buffer stays with a connection for its life.

use std::any::Any;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::body::{BodySize, MessageBody};
use actix_http::{h1, HttpService, Request};
use actix_server::{Server, ServerHandle};
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::body::BoxBody;
use actix_web::dev::{AppConfig, Extensions, ServiceRequest, ServiceResponse};
use actix_web::rt::net::TcpStream;
use actix_web::{web, App};
use futures_util::future::{select, Either};
use futures_util::SinkExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_actors::auth::TokenKeys;
use switchboard_actors::monitor::ProbeStore;
use switchboard_actors::store::{SqliteStore, StoreError};
use switchboard_actors::transport::{StartConnection, Upgraded};
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
    let public = Listener {
        workers: config.workers(),
        shutdown_timeout: config.server.shutdown_timeout.as_secs().max(1),
        tls,
        write_timeout,
    };
    let (server, addrs) = public.bind(&config.server.bind, move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::http::metrics::record))
            .app_data(state.clone())
            .app_data(files.clone())
            .configure(routes.clone())
    })?;
    let scheme = public.scheme();
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
    for addr in addrs {
        log::info!("listening on {scheme}://{addr}");
        // Scripts and tests read the bound address (port 0 picks one) from stdout.
        println!("switchboard listening on {scheme}://{addr}");
    }
    std::io::stdout().flush()?;

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
) -> Result<Server, ServeError> {
    let listener = Listener {
        workers: 1,
        shutdown_timeout: 1,
        tls,
        write_timeout,
    };
    let (server, addrs) = listener.bind(bind, move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::http::metrics::record))
            .app_data(state.clone())
            .configure(operator_routes)
    })?;
    let scheme = listener.scheme();
    for addr in addrs {
        log::info!("operator listener (metrics, admin API, console) on {scheme}://{addr}");
        println!("switchboard admin listening on {scheme}://{addr}");
    }
    Ok(server)
}

/// How one listener serves: its workers, its TLS and its sockets' write
/// timeout.
struct Listener {
    workers: usize,
    shutdown_timeout: u64,
    tls: Option<rustls::ServerConfig>,
    write_timeout: Duration,
}

/// What `App::new()` and its builder methods make: the app's service
/// factory, with a response body of type `B`.
trait AppServices<B>:
    ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
        InitError = (),
    > + 'static
{
}

impl<T, B> AppServices<B> for T where
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static
{
}

/// Pending connections the kernel keeps per listening socket (actix-web's
/// default).
const BACKLOG: i32 = 1024;

/// The HTTP service of one listener for one worker: the app that `$app`
/// makes, with the upgrade hook and the socket tuning (a macro because the
/// service's type depends on the stream, plain or TLS, it is finished for).
macro_rules! http_service {
    ($app:expr, $local:expr, $write_timeout:expr) => {{
        let upgrade_app = $app.clone();
        let write_timeout = $write_timeout;
        HttpService::build()
            .client_disconnect_timeout(Duration::from_secs(1))
            .local_addr($local)
            .on_connect_ext(move |io: &_, ext: &mut Extensions| {
                tune_accepted_socket(io as &dyn Any, ext, write_timeout)
            })
            .upgrade(fn_factory(move || upgrade_hook(upgrade_app())))
            .finish(map_config($app(), |_| AppConfig::default()))
    }};
}

impl Listener {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Binds every address `bind` resolves to and starts serving the app
    /// that `app` makes (once per worker, and once more for the upgrade
    /// hook). Answers the running server and the bound addresses.
    fn bind<F, T, B>(&self, bind: &str, app: F) -> std::io::Result<(Server, Vec<SocketAddr>)>
    where
        F: Fn() -> App<T> + Clone + Send + 'static,
        T: AppServices<B>,
        B: MessageBody + 'static,
    {
        let mut builder = Server::build()
            .workers(self.workers)
            .backlog(BACKLOG as u32)
            .disable_signals()
            .shutdown_timeout(self.shutdown_timeout);
        let mut addrs = Vec::new();
        for addr in bind.to_socket_addrs()? {
            let listener = tcp_listener(addr)?;
            let local = listener.local_addr()?;
            addrs.push(local);
            let (app, write_timeout) = (app.clone(), self.write_timeout);
            let name = format!("switchboard-{local}");
            builder = match self.tls.clone() {
                Some(tls) => builder.listen(name, listener, move || {
                    http_service!(app, local, write_timeout).rustls_0_23(tls.clone())
                })?,
                None => builder.listen(name, listener, move || {
                    http_service!(app, local, write_timeout).tcp()
                })?,
            };
        }
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{bind} resolves to no address"),
            ));
        }
        Ok((builder.run(), addrs))
    }
}

/// A listening socket as actix-web makes one: address reuse, a backlog of
/// [`BACKLOG`].
fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The upgrade hook of one worker: its own instance of the app, which
/// answers every upgrade request as it answers any request.
async fn upgrade_hook<T, B, IO>(
    app: App<T>,
) -> Result<
    impl Service<(Request, Framed<IO, h1::Codec>), Response = (), Error = actix_web::Error>,
    (),
>
where
    T: AppServices<B>,
    B: MessageBody + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let app = Rc::new(app.into_factory().new_service(AppConfig::default()).await?);
    Ok(fn_service(move |(req, framed)| {
        upgrade(Rc::clone(&app), req, framed)
    }))
}

/// Answers one upgrade request through the app. A 101 that carries a
/// [`StartConnection`] is written and the socket, with whatever the client
/// sent after its request, goes to the connection; any other answer (a
/// refusal, 404) is written as it is and the connection ends.
async fn upgrade<S, B, IO>(
    app: Rc<S>,
    req: Request,
    mut framed: Framed<IO, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let response = match app.call(req).await {
        Ok(response) => response.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    let mut response: actix_http::Response<BoxBody> = response.into();
    let start = response.extensions_mut().remove::<StartConnection>();
    let (head, body) = response.into_parts();
    match start {
        Some(start) if head.status() == actix_web::http::StatusCode::SWITCHING_PROTOCOLS => {
            framed
                .send(h1::Message::Item((head, BodySize::None)))
                .await?;
            let parts = framed.into_parts();
            start.start(Upgraded {
                socket: Box::new(parts.io),
                early: parts.read_buf,
            });
        }
        _ => {
            // Refusals are short JSON bodies: written whole, then the
            // connection ends.
            let body = actix_http::body::to_bytes(body)
                .await
                .map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))?;
            framed
                .send(h1::Message::Item((
                    head,
                    BodySize::Sized(body.len() as u64),
                )))
                .await?;
            framed.send(h1::Message::Chunk(Some(body))).await?;
            framed.send(h1::Message::Chunk(None)).await?;
        }
    }
    Ok(())
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
/// connection and its queued frames. Also turns Nagle's algorithm off.
fn tune_accepted_socket(conn: &dyn Any, _: &mut Extensions, timeout: Duration) {
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
