//! The `switchboard` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchboard::config::Config;

/// Switchboard: a real-time WebSocket broker.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    /// A TOML file layered over the built-in default configuration.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve,
    /// Validate a config file and print the effective configuration.
    CheckConfig {
        /// The TOML file to check.
        path: PathBuf,
    },
    /// Mint a JWT for the live and rooms protocols from `auth.jwt_secret`.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user_id: String,
        /// The username (`name`).
        #[arg(long)]
        name: String,
        /// How long the token is valid, e.g. `30m`, `1h`, `7d`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Measure a running broker (or the baseline relay) under load.
    Bench(switchboard::bench::BenchArgs),
    /// Exit 0 when the broker's /healthz answers 200 (for container health checks).
    Healthcheck {
        /// The URL to probe; default: /healthz on the configured port at 127.0.0.1.
        url: Option<String>,
    },
}

/// jemalloc instead of the system allocator: it keeps no header inside a
/// block, so a connection's 8 KiB read and write buffers cost only the pages
/// actually written, and its background thread returns freed pages to the
/// operating system, so the memory of a join burst does not stay resident
/// once the connections are gone (glibc's allocator kept all of it).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start: a background thread purges freed
/// pages, dirty pages go back to the system after 1 s and are not kept as
/// "muzzy". `_RJEM_MALLOC_CONF` in the environment overrides them.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Exit code for a configuration error.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::CheckConfig { path } => check_config(&path),
        Command::Healthcheck { url } => healthcheck(cli.config, url),
        Command::Token { user_id, name, ttl } => token(cli.config, &user_id, &name, ttl),
        Command::Bench(args) => switchboard::bench::run(args),
    }
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("switchboard: configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match actix_web::rt::System::new().block_on(switchboard::server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load(Some(path)) {
        Ok(config) => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn token(path: Option<PathBuf>, user_id: &str, name: &str, ttl: Duration) -> ExitCode {
    let config = match load(path.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(secret) = config.auth.jwt_secret else {
        eprintln!("switchboard: configuration error: `auth.jwt_secret` is not set");
        return ExitCode::from(EXIT_CONFIG);
    };
    if user_id.is_empty() || name.is_empty() {
        eprintln!("switchboard: --user-id and --name must not be empty");
        return ExitCode::from(EXIT_CONFIG);
    }
    let keys = switchboard_actors::auth::TokenKeys::new(secret.expose().as_bytes());
    println!("{}", keys.mint(user_id, name, ttl));
    ExitCode::SUCCESS
}

/// Probes `url`, or /healthz of the configured port on 127.0.0.1 (https when
/// the config has TLS). The derived loopback probe does not verify the
/// certificate: it asks whether this broker serves, and a certificate issued
/// for the public name never matches 127.0.0.1. An explicit https URL is
/// verified against the bundled web PKI roots.
fn healthcheck(path: Option<PathBuf>, url: Option<String>) -> ExitCode {
    let (url, verify) = match url {
        Some(url) => (url, true),
        None => match load(path.as_deref()) {
            Ok(config) => {
                let port = config.server.bind.rsplit(':').next().unwrap_or("8080");
                let scheme = if config.server.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                (format!("{scheme}://127.0.0.1:{port}/healthz"), false)
            }
            Err(code) => return code,
        },
    };
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!verify)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into();
    match agent.get(&url).call().map(|r| r.status()) {
        Ok(s) if s.is_success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("switchboard: {url} answered {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("switchboard: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
