//! Fetches a firmware image over HTTP into a file, streaming (constant memory) and hashing on
//! the way, then checks it against the offer. Kept apart from the upgrade flow so resumable
//! downloads (`Range`) can replace [`fetch`] without touching the rest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::Md5;
use otter_protocol::{FailureKind, Offer};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// How long connecting to the download server may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may stay silent in the middle of a download.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(60);

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
    #[error("HTTP error: {0}")]
    Http(reqwest::Error),
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
            DownloadError::Timeout(_) => FailureKind::DownloadTimeout,
            DownloadError::Size { .. } | DownloadError::Digest { .. } => {
                FailureKind::DigestMismatch
            }
            DownloadError::Status(_) | DownloadError::Http(_) | DownloadError::Io(_) => {
                FailureKind::DownloadFailed
            }
        }
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

/// Downloads `offer.url` to `dest` and verifies size, MD5 and (when offered) SHA-256.
/// `progress(received, total)` is called after every chunk. On any failure `dest` is removed.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    offer: &Offer,
    dest: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<Fetched, DownloadError> {
    let result = fetch_unchecked(http, offer, dest, progress)
        .await
        .and_then(|fetched| verify(offer, fetched));
    if result.is_err()
        && let Err(err) = tokio::fs::remove_file(dest).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dest.display(), error = %err, "cannot remove a failed download");
    }
    result
}

/// Streams the body to `dest`, hashing it; stops as soon as it grows past the offered size.
async fn fetch_unchecked(
    http: &reqwest::Client,
    offer: &Offer,
    dest: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Fetched, DownloadError> {
    let mut response = http.get(&offer.url).send().await?;
    let status = response.status();
    if !status.is_success() {
        return Err(DownloadError::Status(status));
    }
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(dest).await?);
    let (mut md5, mut sha256, mut received) = (Md5::new(), Sha256::new(), 0u64);
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
        if received > offer.size {
            return Err(DownloadError::Size {
                expected: offer.size,
                got: received,
            });
        }
        md5.update(&chunk);
        sha256.update(&chunk);
        file.write_all(&chunk).await?;
        progress(received, offer.size);
    }
    file.flush().await?;
    file.get_ref().sync_all().await?;
    Ok(Fetched {
        path: dest.to_owned(),
        size: received,
        md5: hex::encode(md5.finalize()),
        sha256: hex::encode(sha256.finalize()),
    })
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
