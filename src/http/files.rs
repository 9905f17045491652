//! The concierge gateway's HTTP file server (PROTOCOLS.md §1, "File server").
//!
//! Every identified concierge client owns a folder `{root}/{name}`. With its
//! file-server key (the `uuid` it got in `HELLO`, sent as `x-fs-key`) it may
//! upload into and delete from that folder; any identified client may download
//! from any folder:
//!
//! | request | key must belong to | success |
//! |---|---|---|
//! | `POST {prefix}/{name}/{path}` (multipart, one file part) | client `{name}` | 201 `{"name","path","size"}` |
//! | `GET` / `HEAD {prefix}/{name}/{path}` | any client | 200, the bytes streamed |
//! | `DELETE {prefix}/{name}/{path}` | client `{name}` | 200 `{"deleted": path}` |
//!
//! Checks run in a fixed order so that a caller learns nothing it may not
//! know: the key (401), then the name and path (400), then ownership (403),
//! and only then the file system (404) and the size (413).
//!
//! # Paths
//! The reference implementation served files outside its root for
//! `/fs/../x`. Here the path is taken from the *raw* request path (actix's
//! router has already decoded parts of its own copy), percent-decoded exactly
//! once, and then checked segment by segment: no empty, `.` or `..` segment,
//! no `\`, NUL or control character, valid UTF-8. Because the check runs
//! after decoding, `%2e%2e` and `..%2f` are caught, and a decoded `/` simply
//! separates segments (so `%2Fetc` is an absolute path and is refused).
//! Symbolic links are refused as the final component, and every resolved path
//! must stay inside the client's folder, so a link planted on the host cannot
//! lead out of it either.
//!
//! # Uploads
//! The file part is streamed into a temporary file next to its destination
//! and renamed into place only when the whole body has arrived, so readers
//! never see half a file and a failed upload leaves an existing file as it
//! was. The size is counted while streaming and the upload is abandoned (and
//! its temporary file removed) as soon as it passes `max_file_size`; a
//! `Content-Length` that cannot fit is refused before anything is read.
//!
//! # Caps
//! Beside `max_file_size`, a client's folder holds at most
//! `concierge.max_files_per_client` files and
//! `concierge.max_bytes_per_client` bytes, and the whole directory at most
//! `concierge.max_files_dir_bytes` bytes. An upload that would pass one is
//! answered 413 naming the cap's config key, counted in
//! `switchboard_limit_rejections_total`, and leaves nothing behind (its
//! temporary file and any folder it created are removed). Replacing a file
//! counts only the difference in size. How the counting stays exact while
//! uploads race, and how it learns of clients that left, is described in
//! [`usage`]. A delete also removes the folders it leaves empty, so that
//! uploads and deletes cannot pile up empty folders.
//!
//! # The event loop
//! Every file-system call runs on the blocking pool (`web::block`, or
//! `tokio::fs`, which does the same), never on an actix worker thread, so a
//! slow disk delays only its own request.

mod usage;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_files::NamedFile;
use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header::{
    self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
    HeaderValue,
};
use actix_web::{mime, web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use futures_util::TryStreamExt;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufWriter};
use uuid::Uuid;

use actix::Addr;
use switchboard_actors::concierge::{ConciergeDirectory, FileKeyOwner};

use super::ApiError;
use switchboard_actors::concierge::wire::valid_client_name;
use switchboard_actors::metrics::metrics;
use switchboard_actors::Protocol;

pub use usage::FileCaps;
use usage::{Cap, Refusal, Ticket, Usage};

/// The request header that carries the caller's file-server key.
pub const KEY_HEADER: &str = "x-fs-key";

/// Room allowed beyond `max_file_size` for multipart framing: boundaries, part
/// headers and small form fields sent beside the file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The most parts one upload may have, so that a flood of tiny parts is
/// refused instead of being parsed to the end.
const MAX_PARTS: usize = 16;

/// The longest path segment, in bytes. It is the usual file-system limit;
/// checking it here turns it into a clear 400 instead of an I/O error.
const MAX_SEGMENT_LEN: usize = 255;

/// The longest decoded path below a client folder, in bytes.
const MAX_PATH_LEN: usize = 1024;

/// Upload write buffer: multipart chunks are often small, and every write to a
/// `tokio::fs::File` is a trip to the blocking pool.
const WRITE_BUFFER_SIZE: usize = 64 * 1024;

/// Name of the route parameter that matches `{name}/{path}`.
const TAIL: &str = "tail";

/// The methods these routes answer, for the `Allow` header of a 405.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, DELETE";

