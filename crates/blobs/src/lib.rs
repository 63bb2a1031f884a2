//! Content-addressed firmware storage.
//!
//! Firmware files are stored once, under the key `sha256/<lowercase hex>`, behind an
//! [`object_store::ObjectStore`] so the same code runs on a local folder today and on S3-compatible
//! storage (`s3://`, see [`S3Options`]) so Otter nodes can be stateless. Ingest streams the upload into a staging object while
//! hashing it, then moves it under its final key, so a crash never leaves a half-written object
//! where downloads look.

mod local;
mod probe;
mod s3;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use md5::Md5;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use probe::{PROBE_PREFIX, ProbeError};
pub use s3::{MAX_PRESIGN_TTL, S3Options};

/// Folder (key prefix) of finished blobs.
const BLOB_PREFIX: &str = "sha256";
/// Folder (key prefix) of uploads in progress; see [`Blobs::sweep_staging`].
const STAGING_PREFIX: &str = "staging";
/// Folder (key prefix) of blobs being removed; see [`Blobs::withdraw`].
const TRASH_PREFIX: &str = "trash";
/// Bytes read from the uploader per step.
const READ_CHUNK: usize = 64 * 1024;
/// Multipart parts in flight at once: bounds ingest memory to a few parts (5 MiB each).
const MAX_PARTS_IN_FLIGHT: usize = 2;
/// Longest piece of a rejected input echoed back in an error (inputs come from the network).
const MAX_ECHO: usize = 80;

/// What ingest learned about a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// SHA-256 of the content, lowercase hex; also the blob's name.
    pub sha256: String,
    /// MD5 of the content, lowercase hex (Tencent and Alibaba devices check it).
    pub md5: String,
    /// Length in bytes.
    pub size: u64,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid sha256 {0:?}: expected 64 lowercase hex characters")]
    InvalidSha256(String),
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("invalid range {start}..{end}")]
    InvalidRange { start: u64, end: u64 },
    #[error("invalid blob store spec {0:?}")]
    InvalidSpec(String),
    #[error("unsupported blob store: {0}")]
    Unsupported(String),
    /// Reading the content to ingest failed (the uploader's side, not the store's).
    #[error("reading the content failed: {0}")]
    Source(#[source] std::io::Error),
    #[error("blob I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

impl BlobError {
    /// Whether the store itself failed (disk full, read-only folder, S3 down): the server's
    /// problem, as opposed to bad input or content that could not be read.
    pub fn is_storage(&self) -> bool {
        matches!(self, Self::Io(_) | Self::Store(_))
    }
}

/// Handle on the blob store; cheap to clone (shares one engine).
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The S3 engine behind `store`, when it is one: it can presign URLs.
    s3: Option<Arc<s3::S3Engine>>,
    /// The local folder behind `store`, when it is one: blobs are read from their files directly.
    local: Option<Arc<local::LocalFiles>>,
    /// The staging folder of a local store: its unfinished uploads (`<name>#<n>` files) are
    /// invisible to the store's listing, so the sweeper reads the folder itself.
    staging_dir: Option<std::path::PathBuf>,
}

/// A blob taken out of use by [`Blobs::withdraw`], to [restore](Blobs::restore) or
/// [discard](Blobs::discard).
#[derive(Debug)]
pub struct Withdrawn {
    sha256: String,
    trash: Path,
}

impl Withdrawn {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// A stored blob, looked up once: its size, and ranged reads that need no further lookup.
/// Get one with [`Blobs::blob`]; keep it for the duration of one download.
pub struct Blob {
    size: u64,
    source: Source,
}

enum Source {
    /// A local file, read directly.
    File(Arc<local::OpenFile>),
    /// Any other store, read through `object_store`.
    Store {
        store: Arc<dyn ObjectStore>,
        key: Path,
    },
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob").field("size", &self.size).finish()
    }
}

impl Blob {
    /// Length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Streams bytes `range` (end exclusive, clamped to the size). A range starting at or past
    /// the end is [`BlobError::InvalidRange`] unless it is empty.
    pub async fn read(
        &self,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let end = range.end.min(self.size);
        if range.start > range.end || (range.start >= end && !range.is_empty()) {
            return Err(BlobError::InvalidRange {
                start: range.start,
                end: range.end,
            });
        }
        if range.is_empty() {
            // Stores reject empty ranges.
            return Ok(stream::empty().boxed());
        }
        let range = range.start..end;
        match &self.source {
            Source::File(file) => Ok(local::stream(Arc::clone(file), range)),
            Source::Store { store, key } => {
                let options = GetOptions::new().with_range(Some(range));
                match store.get_opts(key, options).await {
                    Ok(got) => stream_payload(got),
                    Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(
                        key.filename().unwrap_or_default().into(),
                    )),
                    Err(err) => Err(err.into()),
                }
            }
        }
    }
}

