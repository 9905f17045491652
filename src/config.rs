//! Typed configuration: the embedded default, a TOML file on top, then
//! `SWITCHBOARD_<SECTION>__<KEY>` environment variables.
//!
//! The default is `config/switchboard.toml` itself, compiled in, so the
//! documented file and the behaviour with no file cannot drift apart.
//! Unknown keys and bad values are errors that name the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use switchboard_actors::chat::ChatSettings;
use switchboard_actors::concierge::{ConciergeSettings, FsKeyMode};
use switchboard_actors::limits::Limits;
use switchboard_actors::rooms::RoomsSettings;
use switchboard_actors::sessions::SessionsSettings;
use switchboard_actors::store::Synchronous;

use crate::client_addr::TrustedProxies;

/// The default configuration, also shipped as `config/switchboard.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/switchboard.toml");

/// Prefix of environment overrides; `__` separates section and key.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[limits]`
    pub limits: Limits,
    /// `[concierge]`
    pub concierge: ConciergeConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[chat]`
    pub chat: ChatConfig,
    /// `[live]`
    pub live: LiveConfig,
    /// `[rooms]`
    pub rooms: RoomsConfig,
    /// `[sessions]`
    pub sessions: SessionsConfig,
}

/// `[server]`: the listener and the process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address, `host:port`.
    pub bind: String,
    /// HTTP worker threads; `None` means one per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// How long to drain on SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// PEM certificate chain; with `tls_key`, the listener speaks TLS only
    /// (https and wss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`) whose browser pages may open
    /// WebSockets and call the HTTP APIs. Empty: any origin. A request with
    /// no `Origin` header is not from a browser page and is never refused.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Reverse proxies (CIDRs or addresses) whose `Forwarded` /
    /// `X-Forwarded-For` names the client; from any other peer those headers
    /// are ignored. Empty: every client is its TCP peer.
    #[serde(default)]
    pub trusted_proxies: TrustedProxies,
}

/// `[storage]`: where state is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The SQLite file.
    pub path: PathBuf,
    /// What a commit waits for: `normal` (survives the process dying) or
    /// `full` (an fsync per commit; survives power loss).
    #[serde(default)]
    pub synchronous: Synchronous,
}

/// `[admin]`: operator access to the HTTP APIs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer key for state-changing APIs; none means they answer 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Time between the figures pushed to the operator console.
    #[serde(with = "humantime_serde")]
    pub console_interval: Duration,
    /// A separate listener for `/metrics`, the admin API and the console,
    /// which the public listener then does not serve; none: they share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

/// `[concierge]`: the concierge gateway and its file server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConciergeConfig {
    /// Whether the protocol (and its file server) is served.
    pub enabled: bool,
    /// WebSocket endpoint.
    pub path: String,
    /// File server prefix: `{files_path}/{name}/{path}`.
    pub files_path: String,
    /// When set, IDENTIFY must carry it (else close 4006).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Semver requirement on the client's `version` (else close 4007).
    pub client_version_req: String,
    /// Time a new connection has to IDENTIFY (else close 4004).
    #[serde(with = "humantime_serde")]
    pub identify_timeout: Duration,
    /// Silence after which a client is closed with 4009.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Longest client or service name.
    pub max_name_length: usize,
    /// Root folder of the file server.
    pub files_dir: PathBuf,
    /// Largest file a client may upload (larger: 413).
    pub max_file_size: ByteSize,
    /// Most files one client's folder may hold (an upload adding one more: 413).
    pub max_files_per_client: u64,
    /// Most bytes one client's folder may hold (an upload passing it: 413).
    pub max_bytes_per_client: ByteSize,
    /// Most bytes the whole files directory may hold (an upload passing it: 413).
    pub max_files_dir_bytes: ByteSize,
    /// What opens a client's file-server writes: `"uuid"` (its HELLO uuid,
    /// which every client learns; the reference's behaviour) or `"secret"`
    /// (a random per-connection key in HELLO's extra `fs_key` field).
    pub fs_key: FsKeyMode,
    /// Most bytes of `nickname` plus `tags` in IDENTIFY (else close 4008).
    pub max_identity_bytes: ByteSize,
}

impl ConciergeConfig {
    /// The settings the concierge's actors need (call after validation).
    pub fn settings(&self) -> Result<ConciergeSettings, ConfigError> {
        let client_version_req =
            semver::VersionReq::parse(&self.client_version_req).map_err(|e| {
                ConfigError::Invalid {
                    key: "concierge.client_version_req".into(),
                    reason: e.to_string(),
                }
            })?;
        Ok(ConciergeSettings {
            secret: self.secret.as_ref().map(|s| s.expose().to_owned()),
            client_version_req,
            identify_timeout: self.identify_timeout,
            heartbeat_timeout: self.heartbeat_timeout,
            max_name_length: self.max_name_length,
            files_dir: self.files_dir.clone(),
            fs_key: self.fs_key,
            max_identity_bytes: usize::try_from(self.max_identity_bytes.as_u64())
                .unwrap_or(usize::MAX),
        })
    }
}