/// Modification times from here on cannot be written as an HTTP date (year 9999).
const LAST_HTTP_DATE: Duration = Duration::from_secs(253_402_300_800);

/// Answers which client name a file-server key belongs to, if any connected
/// client has it.
///
/// The broker implements this by asking the actor that owns the client list;
/// tests use a map. The future is `'static` so that it can be awaited after
/// the handler has let go of the request, and local because actix handlers
/// run on a single thread.
pub trait KeyDirectory: Send + Sync + 'static {
    /// The name of the connected client whose key is `key`, or `None` if no
    /// connected client has it. An `Err` is answered as is (e.g. 503 when the
    /// actor is unreachable).
    fn owner_of(&self, key: String) -> LocalBoxFuture<'static, Result<Option<String>, ApiError>>;
}

/// The broker's key directory: the concierge's directory actor knows every
/// identified concierge client and its key.
pub struct DirectoryKeys(pub Addr<ConciergeDirectory>);

impl KeyDirectory for DirectoryKeys {
    fn owner_of(&self, key: String) -> LocalBoxFuture<'static, Result<Option<String>, ApiError>> {
        let request = self.0.send(FileKeyOwner(key));
        Box::pin(async move { Ok(request.await?) })
    }
}

/// The file server's state. The caller registers it as
/// `web::Data<FileServer>` (`App::app_data`) next to [`routes`]; without it
/// every request fails with 500.
pub struct FileServer {
    /// The folder that holds one folder per client. It is created by the
    /// first upload if it does not exist.
    root: PathBuf,
    /// The largest file accepted, in bytes (`concierge.max_file_size`).
    max_file_size: u64,
    /// Tells which client a key belongs to.
    keys: Box<dyn KeyDirectory>,
    /// What the folders hold, against the caps.
    usage: Arc<Usage>,
}

impl FileServer {
    /// A file server on `root`. Walks `root` once to learn what it already
    /// holds (the directory cap counts it), so call it before serving.
    pub fn new(
        root: PathBuf,
        max_file_size: u64,
        caps: FileCaps,
        keys: Box<dyn KeyDirectory>,
    ) -> io::Result<Self> {
        let held = usage::measure(&root)?;
        Ok(Self {
            root,
            max_file_size,
            keys,
            usage: Arc::new(Usage::new(caps, held.bytes)),
        })
    }

    /// Reserves `more` bytes of `ticket`'s upload; when the directory looks
    /// full, recounts it first (see [`usage`]) and tries once more.
    async fn reserve(&self, ticket: &Ticket, more: u64) -> Result<(), ApiError> {
        match self.usage.reserve(ticket, more) {
            Err(Refusal::Over(Cap::FilesDirBytes)) => {
                if self.recount(false).await {
                    self.usage
                        .reserve(ticket, more)
                        .map_err(|r| refused(self.usage.caps(), r))
                } else {
                    Err(refused(
                        self.usage.caps(),
                        Refusal::Over(Cap::FilesDirBytes),
                    ))
                }
            }
            other => other.map_err(|r| refused(self.usage.caps(), r)),
        }
    }

    /// Drops the counts of clients that left and re-measures the rest of the
    /// directory; `false` if no recount was due (see [`usage`]).
    async fn recount(&self, forced: bool) -> bool {
        let Some(recount) = self.usage.start_recount(forced) else {
            return false;
        };
        let owners = recount
            .entries
            .iter()
            .map(|(_, key)| self.keys.owner_of(key.clone()));
        let owners = futures_util::future::join_all(owners).await;
        let left: Vec<_> = recount
            .entries
            .iter()
            .zip(owners)
            .filter(|((name, _), owner)| matches!(owner, Ok(owner) if owner.as_ref() != Some(name)))
            .map(|(entry, _)| entry.clone())
            .collect();
        let root = self.root.clone();
        let sizes = match blocking(move || {
            usage::measure_top_level(&root)
                .map_err(|e| io_error("measuring the files directory", e))
        })
        .await
        {
            Ok(sizes) => Some(sizes),
            Err(e) => {
                log::warn!("file server recount failed: {e}");
                None
            }
        };
        recount.finish(&left, sizes);
        true
    }

    /// The lock of `name`'s folder, counting the folder first if no request
    /// of this connection (`key`) has yet.
    async fn counted_folder(&self, name: &str, key: &str) -> Result<Arc<Mutex<()>>, ApiError> {
        if self.usage.prune_due() {
            self.recount(true).await;
        }
        if let Some(lock) = self.usage.folder_lock(name, key) {
            return Ok(lock);
        }
        let dir = self.root.join(name);
        let count = blocking(move || {
            usage::measure(&dir).map_err(|e| io_error("measuring a client's folder", e))
        })
        .await?;
        Ok(self.usage.track(name, key, count))
    }
}

