//! The session list: game sessions broadcast to watchers as text lines
//! (PROTOCOLS.md §3, seed `000`).
//!
//! - [`wire`]: the exact line format, pure.
//! - [`SessionListing`]: one actor per listed session; owns its state, its
//!   TTL and the diff from one host update to the next, and encodes what
//!   changed once.
//! - [`SessionFeed`]: the watchers and the current `add` frame of every
//!   listing, so a new watcher gets `reset` plus one `add` per session in one
//!   batch, and every broadcast reaches every watcher in order.
//! - [`ListingDirectory`]: its own supervised actor; creates, finds and
//!   removes listings, and runs the full resync that starts a new epoch.
//! - [`Watcher`]: the protocol's state of one watcher's
//!   [`Connection`](crate::connection::Connection).

mod directory;
mod feed;
mod listing;
mod watcher;
pub mod wire;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use directory::{
    AllListings, EpochNotSaved, FindListing, ListingDirectory, Resync, Upsert, UpsertListing,
};
pub use feed::SessionFeed;
pub use listing::{
    GetSession, ListingError, PatchSession, PutSession, PutUser, RemoveUser, SessionListing,
    SessionPatch, Unlist,
};
pub use watcher::Watcher;
use wire::Epoch;

use crate::store::{Store, StoreError};

/// Settings of the session list (`[sessions]` in the config).
#[derive(Debug, Clone)]
pub struct SessionsSettings {
    /// A listing not refreshed by a PUT for this long is removed.
    pub ttl: Duration,
    /// Sent in every `reset` so clients can warn when outdated.
    pub expected_client_version: String,
}

/// The current epoch (`current_connection_id`), readable without asking an
/// actor; written only by the feed when it applies a reset.
#[derive(Clone, Debug)]
pub struct SharedEpoch(Arc<AtomicI32>);

impl SharedEpoch {
    /// Starts at `epoch`.
    pub fn new(epoch: Epoch) -> Self {
        SharedEpoch(Arc::new(AtomicI32::new(epoch)))
    }

    /// The current epoch.
    pub fn get(&self) -> Epoch {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, epoch: Epoch) {
        self.0.store(epoch, Ordering::Release);
    }
}

/// The store key of the last epoch handed out.
pub(crate) const EPOCH_KEY: &str = "sessions.epoch";

/// Allocates the epoch of a new process: one past the last one stored, so a
/// client that stays across a restart always sees the change.
pub fn next_epoch(store: &mut dyn Store) -> Result<Epoch, StoreError> {
    let previous = match store.meta(EPOCH_KEY)? {
        None => 0,
        Some(value) => value.parse::<Epoch>().map_err(|_| StoreError::Corrupt {
            key: EPOCH_KEY.into(),
            value,
        })?,
    };
    let epoch = previous.wrapping_add(1);
    store.set_meta(EPOCH_KEY, &epoch.to_string())?;
    Ok(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn each_process_gets_a_new_epoch_and_it_wraps() {
        let mut store = SqliteStore::in_memory().unwrap();
        assert_eq!(next_epoch(&mut store).unwrap(), 1);
        assert_eq!(next_epoch(&mut store).unwrap(), 2);
        store.set_meta(EPOCH_KEY, &i32::MAX.to_string()).unwrap();
        assert_eq!(next_epoch(&mut store).unwrap(), i32::MIN);
        store.set_meta(EPOCH_KEY, "garbage").unwrap();
        assert!(matches!(
            next_epoch(&mut store),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