impl std::fmt::Debug for Blobs {
    // The engines' own Debug output may include credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("store", &self.store.to_string())
            .finish()
    }
}

impl Blobs {
    /// Opens the store named by `spec` with default S3 settings; see [`Self::open_with`].
    pub fn open(spec: &str) -> Result<Self, BlobError> {
        Self::open_with(spec, &S3Options::default())
    }

    /// Opens the store named by `spec`: a plain path or `file://path` is a local folder (created if
    /// missing); `s3://bucket[/prefix]` is a bucket reached with `s3` (nothing is sent to it yet).
    pub fn open_with(spec: &str, s3: &S3Options) -> Result<Self, BlobError> {
        let spec = spec.trim();
        if let Some(path) = spec.strip_prefix("file://") {
            return Self::open_local(path);
        }
        if let Some(rest) = spec.strip_prefix("s3://") {
            let engine = Arc::new(s3::open(rest, s3)?);
            return Ok(Self {
                store: Arc::clone(&engine.store),
                s3: Some(engine),
                local: None,
                staging_dir: None,
            });
        }
        if let Some((scheme, _)) = spec.split_once("://") {
            return Err(BlobError::Unsupported(format!(
                "unknown blob store scheme {}://",
                echo(scheme)
            )));
        }
        Self::open_local(spec)
    }