impl std::fmt::Debug for FileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileServer")
            .field("root", &self.root)
            .field("max_file_size", &self.max_file_size)
            .field("caps", &self.usage.caps())
            .finish_non_exhaustive()
    }
}

/// Registers the file-server routes under `prefix` (e.g. `"/fs"`): `GET`,
/// `HEAD`, `POST` and `DELETE` on `{prefix}/{name}/{path}`, and a JSON 405
/// with an `Allow` header for any other method.
///
/// The routes may also be mounted inside a `web::scope`; the handlers find
/// the raw `{name}/{path}` from the end of the request path, not by
/// stripping `prefix`.
pub fn routes(prefix: &str) -> impl Fn(&mut web::ServiceConfig) + Clone + 'static {
    let pattern = format!("{}/{{{TAIL}:.*}}", prefix.trim_end_matches('/'));
    move |cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::resource(pattern.as_str())
                .route(web::get().to(download))
                .route(web::head().to(download))
                .route(web::post().to(upload))
                .route(web::delete().to(delete))
                .default_service(web::to(method_not_allowed)),
        );
    }
}

/// A request's `{name}/{path}` after decoding and validation.
#[derive(Debug, Clone)]
struct Target {
    /// The client whose folder is addressed.
    name: String,
    /// The path below the client's folder: non-empty segments joined by `/`,
    /// none of them `.` or `..`.
    path: String,
}

impl Target {
    /// The path below the client's folder as a relative file-system path.
    fn relative(&self) -> PathBuf {
        self.path.split('/').collect()
    }

    /// The folders leading to the file, outermost first.
    fn parent_segments(&self) -> impl Iterator<Item = &str> {
        self.path
            .rsplit_once('/')
            .map(|(parents, _)| parents)
            .into_iter()
            .flat_map(|parents| parents.split('/'))
    }

    /// The file's own name: the last segment.
    fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// What a successful upload answers.
#[derive(Debug, Serialize)]
struct Uploaded<'a> {
    name: &'a str,
    path: &'a str,
    size: u64,
}

/// What a successful delete answers.
#[derive(Debug, Serialize)]
struct Deleted<'a> {
    deleted: &'a str,
}

/// `POST`: stores the request's single file part at `{name}/{path}`.
async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    server: web::Data<FileServer>,
) -> Result<HttpResponse, ApiError> {
    let (caller, key) = authenticate(&req, &server).await?;
    let target = parse_target(&req)?;
    require_owner(&caller, &target)?;
    check_declared_length(&req, server.max_file_size)?;
    require_form_data(&req)?;

    let lock = server.counted_folder(&caller, &key).await?;
    let (root, usage, to_stage) = (
        server.root.clone(),
        Arc::clone(&server.usage),
        target.clone(),
    );
    let (pending, file) =
        blocking(move || PendingUpload::stage(&root, &to_stage, key, lock, usage)).await?;

    let mut parts = Multipart::new(req.headers(), payload);
    let size = match receive_single_file(&mut parts, file, &server, pending.ticket()).await {
        Ok(size) => size,
        Err(e) => {
            pending.discard().await;
            return Err(e);
        }
    };
    pending.commit().await?;

    log::debug!("client {caller} uploaded {} ({size} bytes)", target.path);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, req.uri().path()))
        .json(Uploaded {
            name: &target.name,
            path: &target.path,
            size,
        }))
}

/// `GET` and `HEAD`: streams the file at `{name}/{path}` as an attachment.
///
/// `NamedFile` supplies the content type (guessed from the extension),
/// ranges, `ETag` and `Last-Modified`, and reads the file on the blocking
/// pool while it streams.
async fn download(
    req: HttpRequest,
    server: web::Data<FileServer>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &server).await?;
    let target = parse_target(&req)?;

    let file_name = target.file_name().to_owned();
    let root = server.root.clone();
    // `NamedFile::open_async` opens synchronously unless actix-files is built
    // with io-uring, so the open runs on the blocking pool like the checks.
    let file = blocking(move || {
        let path = resolve_existing_file(&root, &target)?;
        NamedFile::open(&path).map_err(|e| {
            if is_missing(&e) {
                not_found(&target)
            } else {
                io_error("opening a file to download", e)
            }
        })
    })
    .await?;

    let mut file = file
        .set_content_disposition(attachment(&file_name))
        .prefer_utf8(true);
    if !file.modified().is_some_and(is_http_date) {
        // actix-files would panic formatting this time as an ETag or a date.
        file = file.use_etag(false).use_last_modified(false);
    }
    let mut response = file.into_response(&req);
    // The content type is only a guess from the name; stop browsers from
    // guessing further and rendering someone's upload as a page.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `Content-Disposition: attachment` for `file_name`, so that browsers save
