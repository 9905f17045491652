//! What the file server's folders hold, so that uploads stay within
//! `concierge.max_files_per_client`, `concierge.max_bytes_per_client` and
//! `concierge.max_files_dir_bytes`.
//!
//! # What is counted
//! Regular files and their sizes. A client's folder is counted by walking it
//! the first time one of its uploads or deletes needs it (folders are fresh
//! at IDENTIFY, so this is cheap), and from then on kept in a [`Folder`]
//! entry that every later change updates. Entries belong to one connection:
//! they are keyed by the client's name *and* the file-server key its
//! requests carry, and a key is never reused, so a client that left and a
//! new client of the same name never share an entry.
//!
//! The whole directory is the tracked folders plus `untracked`: everything
//! else under the root (folders of clients that have not uploaded yet,
//! folders being deleted, leftovers), measured by one walk at start and by
//! each recount.
//!
//! # Racing uploads
//! Every upload in flight holds a reservation in its folder's entry: the
//! bytes it has streamed so far, reserved chunk by chunk *before* the chunk
//! is written, and its claim on the file it replaces. A claim is the size
//! of the file the upload will replace; at most one upload claims a path at
//! a time, and any other change to that path (a delete, another upload's
//! rename) voids the claim. An upload counts as `max(streamed - claim, 0)`
//! bytes, and as one file unless it holds a claim. One mutex guards the
//! counts, and a reservation is checked and taken in one step under it, so
//! two uploads cannot both take the last room: the second sees the first's
//! reservation. Every step other than a reservation only lowers (or keeps)
//! the counted total, and the counted total is never below what the
//! committed files would hold if every upload in flight finished, so the
//! caps hold for whatever finishes. Replacing a file of equal size at the
//! cap therefore succeeds: its streamed bytes never exceed its claim.
//!
//! A folder's file-system changes (creating an upload's temporary file and
//! its folders, the rename into place, a delete, removing empty folders) run
//! under that folder's own lock, on the blocking pool, together with the
//! count update they cause; the counts' mutex is never held across I/O or an
//! await.
//!
//! # Clients that left
//! The concierge removes a client's folder when it leaves, without telling
//! the file server, so the entry of a client that left still counts
//! towards the total until a *recount*: it asks the key directory which
//! entries' keys are still connected, drops the others, and re-measures
//! `untracked` with one walk of the root. A recount runs when an upload
//! would pass `max_files_dir_bytes` (at most once per [`RECOUNT_INTERVAL`],
//! so a client at the cap cannot make the server walk the tree on every
//! request), and when the number of entries doubles, which bounds their
//! memory. Between recounts the total can only be overcounted, never
//! undercounted, so the cap errs on the safe side.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Least time between two recounts started by a full directory.
pub const RECOUNT_INTERVAL: Duration = Duration::from_secs(1);

/// Entries kept before a recount prunes the ones of clients that left.
const MIN_PRUNE_AT: usize = 1024;

/// The upload caps, in files and bytes.
#[derive(Debug, Clone, Copy)]
pub struct FileCaps {
    /// Most files in one client's folder (`concierge.max_files_per_client`).
    pub max_files_per_client: u64,
    /// Most bytes in one client's folder (`concierge.max_bytes_per_client`).
    pub max_bytes_per_client: u64,
    /// Most bytes in the whole files directory (`concierge.max_files_dir_bytes`).
    pub max_files_dir_bytes: u64,
}

/// The cap an upload ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `concierge.max_files_per_client`.
    FilesPerClient,
    /// `concierge.max_bytes_per_client`.
    BytesPerClient,
    /// `concierge.max_files_dir_bytes`.
    FilesDirBytes,
}

impl Cap {
    /// The config key's last part, also the metric's `limit` label.
    pub fn key(self) -> &'static str {
        match self {
            Cap::FilesPerClient => "max_files_per_client",
            Cap::BytesPerClient => "max_bytes_per_client",
            Cap::FilesDirBytes => "max_files_dir_bytes",
        }
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over a cap.
    Over(Cap),
    /// The upload's entry is gone: a recount found that its client left.
    Gone,
}

/// Regular files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// How many regular files.
    pub files: u64,
    /// Their sizes added up.
    pub bytes: u64,
}

/// One upload in flight, as its folder's entry knows it.
#[derive(Debug, Clone)]
pub struct Ticket {
    name: String,
    key: String,
    id: u64,
}

