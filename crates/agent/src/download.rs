//! Fetches a firmware image over HTTP into a file, streaming (constant memory) and hashing on
//! the way, resuming where it stopped: within a run after a cut connection, and across
//! restarts from a checkpoint persisted as the bytes arrive. Then checks the image against the
//! offer (size, MD5, SHA-256). Weak networks are the normal case for devices, so a cut is
//! retried with backoff, and only a download that makes no progress for a while fails.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use md5::Md5;
use otter_protocol::{FailureKind, Offer};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::DownloadSettings;
use crate::backoff::Backoff;
use crate::state;

/// How long connecting to the download server may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may stay silent in the middle of a download (the simulator's client;
/// the agent's own stall limit is [`DownloadSettings::stall_timeout`]).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A checkpoint is written after this many new bytes...
const CHECKPOINT_BYTES: u64 = 256 * 1024;
/// ...or this long after the previous one, whichever comes first.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause between two attempts.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
/// Block size used to re-hash a partial file.
const REHASH_BLOCK: usize = 64 * 1024;

/// A downloaded image that matched the offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub path: PathBuf,
    pub size: u64,
    /// Lowercase hex digests of what was actually received.
    pub md5: String,
    pub sha256: String,
}

/// Why a download failed; [`DownloadError::kind`] picks the failure code the device reports.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    #[error("the download server answered HTTP {0}")]
    Status(StatusCode),
    #[error("the download timed out: {0}")]
    Timeout(reqwest::Error),
    #[error("no data for {0:?}: the download stalled")]
    Stalled(Duration),
    #[error("HTTP error: {0}")]
    Http(reqwest::Error),
    #[error("the server answered the range request with {0}")]
    BadRange(String),
    #[error("cannot write the image: {0}")]
    Io(#[from] std::io::Error),
    #[error("received {got} bytes, the offer says {expected}")]
    Size { expected: u64, got: u64 },
    #[error("{which} of the image is {got}, the offer says {expected}")]
    Digest {
        which: &'static str,
        expected: String,
        got: String,
    },
}

impl DownloadError {
    /// The dialect-neutral failure this error is reported as.
    pub(crate) fn kind(&self) -> FailureKind {
        match self {
            DownloadError::Status(StatusCode::NOT_FOUND) => FailureKind::NotFound,
            DownloadError::Status(StatusCode::FORBIDDEN) => FailureKind::Forbidden,
            DownloadError::Timeout(_) | DownloadError::Stalled(_) => FailureKind::DownloadTimeout,
            DownloadError::Size { .. } | DownloadError::Digest { .. } => {
                FailureKind::DigestMismatch
            }
            DownloadError::Status(_)
            | DownloadError::Http(_)
            | DownloadError::BadRange(_)
            | DownloadError::Io(_) => FailureKind::DownloadFailed,
        }
    }

    /// Worth another attempt: the network or the server may do better next time.
    fn retryable(&self) -> bool {
        match self {
            DownloadError::Status(s) => s.is_server_error() || *s == StatusCode::TOO_MANY_REQUESTS,
            DownloadError::Timeout(_)
            | DownloadError::Stalled(_)
            | DownloadError::Http(_)
            | DownloadError::BadRange(_) => true,
            DownloadError::Io(_) | DownloadError::Size { .. } | DownloadError::Digest { .. } => {
                false
            }
        }
    }

    /// The partial file cannot be trusted (or the disk is the problem): start over next time.
    fn discards_partial(&self) -> bool {
        matches!(
            self,
            DownloadError::Io(_) | DownloadError::Size { .. } | DownloadError::Digest { .. }
        )
    }
}

impl From<reqwest::Error> for DownloadError {
    fn from(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            DownloadError::Timeout(err)
        } else {
            DownloadError::Http(err)
        }
    }
}

/// The HTTP client used for downloads: bounded connect and read times, no compression
/// (firmware does not compress, and the digests are over the raw bytes).
pub(crate) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("otter-agent/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What is persisted beside the partial image: which firmware it is, how much of it is safely
/// on disk, and the SHA-256 of that much (to check the partial file before trusting it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub version: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    pub url: String,
    pub bytes_done: u64,
    pub partial_sha256: String,
}