/// the file instead of showing it.
///
/// Header values should be ASCII, so `filename` is an ASCII stand-in (other
/// characters become `_`) and the exact name goes into `filename*` (RFC 6266).
fn attachment(file_name: &str) -> ContentDisposition {
    let fallback = file_name
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    let mut parameters = vec![DispositionParam::Filename(fallback)];
    if !file_name.is_ascii() {
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".to_owned()),
            language_tag: None,
            value: file_name.as_bytes().to_vec(),
        }));
    }
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters,
    }
}

/// `DELETE`: removes the file at `{name}/{path}`, and the folders that
/// leaves empty.
async fn delete(req: HttpRequest, server: web::Data<FileServer>) -> Result<HttpResponse, ApiError> {
    let (caller, key) = authenticate(&req, &server).await?;
    let target = parse_target(&req)?;
    require_owner(&caller, &target)?;

    let lock = server.counted_folder(&caller, &key).await?;
    let (root, usage, to_delete) = (
        server.root.clone(),
        Arc::clone(&server.usage),
        target.clone(),
    );
    blocking(move || {
        let _changing = lock_folder(&lock);
        let path = resolve_existing_file(&root, &to_delete)?;
        let gone = |e: io::Error| {
            if is_missing(&e) {
                not_found(&to_delete)
            } else {
                io_error("deleting a file", e)
            }
        };
        let size = fs::symlink_metadata(&path).map_err(gone)?.len();
        fs::remove_file(&path).map_err(gone)?;
        usage.removed(&to_delete.name, &key, &to_delete.path, size);
        let root = fs::canonicalize(&root).map_err(|e| io_error("resolving the root", e))?;
        if let Some(dir) = path.parent() {
            remove_empty_folders(&root.join(&to_delete.name), dir);
        }
        Ok(())
    })
    .await?;

    log::debug!("client {caller} deleted {}", target.path);
    Ok(HttpResponse::Ok().json(Deleted {
        deleted: &target.path,
    }))
}

/// Any other method on the file-server paths.
async fn method_not_allowed() -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    response
}

/// The name of the client whose key is in `x-fs-key`, and the key as the
/// counts spell it ([`connection_key`]); 401 if the header is missing, not
/// text, or nobody's key (which key form is valid is the directory's
/// business: `concierge.fs_key`).
async fn authenticate(
    req: &HttpRequest,
    server: &FileServer,
) -> Result<(String, String), ApiError> {
    let key = req
        .headers()
        .get(KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .ok_or(ApiError::UnknownKey)?;
    let owner = server.keys.owner_of(key.clone()).await?;
    owner
        .map(|name| (name, connection_key(&key)))
        .ok_or(ApiError::UnknownKey)
}

/// One spelling of `key` for the counts, which keep one entry per
/// connection: a uuid key may be sent in any case or form that parses.
fn connection_key(key: &str) -> String {
    Uuid::parse_str(key).map_or_else(|_| key.to_owned(), |uuid| uuid.to_string())
}

/// 403 unless `caller` owns the target's folder.
fn require_owner(caller: &str, target: &Target) -> Result<(), ApiError> {
    if caller == target.name {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only client {} may change files in its folder",
            target.name
        )))
    }
}

/// Decodes and validates `{name}/{path}` from the raw request path.
fn parse_target(req: &HttpRequest) -> Result<Target, ApiError> {
    let tail = raw_tail(req)?;
    let (raw_name, raw_path) = tail.split_once('/').unwrap_or((tail, ""));

    let name = percent_decode(raw_name)?;
    if !valid_client_name(&name, MAX_SEGMENT_LEN) {
        return Err(ApiError::BadRequest(
            "invalid client name: use ASCII letters, digits or _".to_owned(),
        ));
    }
    let path = percent_decode(raw_path)?;
    validate_path(&path)?;
    Ok(Target { name, path })
}