/// The shared counts of the file server.
#[derive(Debug)]
pub struct Usage {
    caps: FileCaps,
    ledger: Mutex<Ledger>,
}

#[derive(Debug)]
struct Ledger {
    /// The counted folders, by client name.
    folders: HashMap<String, Folder>,
    /// The sum of every folder's [`Folder::bytes_view`].
    tracked: u64,
    /// Bytes under the root outside the counted folders, as last measured.
    untracked: u64,
    recounting: bool,
    last_recount: Option<Instant>,
    /// A recount prunes entries once there are this many.
    prune_at: usize,
    next_ticket: u64,
}

/// One client connection's folder.
#[derive(Debug)]
struct Folder {
    /// The file-server key of the connection this entry belongs to.
    key: String,
    /// Committed: the files in the folder.
    files: u64,
    bytes: u64,
    /// Uploads in flight, by ticket id.
    uploads: HashMap<u64, InFlight>,
    /// Serialises this folder's file-system changes (see the module docs).
    lock: Arc<Mutex<()>>,
}

#[derive(Debug)]
struct InFlight {
    path: String,
    streamed: u64,
    /// Size of the file at `path` this upload will replace, while no other
    /// change to `path` happened.
    claim: Option<u64>,
}

impl InFlight {
    fn bytes(&self) -> u64 {
        self.streamed.saturating_sub(self.claim.unwrap_or(0))
    }

    fn files(&self) -> u64 {
        u64::from(self.claim.is_none())
    }
}

impl Folder {
    /// The bytes the folder could hold once every upload in flight finished.
    fn bytes_view(&self) -> u64 {
        self.bytes + self.uploads.values().map(InFlight::bytes).sum::<u64>()
    }

    /// The files the folder could hold once every upload in flight finished.
    fn files_view(&self) -> u64 {
        self.files + self.uploads.values().map(InFlight::files).sum::<u64>()
    }

    /// Voids every claim on `path` except `except`'s: the file it counted
    /// has just been removed or replaced.
    fn void_claims(&mut self, path: &str, except: Option<u64>) {
        for (id, upload) in &mut self.uploads {
            if upload.path == path && Some(*id) != except {
                upload.claim = None;
            }
        }
    }
}

impl Ledger {
    /// Runs `change` on the entry of `name` if it belongs to `key`, keeping
    /// `tracked` equal to the sum of the entries' views.
    fn change<T>(
        &mut self,
        name: &str,
        key: &str,
        change: impl FnOnce(&mut Folder) -> T,
    ) -> Option<T> {
        let folder = self.folders.get_mut(name).filter(|f| f.key == key)?;
        let before = folder.bytes_view();
        let result = change(folder);
        self.tracked = self.tracked - before + folder.bytes_view();
        Some(result)
    }

    fn drop_folder(&mut self, name: &str) {
        if let Some(folder) = self.folders.remove(name) {
            self.tracked -= folder.bytes_view();
        }
    }
}

impl Usage {
    /// Counts for a file server on `root`, with `untracked` the bytes the
    /// root holds now (see [`measure`]).
    pub fn new(caps: FileCaps, untracked: u64) -> Self {
        Self {
            caps,
            ledger: Mutex::new(Ledger {
                folders: HashMap::new(),
                tracked: 0,
                untracked,
                recounting: false,
                last_recount: None,
                prune_at: MIN_PRUNE_AT,
                next_ticket: 0,
            }),
        }
    }