impl Checkpoint {
    /// The same firmware as `offer` (URLs change on every push; the file does not).
    fn is_for(&self, offer: &Offer) -> bool {
        self.version == offer.version
            && self.size == offer.size
            && self.md5.eq_ignore_ascii_case(&offer.md5)
            && self.sha256.eq_ignore_ascii_case(&offer.sha256)
    }

    fn load(dir: &Path) -> Option<Checkpoint> {
        let bytes = std::fs::read(state::checkpoint_path(dir)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(cp) => Some(cp),
            Err(err) => {
                tracing::warn!(error = %err, "ignoring an unreadable download checkpoint");
                None
            }
        }
    }
}

/// The partial image being written, with the digests of everything in it so far.
struct Partial {
    /// The agent's state dir (the checkpoint lives there).
    dir: PathBuf,
    file: BufWriter<tokio::fs::File>,
    md5: Md5,
    sha256: Sha256,
    done: u64,
    saved_bytes: u64,
    saved_at: Instant,
}

/// Removes the partial image and its checkpoint (after an install, or to start over).
pub(crate) fn discard(dir: &Path) {
    for path in [state::checkpoint_path(dir), state::partial_path(dir)] {
        if let Err(err) = state::remove_if_exists(&path) {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove a download file");
        }
    }
}

/// Downloads `offer.url` into the state dir `dir`, resuming a checkpointed partial image of the
/// same firmware, and verifies size, MD5 and (when offered) SHA-256. `progress(received, total)`
/// is called after every chunk. An image that fails verification is removed; one cut by the
/// network is kept with its checkpoint for the next attempt.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    offer: &Offer,
    dir: &Path,
    settings: &DownloadSettings,
    mut progress: impl FnMut(u64, u64),
) -> Result<Fetched, DownloadError> {
    let result = fetch_with_retries(http, offer, dir, settings, &mut progress).await;
    match result {
        Ok(partial) => {
            let fetched = Fetched {
                path: state::partial_path(dir),
                size: partial.done,
                md5: hex::encode(partial.md5.finalize()),
                sha256: hex::encode(partial.sha256.finalize()),
            };
            verify(offer, fetched).inspect_err(|_| discard(dir))
        }
        Err(err) => {
            let empty = std::fs::metadata(state::partial_path(dir)).map_or(true, |m| m.len() == 0);
            if err.discards_partial() || empty {
                discard(dir);
            }
            Err(err)
        }
    }
}