/// The raw (still percent-encoded) text the route's `{tail}` matched.
///
/// actix routes on its own copy of the path, in which it has already decoded
/// some escapes; only the raw path is decoded exactly once. Actix never
/// decodes `%2F`, so both copies have the same `/`-separated segments and the
/// tail is as many segments from the end of the raw path as it has in the
/// matched copy. This holds wherever the routes are mounted.
fn raw_tail(req: &HttpRequest) -> Result<&str, ApiError> {
    let matched = req.match_info().get(TAIL).unwrap_or_default();
    let raw = req.uri().path();
    let mut start = raw.len();
    for _ in 0..matched.split('/').count() {
        start = raw[..start]
            .rfind('/')
            .ok_or_else(|| ApiError::BadRequest("malformed request path".to_owned()))?;
    }
    Ok(&raw[start + 1..])
}

/// Percent-decodes `raw` once; 400 if the result is not UTF-8.
fn percent_decode(raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| ApiError::BadRequest("the path is not valid UTF-8 once decoded".to_owned()))
}

/// Checks a decoded path below a client folder, segment by segment.
fn validate_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::BadRequest(format!("invalid file path: {why}")));
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad(&format!("it is longer than {MAX_PATH_LEN} bytes"));
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("it is absolute or has an empty segment"),
            "." | ".." => return bad("it may not contain . or .. segments"),
            _ if segment.len() > MAX_SEGMENT_LEN => {
                return bad(&format!("a segment is longer than {MAX_SEGMENT_LEN} bytes"));
            }
            _ if segment.chars().any(|c| c == '\\' || c.is_control()) => {
                return bad("it may not contain \\ or control characters");
            }
            _ => {}
        }
    }
    Ok(())
}

/// 413 early when the declared body cannot hold a file within the limit.
fn check_declared_length(req: &HttpRequest, limit: u64) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit.saturating_add(MULTIPART_OVERHEAD) => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// 400 unless the body is declared as `multipart/form-data` with a boundary.
///
/// Checked before the folders are created, so that a wrong body leaves no trace.
fn require_form_data(req: &HttpRequest) -> Result<(), ApiError> {
    match req.mime_type() {
        Ok(Some(ct))
            if ct.type_() == mime::MULTIPART
                && ct.subtype() == mime::FORM_DATA
                && ct.get_param(mime::BOUNDARY).is_some() =>
        {
            Ok(())
        }
        _ => Err(ApiError::BadRequest(
            "expected a multipart/form-data body with one file part".to_owned(),
        )),
    }
}

/// Reads the whole multipart body, writing its one file part to `file`, and
/// returns the file's size.
///
/// Parts without a file name (plain form fields) are read and dropped, within
/// [`MULTIPART_OVERHEAD`] bytes in all. The body is read to its end so that a
/// second file part is noticed before anything is renamed into place.
async fn receive_single_file(
    parts: &mut Multipart,
    file: tokio::fs::File,
    server: &FileServer,
    ticket: &Ticket,
) -> Result<u64, ApiError> {
    let mut file = Some(file);
    let mut size = None;
    let mut part_count = 0;
    let mut field_bytes = 0_u64;
    while let Some(mut part) = parts.try_next().await.map_err(multipart_error)? {
        part_count += 1;
        if part_count > MAX_PARTS {
            return Err(ApiError::BadRequest(format!(
                "the body has more than {MAX_PARTS} parts"
            )));
        }
        if !is_file_part(&part) {
            while let Some(chunk) = part.try_next().await.map_err(multipart_error)? {
                field_bytes += chunk.len() as u64;
                if field_bytes > MULTIPART_OVERHEAD {
                    return Err(ApiError::TooLarge(format!(
                        "the form fields beside the file exceed {MULTIPART_OVERHEAD} bytes"
                    )));
                }
            }
            continue;
        }
        let Some(file) = file.take() else {
            return Err(ApiError::BadRequest(
                "the body has more than one file part".to_owned(),
            ));
        };
        size = Some(write_part(&mut part, file, server, ticket).await?);
    }
    size.ok_or_else(|| ApiError::BadRequest("the body has no file part".to_owned()))
}

/// Streams one part into `file`, stopping as soon as it grows past
/// `max_file_size` or a cap; each chunk's room is reserved before it is
/// written.
async fn write_part(
    part: &mut Field,
    file: tokio::fs::File,
    server: &FileServer,
    ticket: &Ticket,
) -> Result<u64, ApiError> {
    let limit = server.max_file_size;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_SIZE, file);
    let mut size = 0_u64;
    while let Some(chunk) = part.try_next().await.map_err(multipart_error)? {
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        server.reserve(ticket, chunk.len() as u64).await?;
        out.write_all(&chunk)
            .await
            .map_err(|e| io_error("writing an upload", e))?;
    }
    // A tokio file reports a failed write only on flush, and may still be
    // writing after it is dropped; flushing makes the rename see all bytes.
    out.flush()
        .await
        .map_err(|e| io_error("writing an upload", e))?;
    Ok(size)
}