    /// The caps these counts enforce.
    pub fn caps(&self) -> FileCaps {
        self.caps
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock of `name`'s folder if its entry belongs to `key`; `None`:
    /// the folder must be measured and [`track`](Self::track)ed first.
    pub fn folder_lock(&self, name: &str, key: &str) -> Option<Arc<Mutex<()>>> {
        let ledger = self.ledger();
        let folder = ledger.folders.get(name).filter(|f| f.key == key)?;
        Some(Arc::clone(&folder.lock))
    }

    /// Starts counting `name`'s folder for the connection with `key`, which
    /// held `count` when it was measured, and returns the folder's lock.
    ///
    /// Every change to a folder happens after its entry exists, so a
    /// measurement taken before the entry existed is exact. If another
    /// request created the entry meanwhile, that entry stays. An entry of an
    /// earlier connection of the same name is replaced: its folder is gone.
    pub fn track(&self, name: &str, key: &str, count: Count) -> Arc<Mutex<()>> {
        let mut ledger = self.ledger();
        if let Some(folder) = ledger.folders.get(name).filter(|f| f.key == key) {
            return Arc::clone(&folder.lock);
        }
        ledger.drop_folder(name);
        let folder = Folder {
            key: key.to_owned(),
            files: count.files,
            bytes: count.bytes,
            uploads: HashMap::new(),
            lock: Arc::new(Mutex::new(())),
        };
        let lock = Arc::clone(&folder.lock);
        ledger.tracked += folder.bytes_view();
        ledger.folders.insert(name.to_owned(), folder);
        lock
    }

    /// Registers an upload to `path` in `name`'s folder; `existing` is the
    /// size of the file there now. Call it under the folder's lock, which
    /// makes `existing` exact. Refused when the upload would add a file to a
    /// full folder.
    pub fn begin(
        &self,
        name: &str,
        key: &str,
        path: &str,
        existing: Option<u64>,
    ) -> Result<Ticket, Refusal> {
        let mut ledger = self.ledger();
        let id = ledger.next_ticket;
        let max_files = self.caps.max_files_per_client;
        ledger
            .change(name, key, |folder| {
                let claimed = folder
                    .uploads
                    .values()
                    .any(|u| u.path == path && u.claim.is_some());
                let claim = existing.filter(|_| !claimed);
                if claim.is_none() && folder.files_view() >= max_files {
                    return Err(Refusal::Over(Cap::FilesPerClient));
                }
                let upload = InFlight {
                    path: path.to_owned(),
                    streamed: 0,
                    claim,
                };
                folder.uploads.insert(id, upload);
                Ok(())
            })
            .unwrap_or(Err(Refusal::Gone))?;
        ledger.next_ticket += 1;
        Ok(Ticket {
            name: name.to_owned(),
            key: key.to_owned(),
            id,
        })
    }

    /// Reserves `more` streamed bytes for `ticket`'s upload, before they are
    /// written; refused if the folder or the directory would pass its cap.
    pub fn reserve(&self, ticket: &Ticket, more: u64) -> Result<(), Refusal> {
        let mut ledger = self.ledger();
        let total = ledger.untracked + ledger.tracked;
        let caps = self.caps;
        ledger
            .change(&ticket.name, &ticket.key, |folder| {
                let view = folder.bytes_view();
                let upload = folder.uploads.get_mut(&ticket.id).ok_or(Refusal::Gone)?;
                let growth = (upload.streamed + more).saturating_sub(upload.claim.unwrap_or(0))
                    - upload.bytes();
                if view + growth > caps.max_bytes_per_client {
                    return Err(Refusal::Over(Cap::BytesPerClient));
                }
                if total + growth > caps.max_files_dir_bytes {
                    return Err(Refusal::Over(Cap::FilesDirBytes));
                }
                upload.streamed += more;
                Ok(())
            })
            .unwrap_or(Err(Refusal::Gone))
    }

    /// `ticket`'s upload is in place; `replaced` is the size of the file it
    /// replaced, read under the folder's lock just before the rename.
    pub fn commit(&self, ticket: &Ticket, replaced: Option<u64>) {
        self.ledger().change(&ticket.name, &ticket.key, |folder| {
            let Some(upload) = folder.uploads.remove(&ticket.id) else {
                return;
            };
            folder.bytes = (folder.bytes + upload.streamed).saturating_sub(replaced.unwrap_or(0));
            folder.files += u64::from(replaced.is_none());
            folder.void_claims(&upload.path, None);
        });
    }

    /// `ticket`'s upload failed or was abandoned: its reservation goes.
    pub fn release(&self, ticket: &Ticket) {
        self.ledger().change(&ticket.name, &ticket.key, |folder| {
            folder.uploads.remove(&ticket.id);
        });
    }

    /// The file of `size` bytes at `path` in `name`'s folder was deleted.
    pub fn removed(&self, name: &str, key: &str, path: &str, size: u64) {
        self.ledger().change(name, key, |folder| {
            folder.files = folder.files.saturating_sub(1);
            folder.bytes = folder.bytes.saturating_sub(size);
            folder.void_claims(path, None);
        });
    }

    /// Whether the entries are many enough that a recount should prune them.
    pub fn prune_due(&self) -> bool {
        let ledger = self.ledger();
        ledger.folders.len() >= ledger.prune_at
    }

    /// Starts a recount unless one is running, or (unless `forced`) one
    /// started less than [`RECOUNT_INTERVAL`] ago. Returns the entries to
    /// check, as (name, key) pairs.
    pub fn start_recount(&self, forced: bool) -> Option<Recount<'_>> {
        let mut ledger = self.ledger();
        let recent = ledger
            .last_recount
            .is_some_and(|last| last.elapsed() < RECOUNT_INTERVAL);
        if ledger.recounting || (recent && !forced) {
            return None;
        }
        ledger.recounting = true;
        ledger.last_recount = Some(Instant::now());
        let entries = ledger
            .folders
            .iter()
            .map(|(name, folder)| (name.clone(), folder.key.clone()))
            .collect();
        Some(Recount {
            usage: self,
            entries,
        })
    }
}