async fn fetch_with_retries(
    http: &reqwest::Client,
    offer: &Offer,
    dir: &Path,
    settings: &DownloadSettings,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Partial, DownloadError> {
    tokio::fs::create_dir_all(state::downloads_dir(dir)).await?;
    let mut partial = open_partial(offer, dir).await?;
    progress(partial.done, offer.size);
    let mut failures = 0u32;
    loop {
        let before = partial.done;
        let attempt = attempt(http, offer, &mut partial, settings, progress).await;
        // Whatever happened, what is on disk is safe to resume from.
        let saved = save(&mut partial, offer).await;
        let err = match (attempt, saved) {
            (Ok(()), Ok(())) => return Ok(partial),
            (Err(err), _) | (Ok(()), Err(err)) => err,
        };
        failures = if partial.done > before {
            1
        } else {
            failures + 1
        };
        if !err.retryable() || failures > settings.retries {
            return Err(err);
        }
        let pause =
            Backoff::new(settings.retry_backoff, MAX_RETRY_BACKOFF).pause(failures, rand::random());
        tracing::info!(error = %err, done = partial.done, retry_in = ?pause, "download interrupted; resuming");
        tokio::time::sleep(pause).await;
    }
}

/// Opens the partial image: resumes the checkpointed one when it is this firmware and its
/// bytes still hash to what the checkpoint says, else starts an empty one.
async fn open_partial(offer: &Offer, dir: &Path) -> Result<Partial, DownloadError> {
    let path = state::partial_path(dir);
    if let Some(cp) = Checkpoint::load(dir) {
        if cp.is_for(offer) && cp.bytes_done <= offer.size {
            match rehash(&path, cp.bytes_done).await {
                Ok((md5, sha256))
                    if hex::encode(sha256.clone().finalize()) == cp.partial_sha256 =>
                {
                    tracing::info!(version = %offer.version, bytes_done = cp.bytes_done, "resuming the download from its checkpoint");
                    return partial_at(dir, cp.bytes_done, md5, sha256).await;
                }
                Ok(_) => {
                    tracing::warn!("the partial image does not match its checkpoint; starting over")
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the partial image; starting over")
                }
            }
        } else {
            tracing::info!(old = %cp.version, new = %offer.version, "a different firmware: discarding the old partial image");
        }
    }
    discard(dir);
    partial_at(dir, 0, Md5::new(), Sha256::new()).await
}

/// The digests of the first `len` bytes of `path`, read in blocks (constant memory).
async fn rehash(path: &Path, len: u64) -> std::io::Result<(Md5, Sha256)> {
    let mut file = tokio::fs::File::open(path).await?;
    let (mut md5, mut sha256) = (Md5::new(), Sha256::new());
    let mut buf = vec![0u8; REHASH_BLOCK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(REHASH_BLOCK as u64)).unwrap_or(REHASH_BLOCK);
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        md5.update(&buf[..n]);
        sha256.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((md5, sha256))
}

/// The partial file cut to `done` bytes (anything after the checkpoint may be torn) and
/// positioned at its end.
async fn partial_at(
    dir: &Path,
    done: u64,
    md5: Md5,
    sha256: Sha256,
) -> Result<Partial, DownloadError> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(state::partial_path(dir))
        .await?;
    file.set_len(done).await?;
    file.seek(SeekFrom::Start(done)).await?;
    Ok(Partial {
        dir: dir.to_owned(),
        file: BufWriter::new(file),
        md5,
        sha256,
        done,
        saved_bytes: done,
        saved_at: Instant::now(),
    })
}

/// Flushes the partial image to disk, then records the checkpoint for it (in that order, so
/// the checkpoint never claims bytes that are not on disk).
async fn save(partial: &mut Partial, offer: &Offer) -> Result<(), DownloadError> {
    partial.file.flush().await?;
    partial.file.get_ref().sync_data().await?;
    let cp = Checkpoint {
        version: offer.version.clone(),
        size: offer.size,
        md5: offer.md5.clone(),
        sha256: offer.sha256.clone(),
        url: offer.url.clone(),
        bytes_done: partial.done,
        partial_sha256: hex::encode(partial.sha256.clone().finalize()),
    };
    let json = serde_json::to_vec(&cp).map_err(std::io::Error::other)?;
    let path = state::checkpoint_path(&partial.dir);
    tokio::task::spawn_blocking(move || state::write_atomic(&path, &json))
        .await
        .map_err(std::io::Error::other)??;
    partial.saved_bytes = partial.done;
    partial.saved_at = Instant::now();
    Ok(())
}

/// One HTTP request: from the start, or `Range: bytes=N-` from what is on disk.
async fn attempt(
    http: &reqwest::Client,
    offer: &Offer,
    partial: &mut Partial,
    settings: &DownloadSettings,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), DownloadError> {
    if partial.done == offer.size && offer.size > 0 {
        return Ok(());
    }
    let mut request = http.get(&offer.url);
    if partial.done > 0 {
        request = request.header(RANGE, format!("bytes={}-", partial.done));
    }
    let stall = settings.stall_timeout;
    let mut response = tokio::time::timeout(stall, request.send())
        .await
        .map_err(|_| DownloadError::Stalled(stall))??;
    check_status(&response, offer, partial).await?;
    let started = Instant::now();
    let start_done = partial.done;
    loop {
        let chunk = tokio::time::timeout(stall, response.chunk())
            .await
            .map_err(|_| DownloadError::Stalled(stall))??;
        let Some(chunk) = chunk else { break };
        let received = partial.done + chunk.len() as u64;
        if received > offer.size {
            return Err(DownloadError::Size {
                expected: offer.size,
                got: received,
            });
        }
        partial.md5.update(&chunk);
        partial.sha256.update(&chunk);
        partial.file.write_all(&chunk).await?;
        partial.done = received;
        progress(partial.done, offer.size);
        if partial.done - partial.saved_bytes >= CHECKPOINT_BYTES
            || partial.saved_at.elapsed() >= CHECKPOINT_INTERVAL
        {
            save(partial, offer).await?;
        }
        if let Some(rate) = settings.max_rate {
            throttle(rate, partial.done - start_done, started).await;
        }
    }
    if partial.done < offer.size {
        // The body ended cleanly (a cut connection is an error above): the file is shorter.
        return Err(DownloadError::Size {
            expected: offer.size,
            got: partial.done,
        });
    }
    Ok(())
}