/// Whether a part carries a file (its Content-Disposition names one).
fn is_file_part(part: &Field) -> bool {
    part.content_disposition()
        .is_some_and(|cd| cd.get_filename().is_some() || cd.get_filename_ext().is_some())
}

/// Where an upload goes, once its folders exist.
#[derive(Debug, Clone)]
struct UploadDir {
    /// The client's folder, resolved.
    client_dir: PathBuf,
    /// The resolved folder the file goes into.
    dir: PathBuf,
    /// The size of the file the upload replaces, if there is one.
    existing: Option<u64>,
}

/// Makes sure the folders leading to `target` exist inside the client's
/// folder, and returns where the file goes.
///
/// Folders are created one at a time and every existing one is checked, so
/// a symbolic link on the way is refused before anything is created through
/// it. The destination may be a file (it is replaced) or missing, but not a
/// folder or a link.
fn prepare_upload_dir(root: &Path, target: &Target) -> Result<UploadDir, ApiError> {
    fs::create_dir_all(root).map_err(|e| io_error("creating the file-server root", e))?;
    let root = fs::canonicalize(root).map_err(|e| io_error("resolving the file-server root", e))?;
    let client_dir = root.join(&target.name);
    ensure_dir(&client_dir)?;

    let mut dir = client_dir.clone();
    for segment in target.parent_segments() {
        dir.push(segment);
        ensure_dir(&dir)?;
    }
    let dir = fs::canonicalize(&dir).map_err(|e| io_error("resolving an upload folder", e))?;
    if !dir.starts_with(&client_dir) {
        return Err(escapes_folder(target));
    }

    let existing = match fs::symlink_metadata(dir.join(target.file_name())) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(symlink_refused(target)),
        Ok(meta) if meta.is_dir() => {
            return Err(ApiError::BadRequest(format!(
                "{} is a folder, not a file",
                target.path
            )))
        }
        Ok(meta) => Some(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("inspecting an upload's destination", e)),
    };
    Ok(UploadDir {
        client_dir,
        dir,
        existing,
    })
}

/// Removes `dir` and then its parents while they are empty, up to but not
/// including `client_dir`. Call it under the folder's lock, so that no
/// upload is about to put a file into one of them.
fn remove_empty_folders(client_dir: &Path, dir: &Path) {
    let mut dir = dir;
    while dir != client_dir && dir.starts_with(client_dir) {
        if fs::remove_dir(dir).is_err() {
            // Not empty (or already gone): its parents are not empty either.
            return;
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return,
        }
    }
}

/// Creates the folder `dir` if it is missing; 400 if something that is not a
/// plain folder (a file, a symbolic link) is in the way.
fn ensure_dir(dir: &Path) -> Result<(), ApiError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir).map_err(|e| io_error("inspecting a folder", e))?;
            if meta.file_type().is_symlink() {
                log::warn!("file server refused the symbolic link {}", dir.display());
                Err(ApiError::BadRequest(
                    "the path goes through a symbolic link".to_owned(),
                ))
            } else if meta.is_dir() {
                Ok(())
            } else {
                Err(ApiError::BadRequest(
                    "a folder on the path is a file".to_owned(),
                ))
            }
        }
        Err(e) => Err(io_error("creating a folder", e)),
    }
}

/// The resolved path of the existing regular file `target`; 404 if there is
/// none (a folder counts as none), 400 if it is a symbolic link or resolves
/// outside the client's folder.
fn resolve_existing_file(root: &Path, target: &Target) -> Result<PathBuf, ApiError> {
    let root = match fs::canonicalize(root) {
        Ok(root) => root,
        Err(e) if is_missing(&e) => return Err(not_found(target)),
        Err(e) => return Err(io_error("resolving the file-server root", e)),
    };
    // Not canonicalized on purpose: if the client folder were itself a link,
    // the resolved file would not start with it and is refused.
    let client_dir = root.join(&target.name);
    let candidate = client_dir.join(target.relative());
    match fs::symlink_metadata(&candidate) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(symlink_refused(target)),
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(not_found(target)),
        Err(e) if is_missing(&e) => return Err(not_found(target)),
        Err(e) => return Err(io_error("inspecting a file", e)),
    }
    let resolved = match fs::canonicalize(&candidate) {
        Ok(resolved) => resolved,
        Err(e) if is_missing(&e) => return Err(not_found(target)),
        Err(e) => return Err(io_error("resolving a file", e)),
    };
    if resolved.starts_with(&client_dir) {
        Ok(resolved)
    } else {
        Err(escapes_folder(target))
    }
}