    /// Wraps an already-built engine (other engines, or tests).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            s3: None,
            local: None,
            staging_dir: None,
        }
    }

    /// Whether [`Self::presigned_url`] can work: the blobs are in S3.
    pub fn can_presign(&self) -> bool {
        self.s3.is_some()
    }

    /// A URL of the S3 service itself that lets anyone holding it GET the blob (with `Range` if
    /// they like) for `expires_in` (at most [`MAX_PRESIGN_TTL`]), or `None` when the blobs are not
    /// in S3. Signing is local: nothing is sent, and the blob is not checked to exist.
    pub async fn presigned_url(
        &self,
        sha256: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        let key = checked_key(sha256)?;
        match &self.s3 {
            Some(engine) => Ok(Some(engine.presign_get(&key, expires_in).await?)),
            None => Ok(None),
        }
    }

    fn open_local(path: &str) -> Result<Self, BlobError> {
        if path.is_empty() {
            return Err(BlobError::InvalidSpec(path.into()));
        }
        std::fs::create_dir_all(path)?;
        // fsync: a blob reported as ingested must survive a power cut, as on S3.
        let fs = Arc::new(LocalFileSystem::new_with_prefix(path)?.with_fsync(true));
        Ok(Self {
            store: Arc::clone(&fs) as Arc<dyn ObjectStore>,
            s3: None,
            local: Some(Arc::new(local::LocalFiles::new(fs))),
            staging_dir: Some(std::path::Path::new(path).join(STAGING_PREFIX)),
        })
    }

    /// Streams `reader` into the store, computing size, MD5 and SHA-256 on the way, and stores it
    /// under `sha256/<hex>`. Storing content that is already there is fine (same key, same bytes).
    pub async fn ingest<R: AsyncRead + Unpin + Send>(
        &self,
        mut reader: R,
    ) -> Result<BlobInfo, BlobError> {
        let staging = staging_key();
        let mut writer = WriteMultipart::new(self.store.put_multipart(&staging).await?);
        let info = match copy_hashing(&mut reader, &mut writer).await {
            Ok(info) => info,
            Err(err) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(%staging, error = %abort, "could not abort staging upload");
                }
                return Err(err);
            }
        };
        if let Err(err) = writer.finish().await {
            // A failed completion can leave the staging object or its parts behind.
            self.delete_quietly(&staging).await;
            self.remove_local_parts(&staging).await;
            return Err(err.into());
        }
        if let Err(err) = self.promote(&staging, &blob_key(&info.sha256)).await {
            self.delete_quietly(&staging).await;
            return Err(err);
        }
        tracing::info!(sha256 = %info.sha256, size = info.size, "blob ingested");
        Ok(info)
    }

    /// Moves a finished staging object under its final key in one atomic step.
    async fn promote(&self, staging: &Path, key: &Path) -> Result<(), BlobError> {
        match self.store.head(key).await {
            // Same key means same content: keep the stored copy, drop ours.
            Ok(_) => {
                self.delete_quietly(staging).await;
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => {
                Ok(self.store.rename(staging, key).await?)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn delete_quietly(&self, key: &Path) {
        if let Err(err) = self.store.delete(key).await {
            tracing::warn!(%key, error = %err, "could not delete staging object");
        }
    }

    /// The blob `sha256`, or `None` when it is not stored: one lookup, after which its size is
    /// known and ranges of it can be read (what a download needs).
    pub async fn blob(&self, sha256: &str) -> Result<Option<Blob>, BlobError> {
        let key = checked_key(sha256)?;
        if let Some(local) = &self.local {
            return Ok(local.open(sha256).await?.map(|file| Blob {
                size: file.size,
                source: Source::File(file),
            }));
        }
        match self.store.head(&key).await {
            Ok(meta) => Ok(Some(Blob {
                size: meta.size,
                source: Source::Store {
                    store: Arc::clone(&self.store),
                    key,
                },
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Size of the blob, or `None` when it is not stored.
    pub async fn size(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        Ok(self.blob(sha256).await?.map(|blob| blob.size))
    }

    /// Streams bytes `range` of the blob (end exclusive, clamped to the blob's size). Memory stays
    /// constant whatever the size: the bytes come in chunks. [`Self::blob`] then [`Blob::read`]:
    /// a download, which needs the size first anyway, uses those directly.
    pub async fn read(
        &self,
        sha256: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        checked_key(sha256)?;
        if range.start > range.end {
            return Err(BlobError::InvalidRange {
                start: range.start,
                end: range.end,
            });
        }
        match self.blob(sha256).await? {
            Some(blob) => blob.read(range).await,
            None => Err(BlobError::NotFound(sha256.into())),
        }
    }

    /// Whether the blob `sha256` is stored now: asks the store itself (no cached file), so a
    /// blob withdrawn a moment ago is seen as gone.
    pub async fn exists(&self, sha256: &str) -> Result<bool, BlobError> {
        let key = checked_key(sha256)?;
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// First step of removing a blob: moves it out of where downloads and ingest look, under a
    /// name of its own in `trash/`, so it can still be [restored](Self::restore) (a row that
    /// needs it was stored meanwhile) or [discarded](Self::discard). `None` when it is not stored.
    pub async fn withdraw(&self, sha256: &str) -> Result<Option<Withdrawn>, BlobError> {
        let key = checked_key(sha256)?;
        let trash =
            Path::from(TRASH_PREFIX).join(format!("{sha256}.{:032x}", rand::random::<u128>()));
        if let Some(local) = &self.local {
            local.forget(sha256);
        }
        match self.store.rename(&key, &trash).await {
            Ok(()) => Ok(Some(Withdrawn {
                sha256: sha256.to_owned(),
                trash,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Puts a withdrawn blob back under its name (content-addressed: if an ingest stored it again
    /// meanwhile, the bytes are the same).
    pub async fn restore(&self, withdrawn: Withdrawn) -> Result<(), BlobError> {
        let key = blob_key(&withdrawn.sha256);
        self.store.rename(&withdrawn.trash, &key).await?;
        tracing::info!(sha256 = %withdrawn.sha256, "blob restored: needed again");
        Ok(())
    }

    /// Blobs withdrawn at least `older_than` ago and neither restored nor discarded: a process
    /// stopped between the steps left them. The caller settles each (restore when a row names
    /// it, else discard).
    pub async fn withdrawn(&self, older_than: Duration) -> Result<Vec<Withdrawn>, BlobError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let cutoff = i64::try_from(cutoff).unwrap_or(i64::MAX);
        let prefix = Path::from(TRASH_PREFIX);
        let mut listing = self.store.list(Some(&prefix));
        let mut found = Vec::new();
        while let Some(meta) = listing.try_next().await? {
            let sha = meta
                .location
                .filename()
                .and_then(|name| name.split_once('.'))
                .map(|(sha, _)| sha.to_owned());
            match sha {
                Some(sha) if validate_sha256(&sha).is_ok() => {
                    if meta.last_modified.timestamp() <= cutoff {
                        found.push(Withdrawn {
                            sha256: sha,
                            trash: meta.location,
                        });
                    }
                }
                _ => tracing::warn!(key = %meta.location, "not a withdrawn blob; left alone"),
            }
        }
        Ok(found)
    }

    /// Deletes a withdrawn blob for good.
    pub async fn discard(&self, withdrawn: Withdrawn) -> Result<(), BlobError> {
        match self.store.delete(&withdrawn.trash).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
        tracing::info!(sha256 = %withdrawn.sha256, "blob removed");
        Ok(())
    }

    /// Whether the blobs are in a local folder (which only this process uses), rather than a
    /// store shared by several nodes.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Removes the unfinished parts (`<name>#<n>`) of the local staging object `staging`.
    async fn remove_local_parts(&self, staging: &Path) {
        let (Some(dir), Some(name)) = (&self.staging_dir, staging.filename()) else {
            return;
        };
        let prefix = format!("{name}#");
        let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy().starts_with(&prefix)
                && let Err(err) = tokio::fs::remove_file(entry.path()).await
            {
                tracing::warn!(%staging, error = %err, "could not delete a staging part");
            }
        }
    }

    /// Deletes staging objects older than `older_than`: leftovers of ingests cut short by a crash
    /// (on a local folder, their unfinished parts too). Returns how many were removed. Safe to run
    /// while other ingests are in progress as long as `older_than` is longer than any upload takes.
    pub async fn sweep_staging(&self, older_than: Duration) -> Result<usize, BlobError> {
        let mut removed = self.sweep_local_staging(older_than).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let cutoff = i64::try_from(now.saturating_sub(older_than.as_secs())).unwrap_or(i64::MAX);
        let prefix = Path::from(STAGING_PREFIX);
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.try_next().await? {
            if meta.last_modified.timestamp() <= cutoff {
                self.delete_quietly(&meta.location).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The unfinished parts in a local staging folder (invisible to the store's listing).
    async fn sweep_local_staging(&self, older_than: Duration) -> Result<usize, BlobError> {
        let Some(dir) = &self.staging_dir else {
            return Ok(0);
        };
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err.into()),
        };
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH);
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await? {
            let is_part = entry.file_name().to_string_lossy().contains('#');
            let meta = entry.metadata().await?;
            let old = meta.modified().map_or(true, |at| at <= cutoff);
            if is_part && meta.is_file() && old {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => removed += 1,
                    Err(err) => {
                        tracing::warn!(file = %entry.file_name().to_string_lossy(), error = %err, "could not delete a staging part")
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// Reads `reader` to its end into `writer`, hashing as it goes.
async fn copy_hashing<R: AsyncRead + Unpin + Send>(
    reader: &mut R,
    writer: &mut WriteMultipart,
) -> Result<BlobInfo, BlobError> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut md5 = Md5::new();
    let mut sha = Sha256::new();
    let mut size = 0u64;
    loop {
        // Back-pressure: never buffer more than a few parts, however fast the reader is.
        writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await?;
        let n = reader.read(&mut buf).await.map_err(BlobError::Source)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        md5.update(chunk);
        sha.update(chunk);
        size += n as u64;
        writer.write(chunk);
    }
    Ok(BlobInfo {
        sha256: hex::encode(sha.finalize()),
        md5: hex::encode(md5.finalize()),
        size,
    })
}

/// Checks that `sha256` is 64 lowercase hex characters, the only names blobs have.
/// Anything else (path separators, `..`, upper case) is refused before it reaches the store.
pub fn validate_sha256(sha256: &str) -> Result<(), BlobError> {
    let ok = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidSha256(echo(sha256)))
    }
}

fn checked_key(sha256: &str) -> Result<Path, BlobError> {
    validate_sha256(sha256)?;
    Ok(blob_key(sha256))
}

fn blob_key(sha256: &str) -> Path {
    Path::from(BLOB_PREFIX).join(sha256)
}

/// A fresh, unguessable staging name, unique across nodes sharing one store.
fn staging_key() -> Path {
    Path::from(STAGING_PREFIX).join(format!("{:032x}", rand::random::<u128>()))
}

/// At most [`MAX_ECHO`] characters of untrusted input, for error messages.
fn echo(input: &str) -> String {
    input.chars().take(MAX_ECHO).collect()
}

/// Chunk size when streaming a local file: object_store's own file stream reads 8 KiB per
/// blocking call, which caps a download far below what the disk and socket can do.
const FILE_CHUNK: usize = 256 * 1024;

fn stream_payload(
    got: GetResult,
) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
    let range = got.range.clone();
    match got.payload {
        GetResultPayload::File(mut file, _) => {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(range.start))?;
            let file = tokio::fs::File::from_std(file).take(range.end - range.start);
            Ok(
                tokio_util::io::ReaderStream::with_capacity(file, FILE_CHUNK)
                    .map_err(BlobError::from)
                    .boxed(),
            )
        }
        GetResultPayload::Stream(s) => Ok(s.map_err(BlobError::from).boxed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_validation() {
        let good = "a".repeat(64);
        assert!(validate_sha256(&good).is_ok());
        assert!(validate_sha256(&"A".repeat(64)).is_err());
        assert!(validate_sha256(&"a".repeat(63)).is_err());
        assert!(validate_sha256(&"a".repeat(65)).is_err());
        assert!(validate_sha256(&format!("../{}", "a".repeat(61))).is_err());
        assert!(validate_sha256("").is_err());
        // Multi-byte characters must not confuse the length check.
        assert!(validate_sha256(&"é".repeat(32)).is_err());
    }

    #[test]
    fn errors_do_not_echo_huge_input() {
        let long = "x".repeat(10_000);
        let msg = validate_sha256(&long).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }
}