/// `[auth]`: tokens of the live and rooms protocols.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret of the JWTs; none means those upgrades answer 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<Secret>,
}

/// `[live]`: live presence and friends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Whether the protocol is served.
    pub enabled: bool,
    /// WebSocket endpoint.
    pub path: String,
    /// Operator HTTP API prefix (`PUT {api_path}/users/{id}`).
    pub api_path: String,
}

/// `[rooms]`: permissioned rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    /// Whether the protocol is served.
    pub enabled: bool,
    /// WebSocket endpoint.
    pub path: String,
    /// HTTP API prefix (`GET`, and `POST` with the admin key).
    pub api_path: String,
    /// How often the server sends `ping {time}`.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long a client has to answer with `pong {time}`.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Unused invites one room may hold.
    pub max_pending_invites: usize,
    /// Rooms one user may create over the WebSocket.
    pub max_rooms_per_creator: usize,
    /// Whether token `sub`s and invitees must be UUIDs.
    pub require_uuid_user_ids: bool,
}

impl RoomsConfig {
    /// The settings the rooms' actors need.
    pub fn settings(&self) -> RoomsSettings {
        RoomsSettings {
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            max_pending_invites: self.max_pending_invites,
            max_rooms_per_creator: self.max_rooms_per_creator,
            require_uuid_user_ids: self.require_uuid_user_ids,
        }
    }
}

/// `[chat]`: the workshop chat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// Whether the protocol (WebSocket and HTTP) is served.
    pub enabled: bool,
    /// Prefix of every chat endpoint: `{path}/ws`, `{path}/ws/{room}`, `{path}/rooms`, ...
    pub path: String,
    /// Messages kept per room (memory and store).
    pub history_limit: usize,
    /// Longest message, in characters.
    pub max_message_length: usize,
    /// Rooms in total, `Global` included; creating one more is refused.
    pub max_rooms: usize,
    /// Rooms one WebSocket connection may create per minute.
    pub room_creations_per_minute: usize,
    /// Messages one room holds while they wait for their commit.
    pub max_unsaved_messages: usize,
    /// Sustained chat HTTP API requests per second per peer IP address.
    pub http_requests_per_second: u32,
    /// Chat HTTP API requests one address may make at once above the rate.
    pub http_burst: u32,
}

impl ChatConfig {
    /// The settings the chat's actors need.
    pub fn settings(&self) -> ChatSettings {
        ChatSettings {
            history_limit: self.history_limit,
            max_message_chars: self.max_message_length,
            max_rooms: self.max_rooms,
            room_creations_per_minute: self.room_creations_per_minute,
            max_unsaved_messages: self.max_unsaved_messages,
        }
    }

    /// Checks the chat's numbers; the error names the offending key.
    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        for (key, value) in [
            ("chat.history_limit", self.history_limit as u64),
            ("chat.max_message_length", self.max_message_length as u64),
            ("chat.max_rooms", self.max_rooms as u64),
            (
                "chat.room_creations_per_minute",
                self.room_creations_per_minute as u64,
            ),
            (
                "chat.max_unsaved_messages",
                self.max_unsaved_messages as u64,
            ),
            (
                "chat.http_requests_per_second",
                u64::from(self.http_requests_per_second),
            ),
            ("chat.http_burst", u64::from(self.http_burst)),
        ] {
            if value == 0 {
                return Err((key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// `[sessions]`: the session list protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Whether the protocol is served.
    pub enabled: bool,
    /// WebSocket endpoint.
    pub path: String,
    /// Host HTTP API prefix.
    pub api_path: String,
    /// Listing lifetime without a refreshing PUT.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Sent in every `reset`.
    pub expected_client_version: String,
}

impl SessionsConfig {
    /// The settings the session list's actors need.
    pub fn settings(&self) -> SessionsSettings {
        SessionsSettings {
            ttl: self.ttl,
            expected_client_version: self.expected_client_version.clone(),
        }
    }
}

/// A secret value: never printed, logged or serialised in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for comparison only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An environment variable of digits arrives as a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i128),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => Ok(Secret(s)),
            Raw::Number(n) => Ok(Secret(n.to_string())),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    /// Keys that are unknown, missing or of the wrong type.
    #[error("{}", describe(.0))]
    Parse(Box<figment::Error>),
    /// A value has the right type but is not acceptable.
    #[error("invalid value for key `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `limits.outbound_queue`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse(Box::new(e))
    }
}

/// One line per problem: the dotted key, where it came from, what is wrong.
fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match &e.metadata {
                Some(m) => match &m.source {
                    Some(source) => format!(" in {source}"),
                    None => format!(" from {}", m.name),
                },
                None => String::new(),
            };
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("key `{key}`{source}: {}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Loads the default, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Missing(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::extract(figment.merge(Env::prefixed(ENV_PREFIX).split("__")))
    }

    /// Loads the default with `text` (a config file's contents) on top, and
    /// no environment: what `load` does with a file, for callers that hold
    /// the text (the config fuzz target among them).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULT_CONFIG)).merge(Toml::string(text)))
    }