/// An upload in progress: its temporary file, its reservation in the
/// counts, and the folders it may have created. Unless it is committed, the
/// file and any folder it left empty are removed and the reservation is
/// given back.
///
/// Error paths discard it explicitly (and wait for that). The `Drop` guard is
/// for a handler future that is dropped mid-upload: it gives the reservation
/// back at once and cleans up on the blocking pool.
#[derive(Debug)]
struct PendingUpload {
    staged: Staged,
    armed: bool,
}

/// What an upload in progress has put in place.
#[derive(Debug, Clone)]
struct Staged {
    temp: PathBuf,
    destination: PathBuf,
    place: UploadDir,
    lock: Arc<Mutex<()>>,
    usage: Arc<Usage>,
    ticket: Ticket,
}

impl PendingUpload {
    /// Under the folder's lock: creates the folders and the temporary file
    /// for `target` and registers the upload in the counts, which refuse it
    /// when the folder already holds its limit of files. A refused upload
    /// leaves nothing behind.
    fn stage(
        root: &Path,
        target: &Target,
        key: String,
        lock: Arc<Mutex<()>>,
        usage: Arc<Usage>,
    ) -> Result<(Self, tokio::fs::File), ApiError> {
        let _changing = lock_folder(&lock);
        let place = prepare_upload_dir(root, target)?;
        let temp = place
            .dir
            .join(format!(".fs-upload-{}.part", Uuid::new_v4().simple()));
        let file = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => file,
            Err(e) => {
                remove_empty_folders(&place.client_dir, &place.dir);
                return Err(io_error("creating an upload's temporary file", e));
            }
        };
        match usage.begin(&target.name, &key, &target.path, place.existing) {
            Ok(ticket) => {
                let staged = Staged {
                    temp,
                    destination: place.dir.join(target.file_name()),
                    place,
                    lock: Arc::clone(&lock),
                    usage,
                    ticket,
                };
                let pending = Self {
                    staged,
                    armed: true,
                };
                Ok((pending, tokio::fs::File::from_std(file)))
            }
            Err(refusal) => {
                drop(file);
                remove_partial(&temp);
                remove_empty_folders(&place.client_dir, &place.dir);
                Err(refused(usage.caps(), refusal))
            }
        }
    }

    fn ticket(&self) -> &Ticket {
        &self.staged.ticket
    }

    /// Renames the file into place, replacing any file there.
    async fn commit(mut self) -> Result<(), ApiError> {
        self.armed = false;
        let staged = self.staged.clone();
        blocking(move || staged.commit()).await
    }

    /// Removes what the upload put in place. The reservation goes at once,
    /// so that the room is free before the clean-up runs.
    async fn discard(mut self) {
        self.armed = false;
        self.staged.usage.release(&self.staged.ticket);
        let staged = self.staged.clone();
        let discarded = blocking(move || {
            staged.discard();
            Ok(())
        });
        if let Err(e) = discarded.await {
            log::warn!("could not discard an upload: {e}");
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.staged.usage.release(&self.staged.ticket);
        let staged = self.staged.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || staged.discard())),
            // No runtime, so no event loop to block.
            Err(_) => staged.discard(),
        }
    }
}

impl Staged {
    /// Under the folder's lock: the rename, and the new size in the counts.
    fn commit(self) -> Result<(), ApiError> {
        let lock = Arc::clone(&self.lock);
        let _changing = lock_folder(&lock);
        let replaced = match fs::symlink_metadata(&self.destination) {
            Ok(meta) if meta.is_file() => Some(meta.len()),
            Ok(_) => None,
            Err(e) if is_missing(&e) => None,
            Err(e) => {
                self.discard_locked();
                return Err(io_error("inspecting an upload's destination", e));
            }
        };
        match fs::rename(&self.temp, &self.destination) {
            Ok(()) => {
                self.usage.commit(&self.ticket, replaced);
                Ok(())
            }
            Err(e) => {
                self.discard_locked();
                Err(match e.kind() {
                    io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty => {
                        ApiError::BadRequest("the destination is a folder, not a file".to_owned())
                    }
                    _ => io_error("moving an upload into place", e),
                })
            }
        }
    }

    /// Removes the temporary file and the folders it leaves empty, and gives
    /// the reservation back.
    fn discard(self) {
        let lock = Arc::clone(&self.lock);
        let _changing = lock_folder(&lock);
        self.discard_locked();
    }

