//! The concierge gateway (PROTOCOLS.md §1, seed `002`): clients identify,
//! create services, subscribe, send targeted messages and share files.
//!
//! - [`wire`]: the exact JSON payloads, pure.
//! - [`ConciergeClient`]: the concierge's state of one client's connection
//!   (run by the shared [`Connection`](crate::connection::Connection)
//!   actor); identification, `seq` numbering, and every payload's reply, in
//!   order even while its MESSAGEs to a service are pipelined.
//! - [`Service`]: one actor per service; owner and subscribers, and the
//!   relay of MESSAGEs through the service, encoded once. Clients send
//!   their MESSAGEs straight to it.
//! - a [`Lobby`](crate::lobby::Lobby): the fan-out to every identified
//!   client (`ALL`, joins, leaves, service creation and deletion).
//! - [`ConciergeDirectory`]: an actor of its own, supervised beside the
//!   registry: names, keys, services and subscriptions, the single
//!   authority that every fetch reads and every change goes through; it
//!   hands out service actors but relays no MESSAGE.
//!
//! The file server (`/fs/...`) is HTTP and lives in the server crate; it asks
//! the directory who owns a key ([`FileKeyOwner`]). A client's folder is
//! removed here, when the client leaves.

mod client;
mod directory;
mod service;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::ConciergeClient;
pub use directory::{ConciergeDirectory, FetchClients, FetchServices, FileKeyOwner, FindService};
pub use service::{PublishRefused, ServerPublish, Service, SERVER_ORIGIN};

/// Settings of the concierge (`[concierge]` in the config).
#[derive(Debug, Clone)]
pub struct ConciergeSettings {
    /// When set, IDENTIFY must carry this secret (else close 4006).
    pub secret: Option<String>,
    /// Client versions accepted (else close 4007).
    pub client_version_req: semver::VersionReq,
    /// Time a new connection has to IDENTIFY (else close 4004).
    pub identify_timeout: Duration,
    /// Silence after which an identified client is closed with 4009.
    pub heartbeat_timeout: Duration,
    /// Longest client or service name.
    pub max_name_length: usize,
    /// Root of the file server; each client has the folder `files_dir/{name}`.
    pub files_dir: PathBuf,
    /// What opens a client's file-server writes (`concierge.fs_key`).
    pub fs_key: FsKeyMode,
    /// Most bytes an IDENTIFY's `nickname` and `tags` may hold together: they
    /// are re-broadcast to every client in CLIENT_JOINED (else close 4008).
    pub max_identity_bytes: usize,
}

/// Which key opens a client's file-server folder (`concierge.fs_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKeyMode {
    /// The client's HELLO uuid, as the reference does: every client learns
    /// every other's uuid from CLIENT_JOINED, so any client can write to and
    /// delete from any folder. Kept as the default for existing clients.
    #[default]
    Uuid,
    /// A random per-connection secret sent only to its client, in HELLO's
    /// extra `fs_key` field (clients ignore fields they do not know).
    Secret,
}

/// Gives a client a fresh, empty file-server folder, off the actor threads.
/// HELLO hands out the file-server key, so the folder must exist before it
/// is sent; anything left under the name (by a crash, or by an upload that
/// finished after its client left) is removed first, so no client ever sees
/// another's files.
pub async fn create_client_folder(files_dir: &Path, name: &str) -> std::io::Result<()> {
    let folder = client_folder(files_dir, name)?;
    blocking(move || {
        match std::fs::remove_dir_all(&folder) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&folder)
    })
    .await
}

/// Takes a client's file-server folder away, off the actor threads: it is
/// renamed aside at once (so the name can be given to a new client whose
/// fresh folder nothing will touch), then deleted with everything in it in
/// the background. A missing folder is no error.
pub async fn remove_client_folder(files_dir: &Path, name: &str) -> std::io::Result<()> {
    let folder = client_folder(files_dir, name)?;
    // A leading `.` is never a client name, so this cannot collide with one.
    let aside = files_dir.join(format!(".removing-{}", uuid::Uuid::new_v4().simple()));
    blocking(move || {
        match std::fs::rename(&folder, &aside) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        }
        drop(actix_rt::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&aside) {
                log::error!("could not delete {}: {e}", aside.display());
            }
        }));
        Ok(())
    })
    .await
}

/// `files_dir/name`; a name that is not a valid client name never reaches
/// the filesystem.
fn client_folder(files_dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    if wire::valid_client_name(name, usize::MAX) {
        Ok(files_dir.join(name))
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a client name",
        ))
    }
}

async fn blocking(
    work: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> std::io::Result<()> {
    actix_rt::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