/// Accepts a full answer (starting over if a range was asked) or a `206` for exactly the
/// requested range; anything else fails the attempt.
async fn check_status(
    response: &reqwest::Response,
    offer: &Offer,
    partial: &mut Partial,
) -> Result<(), DownloadError> {
    let status = response.status();
    match status {
        StatusCode::OK if partial.done > 0 => {
            tracing::info!("the server ignored the range; starting the image over");
            restart(partial).await
        }
        StatusCode::OK => Ok(()),
        StatusCode::PARTIAL_CONTENT if partial.done > 0 => {
            let range = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let expected = format!(
                "bytes {}-{}/{}",
                partial.done,
                offer.size.saturating_sub(1),
                offer.size
            );
            if range.trim() == expected {
                Ok(())
            } else {
                restart(partial).await?;
                Err(DownloadError::BadRange(format!(
                    "Content-Range {range:?}, expected {expected:?}"
                )))
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            restart(partial).await?;
            Err(DownloadError::BadRange("416".into()))
        }
        s if s.is_success() => {
            restart(partial).await?;
            Err(DownloadError::BadRange(s.to_string()))
        }
        s => Err(DownloadError::Status(s)),
    }
}

/// Empties the partial image and its digests.
async fn restart(partial: &mut Partial) -> Result<(), DownloadError> {
    partial.file.flush().await?;
    partial.file.get_mut().set_len(0).await?;
    partial.file.seek(SeekFrom::Start(0)).await?;
    partial.md5 = Md5::new();
    partial.sha256 = Sha256::new();
    partial.done = 0;
    partial.saved_bytes = 0;
    Ok(())
}

/// Sleeps so that `bytes` since `started` stay under `rate` bytes per second.
async fn throttle(rate: u64, bytes: u64, started: Instant) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

/// Compares what was received with what was offered.
fn verify(offer: &Offer, fetched: Fetched) -> Result<Fetched, DownloadError> {
    if fetched.size != offer.size {
        return Err(DownloadError::Size {
            expected: offer.size,
            got: fetched.size,
        });
    }
    for (which, expected, got) in [
        ("MD5", &offer.md5, &fetched.md5),
        ("SHA-256", &offer.sha256, &fetched.sha256),
    ] {
        if !expected.is_empty() && !expected.eq_ignore_ascii_case(got) {
            return Err(DownloadError::Digest {
                which,
                expected: expected.clone(),
                got: got.clone(),
            });
        }
    }
    if offer.md5.is_empty() && offer.sha256.is_empty() {
        tracing::warn!(version = %offer.version, "the offer carries no digest; only the size was checked");
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_match_by_firmware_not_url() {
        let offer = Offer {
            module: "default".into(),
            version: "2".into(),
            url: "http://a".into(),
            size: 10,
            md5: "AB".into(),
            sha256: String::new(),
        };
        let cp = Checkpoint {
            version: "2".into(),
            size: 10,
            md5: "ab".into(),
            sha256: String::new(),
            url: "http://old".into(),
            bytes_done: 3,
            partial_sha256: String::new(),
        };
        assert!(cp.is_for(&offer));
        assert!(!cp.is_for(&Offer {
            version: "3".into(),
            ..offer.clone()
        }));
        assert!(!cp.is_for(&Offer { size: 11, ..offer }));
    }
}