    fn discard_locked(self) {
        remove_partial(&self.temp);
        remove_empty_folders(&self.place.client_dir, &self.place.dir);
        self.usage.release(&self.ticket);
    }
}

/// Takes a folder's lock (see [`usage`]); only ever on the blocking pool.
fn lock_folder(lock: &Mutex<()>) -> MutexGuard<'_, ()> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes an upload's temporary file.
fn remove_partial(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        log_removal_failure(path, &e);
    }
}

/// The answer to a refused reservation; a cap is counted in the metrics.
fn refused(caps: FileCaps, refusal: Refusal) -> ApiError {
    let Refusal::Over(cap) = refusal else {
        // The client left while uploading: its key is nobody's now.
        return ApiError::UnknownKey;
    };
    metrics().limit_reached(Protocol::Concierge, cap.key());
    ApiError::TooLarge(match cap {
        Cap::FilesPerClient => format!(
            "the client's folder already holds its limit of {} files \
             (concierge.max_files_per_client)",
            caps.max_files_per_client
        ),
        Cap::BytesPerClient => format!(
            "the upload would take the client's folder over its limit of {} bytes \
             (concierge.max_bytes_per_client)",
            caps.max_bytes_per_client
        ),
        Cap::FilesDirBytes => format!(
            "the upload would take the files directory over its limit of {} bytes \
             (concierge.max_files_dir_bytes)",
            caps.max_files_dir_bytes
        ),
    })
}

fn log_removal_failure(path: &Path, e: &io::Error) {
    if e.kind() != io::ErrorKind::NotFound {
        log::warn!(
            "could not remove the partial upload {}: {e}",
            path.display()
        );
    }
}

/// Runs file-system work on the blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    web::block(work)
        .await
        .map_err(|e| ApiError::Internal(format!("file-server task failed: {e}")))?
}

/// Whether an I/O error means "there is no such file" (a missing component,
/// or a component that is a file where a folder was expected).
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether `time` can be written as an HTTP date (`ETag`, `Last-Modified`).
fn is_http_date(time: SystemTime) -> bool {
    time.duration_since(UNIX_EPOCH)
        .is_ok_and(|since_epoch| since_epoch < LAST_HTTP_DATE)
}

fn io_error(context: &str, e: io::Error) -> ApiError {
    match e.kind() {
        io::ErrorKind::StorageFull => {
            log::error!("file server: {context}: {e}");
            ApiError::Unavailable("the file server is out of space".to_owned())
        }
        _ => ApiError::Internal(format!("file server: {context}: {e}")),
    }
}

fn multipart_error(e: MultipartError) -> ApiError {
    match e {
        MultipartError::Payload(PayloadError::Overflow) => {
            ApiError::TooLarge("the request body is too large".to_owned())
        }
        other => ApiError::BadRequest(format!("malformed multipart body: {other}")),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the file is larger than the limit of {limit} bytes"
    ))
}

fn not_found(target: &Target) -> ApiError {
    ApiError::NotFound(format!(
        "no file {} in the folder of {}",
        target.path, target.name
    ))
}

fn symlink_refused(target: &Target) -> ApiError {
    log::warn!(
        "file server refused a symbolic link at {}/{}",
        target.name,
        target.path
    );
    ApiError::BadRequest("the path is a symbolic link".to_owned())
}

fn escapes_folder(target: &Target) -> ApiError {
    log::warn!(
        "file server refused {}/{}: it resolves outside the client's folder",
        target.name,
        target.path
    );
    ApiError::BadRequest("the path leads outside the client's folder".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_splits_into_parent_folders_and_a_file_name() {
        let nested = Target {
            name: "alice".to_owned(),
            path: "a/b/c.txt".to_owned(),
        };
        assert_eq!(nested.parent_segments().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(nested.file_name(), "c.txt");
        assert_eq!(nested.relative(), Path::new("a/b/c.txt"));

        let flat = Target {
            name: "alice".to_owned(),
            path: "c.txt".to_owned(),
        };
        assert_eq!(flat.parent_segments().count(), 0);
        assert_eq!(flat.file_name(), "c.txt");
    }

    #[test]
    fn modification_times_outside_the_http_date_range_are_detected() {
        assert!(is_http_date(SystemTime::now()));
        assert!(is_http_date(UNIX_EPOCH));
        assert!(!is_http_date(UNIX_EPOCH - Duration::from_secs(1)));
        assert!(!is_http_date(UNIX_EPOCH + LAST_HTTP_DATE));
    }
}