    fn extract(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract()?;
        config.validate()?;
        Ok(config)
    }

    /// The effective configuration as TOML (secrets redacted).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config is always representable as TOML")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        };
        if self.server.bind.parse::<std::net::SocketAddr>().is_err()
            && !self.server.bind.contains(':')
        {
            return Err(invalid("server.bind", "expected host:port"));
        }
        if self.server.workers == Some(0) {
            return Err(invalid("server.workers", "must be greater than 0"));
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => return Err(invalid("server.tls_key", "required with tls_cert")),
            (None, Some(_)) => return Err(invalid("server.tls_cert", "required with tls_key")),
            _ => {}
        }
        for origin in &self.server.allowed_origins {
            if !crate::ws::is_origin(origin) {
                return Err(invalid(
                    "server.allowed_origins",
                    &format!("`{origin}` is not an origin like https://example.com[:port]"),
                ));
            }
        }
        if self.storage.path.as_os_str().is_empty() {
            return Err(invalid("storage.path", "must not be empty"));
        }
        if let Some(bind) = &self.admin.bind {
            if bind.parse::<std::net::SocketAddr>().is_err() && !bind.contains(':') {
                return Err(invalid("admin.bind", "expected host:port"));
            }
            // Port 0 picks a free port for each listener (tests).
            if *bind == self.server.bind && !bind.ends_with(":0") {
                return Err(invalid("admin.bind", "must differ from server.bind"));
            }
        }
        if self.admin.api_key.as_ref().is_some_and(|k| k.0.len() < 16) {
            return Err(invalid("admin.api_key", "must be at least 16 characters"));
        }
        self.limits
            .validate()
            .map_err(|(key, reason)| invalid(key, &reason))?;
        for (key, path) in [
            ("sessions.path", &self.sessions.path),
            ("sessions.api_path", &self.sessions.api_path),
            ("concierge.path", &self.concierge.path),
            ("concierge.files_path", &self.concierge.files_path),
            ("chat.path", &self.chat.path),
            ("live.path", &self.live.path),
            ("live.api_path", &self.live.api_path),
            ("rooms.path", &self.rooms.path),
            ("rooms.api_path", &self.rooms.api_path),
        ] {
            if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
                return Err(invalid(key, "must start with `/` and not end with `/`"));
            }
        }
        self.concierge.settings()?;
        for (key, timeout) in [
            (
                "concierge.identify_timeout",
                self.concierge.identify_timeout,
            ),
            (
                "concierge.heartbeat_timeout",
                self.concierge.heartbeat_timeout,
            ),
            ("admin.console_interval", self.admin.console_interval),
        ] {
            if timeout.is_zero() {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if !(1..=255).contains(&self.concierge.max_name_length) {
            return Err(invalid(
                "concierge.max_name_length",
                "must be between 1 and 255",
            ));
        }
        if self.concierge.files_dir.as_os_str().is_empty() {
            return Err(invalid("concierge.files_dir", "must not be empty"));
        }
        let files = &self.concierge;
        for (key, value) in [
            (
                "concierge.max_identity_bytes",
                files.max_identity_bytes.as_u64(),
            ),
            ("concierge.max_file_size", files.max_file_size.as_u64()),
            ("concierge.max_files_per_client", files.max_files_per_client),
            (
                "concierge.max_bytes_per_client",
                files.max_bytes_per_client.as_u64(),
            ),
            (
                "concierge.max_files_dir_bytes",
                files.max_files_dir_bytes.as_u64(),
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self
            .auth
            .jwt_secret
            .as_ref()
            .is_some_and(|k| k.0.len() < 32)
        {
            return Err(invalid("auth.jwt_secret", "must be at least 32 characters"));
        }
        for (key, value) in [
            ("rooms.ping_interval", self.rooms.ping_interval),
            ("rooms.pong_timeout", self.rooms.pong_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        self.chat
            .validate()
            .map_err(|(key, reason)| invalid(key, reason))?;
        if self.sessions.ttl.is_zero() {
            return Err(invalid("sessions.ttl", "must be greater than 0"));
        }
        if self.sessions.expected_client_version.contains(['\n', '\r']) {
            return Err(invalid(
                "sessions.expected_client_version",
                "must not contain a line break",
            ));
        }
        Ok(())
    }

    /// HTTP worker threads to start.
    pub fn workers(&self) -> usize {
        self.server.workers.unwrap_or_else(cores)
    }
}

/// The number of CPU cores available to the process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn admin_bind_is_optional_and_must_be_another_address() {
        assert_eq!(Config::from_toml("").unwrap().admin.bind, None);
        let ok = Config::from_toml("[admin]\nbind = \"127.0.0.1:9090\"\n").unwrap();
        assert_eq!(ok.admin.bind.as_deref(), Some("127.0.0.1:9090"));
        let e = Config::from_toml("[admin]\nbind = \"nowhere\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for key `admin.bind`: expected host:port"
        );
        let same = "[server]\nbind = \"0.0.0.0:8080\"\n[admin]\nbind = \"0.0.0.0:8080\"\n";
        let e = Config::from_toml(same).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for key `admin.bind`: must differ from server.bind"
        );
    }

    #[test]
    fn allowed_origins_must_be_origins_and_tls_needs_both_files() {
        let ok = Config::from_toml("[server]\nallowed_origins = [\"https://a.example:8443\"]\n");
        assert_eq!(
            ok.unwrap().server.allowed_origins,
            ["https://a.example:8443"]
        );
        for bad in [
            "a.example",
            "https://a.example/path",
            "ftp://a.example",
            "null",
        ] {
            let text = format!("[server]\nallowed_origins = [\"{bad}\"]\n");
            let e = Config::from_toml(&text).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid value for key `server.allowed_origins`"),
                "{e}"
            );
        }
        let e = Config::from_toml("[server]\ntls_cert = \"c.pem\"\n").unwrap_err();
        assert!(e.to_string().contains("`server.tls_key`"), "{e}");
        let e = Config::from_toml("[server]\ntls_key = \"k.pem\"\n").unwrap_err();
        assert!(e.to_string().contains("`server.tls_cert`"), "{e}");
    }

    #[test]
    fn trusted_proxies_are_cidrs_and_a_bad_one_names_the_key() {
        assert_eq!(
            Config::load(None).unwrap().server.trusted_proxies,
            TrustedProxies::default()
        );
        let c =
            Config::from_toml("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert!(c.server.trusted_proxies.trusts("10.2.3.4".parse().unwrap()));
        assert!(c.to_toml().contains("\"::1/128\""), "{}", c.to_toml());
        let e = Config::from_toml("[server]\ntrusted_proxies = [\"10.0.0.0/40\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("key `server.trusted_proxies`"), "{e}");
        assert!(e.contains("at most 32"), "{e}");
    }

    #[test]
    fn storage_synchronous_is_normal_or_full() {
        let c = Config::from_toml("[storage]\nsynchronous = \"full\"\n").unwrap();
        assert_eq!(c.storage.synchronous, Synchronous::Full);
        assert_eq!(
            Config::from_toml("").unwrap().storage.synchronous,
            Synchronous::Normal
        );
        let e = Config::from_toml("[storage]\nsynchronous = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("key `storage.synchronous`"), "{e}");
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.server.bind, "0.0.0.0:8080");
        assert_eq!(c.sessions.path, "/sessions");
        assert_eq!(c.concierge.path, "/concierge");
        assert_eq!(
            c.concierge
                .settings()
                .unwrap()
                .client_version_req
                .to_string(),
            "^0.2.0"
        );
        assert!(c.admin.api_key.is_none());
    }

    #[test]
    fn a_file_overrides_only_what_it_sets() {
        let f = file("[server]\nbind = \"127.0.0.1:9\"\n[limits]\nwrite_timeout = \"250ms\"\n");
        let c = Config::load(Some(f.path())).unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:9");
        assert_eq!(c.limits.write_timeout, Duration::from_millis(250));
        assert_eq!(c.sessions.ttl, Duration::from_secs(300));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let f = file("[server]\nbnd = \"x\"\n");
        let e = Config::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.starts_with("key `server.bnd` in "), "{e}");
        let f = file("[limits]\nwrite_timeout = \"soon\"\n");
        let e = Config::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.starts_with("key `limits.write_timeout`"), "{e}");
        let f = file("[limits]\noutbound_queue = 0\n");
        let e = Config::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("limits.outbound_queue"), "{e}");
        let f = file("[concierge]\nclient_version_req = \"not a range\"\n");
        let e = Config::load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("concierge.client_version_req"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let f = file("[admin]\napi_key = \"0123456789abcdef-secret\"\n");
        let c = Config::load(Some(f.path())).unwrap();
        assert_eq!(
            c.admin.api_key.as_ref().unwrap().expose(),
            "0123456789abcdef-secret"
        );
        assert!(!c.to_toml().contains("secret\""), "{}", c.to_toml());
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }
}