/// A running recount; dropping it unfinished leaves the counts as they were.
#[derive(Debug)]
pub struct Recount<'a> {
    usage: &'a Usage,
    /// The entries when it started, as (client name, key).
    pub entries: Vec<(String, String)>,
}

impl Recount<'_> {
    /// Drops the entries in `left` (clients whose key is nobody's any more),
    /// and sets `untracked` from `sizes`, the bytes under each top-level
    /// name of the root, if the walk succeeded.
    pub fn finish(self, left: &[(String, String)], sizes: Option<HashMap<String, u64>>) {
        let mut ledger = self.usage.ledger();
        for (name, key) in left {
            if ledger.folders.get(name).is_some_and(|f| &f.key == key) {
                ledger.drop_folder(name);
            }
        }
        if let Some(sizes) = sizes {
            ledger.untracked = sizes
                .iter()
                .filter(|(name, _)| !ledger.folders.contains_key(*name))
                .map(|(_, bytes)| bytes)
                .sum();
        }
        ledger.prune_at = MIN_PRUNE_AT.max(2 * ledger.folders.len());
    }
}

impl Drop for Recount<'_> {
    fn drop(&mut self) {
        self.usage.ledger().recounting = false;
    }
}

/// The regular files under `dir` (not following symbolic links); a missing
/// `dir` holds none. Entries that vanish during the walk are skipped.
pub fn measure(dir: &Path) -> io::Result<Count> {
    let mut count = Count::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let meta = match fs::symlink_metadata(entry.path()) {
                Ok(meta) => meta,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                count.files += 1;
                count.bytes += meta.len();
            }
        }
    }
    Ok(count)
}

/// The bytes under each top-level name of `root` (a folder's contents, or
/// a file's own size).
pub fn measure_top_level(root: &Path) -> io::Result<HashMap<String, u64>> {
    let mut sizes = HashMap::new();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if gone(&e) => return Ok(sizes),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let bytes = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => measure(&path)?.bytes,
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => 0,
            Err(e) if gone(&e) => 0,
            Err(e) => return Err(e),
        };
        sizes.insert(entry.file_name().to_string_lossy().into_owned(), bytes);
    }
    Ok(sizes)
}

fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: FileCaps = FileCaps {
        max_files_per_client: 2,
        max_bytes_per_client: 100,
        max_files_dir_bytes: 150,
    };

    fn usage_with_alice(count: Count) -> Usage {
        let usage = Usage::new(CAPS, 0);
        usage.track("alice", "ka", count);
        usage
    }

    #[test]
    fn two_racing_uploads_cannot_both_take_the_last_room() {
        let usage = usage_with_alice(Count::default());
        let one = usage.begin("alice", "ka", "one", None).unwrap();
        let two = usage.begin("alice", "ka", "two", None).unwrap();
        usage.reserve(&one, 60).unwrap();
        assert_eq!(
            usage.reserve(&two, 60),
            Err(Refusal::Over(Cap::BytesPerClient))
        );
        usage.release(&two);
        usage.commit(&one, None);
        let three = usage.begin("alice", "ka", "three", None).unwrap();
        usage.reserve(&three, 40).unwrap();
        assert_eq!(
            usage.reserve(&three, 1),
            Err(Refusal::Over(Cap::BytesPerClient))
        );
    }

    #[test]
    fn a_replacement_of_equal_size_at_the_cap_fits_once() {
        let usage = usage_with_alice(Count {
            files: 2,
            bytes: 100,
        });
        assert_eq!(
            usage.begin("alice", "ka", "new", None).unwrap_err(),
            Refusal::Over(Cap::FilesPerClient)
        );
        let first = usage.begin("alice", "ka", "full", Some(100)).unwrap();
        usage.reserve(&first, 100).unwrap();
        // A second replacement of the same file gets no claim of its own.
        let second = usage.begin("alice", "ka", "full", Some(100));
        assert_eq!(second.unwrap_err(), Refusal::Over(Cap::FilesPerClient));
        usage.commit(&first, Some(100));
        let again = usage.begin("alice", "ka", "full", Some(100)).unwrap();
        usage.reserve(&again, 100).unwrap();
        assert_eq!(
            usage.reserve(&again, 1),
            Err(Refusal::Over(Cap::BytesPerClient))
        );
    }

    #[test]
    fn a_failed_replacement_does_not_lend_its_claim_to_others() {
        let usage = usage_with_alice(Count {
            files: 1,
            bytes: 100,
        });
        let replacing = usage.begin("alice", "ka", "big", Some(100)).unwrap();
        let other = usage.begin("alice", "ka", "small", None).unwrap();
        assert_eq!(
            usage.reserve(&other, 1),
            Err(Refusal::Over(Cap::BytesPerClient))
        );
        usage.release(&replacing);
    }

    #[test]
    fn a_delete_voids_the_claim_on_its_path() {
        let usage = usage_with_alice(Count {
            files: 1,
            bytes: 80,
        });
        let replacing = usage.begin("alice", "ka", "f", Some(80)).unwrap();
        usage.reserve(&replacing, 80).unwrap();
        usage.removed("alice", "ka", "f", 80);
        // The upload now adds a new file of 80 bytes: 20 are left.
        let other = usage.begin("alice", "ka", "g", None).unwrap();
        assert_eq!(
            usage.reserve(&other, 21),
            Err(Refusal::Over(Cap::BytesPerClient))
        );
        usage.reserve(&other, 20).unwrap();
    }

    #[test]
    fn the_directory_total_counts_every_folder_and_what_is_untracked() {
        let usage = Usage::new(CAPS, 50);
        usage.track("alice", "ka", Count::default());
        usage.track("bob", "kb", Count::default());
        let alice = usage.begin("alice", "ka", "a", None).unwrap();
        usage.reserve(&alice, 60).unwrap();
        let bob = usage.begin("bob", "kb", "b", None).unwrap();
        assert_eq!(
            usage.reserve(&bob, 41),
            Err(Refusal::Over(Cap::FilesDirBytes))
        );
        usage.reserve(&bob, 40).unwrap();
    }

    #[test]
    fn a_recount_drops_clients_that_left_and_remeasures_the_rest() {
        let usage = Usage::new(CAPS, 0);
        usage.track(
            "alice",
            "ka",
            Count {
                files: 1,
                bytes: 90,
            },
        );
        usage.track("bob", "kb", Count::default());
        let recount = usage.start_recount(false).unwrap();
        assert!(usage.start_recount(true).is_none(), "one at a time");
        let sizes = HashMap::from([("bob".to_owned(), 0), (".removing-x".to_owned(), 30)]);
        recount.finish(&[("alice".to_owned(), "ka".to_owned())], Some(sizes));
        assert!(usage.folder_lock("alice", "ka").is_none());
        assert!(usage.start_recount(false).is_none(), "too soon");
        let bob = usage.begin("bob", "kb", "b", None).unwrap();
        assert_eq!(
            usage.reserve(&bob, 121),
            Err(Refusal::Over(Cap::BytesPerClient))
        );
        usage.reserve(&bob, 100).unwrap();
        let other = usage.track("carol", "kc", Count::default());
        drop(other);
        let carol = usage.begin("carol", "kc", "c", None).unwrap();
        assert_eq!(
            usage.reserve(&carol, 21),
            Err(Refusal::Over(Cap::FilesDirBytes))
        );
    }

    #[test]
    fn a_new_connection_of_the_same_name_replaces_the_old_entry() {
        let usage = usage_with_alice(Count {
            files: 2,
            bytes: 100,
        });
        usage.track("alice", "second", Count::default());
        let ticket = usage.begin("alice", "second", "a", None).unwrap();
        usage.reserve(&ticket, 100).unwrap();
        assert_eq!(
            usage.begin("alice", "ka", "a", None).unwrap_err(),
            Refusal::Gone
        );
    }
}
