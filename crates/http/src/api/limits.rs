//! Request size limits of the API. JSON bodies are capped by axum's default extractor limit
//! (2 MiB); firmware uploads stream to the blob store, so their cap is enforced here: up front
//! from `Content-Length`, and while streaming for chunked uploads that never declared a length.

use super::ApiError;
use axum::body::Body;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tells whether a failed upload failed because it went over the limit.
pub struct UploadLimit {
    exceeded: Arc<AtomicBool>,
    max: u64,
}

impl UploadLimit {
    /// The error to return for a failed ingest: 413 if the limit was the cause.
    pub fn error(&self, cause: otter_blobs::BlobError) -> ApiError {
        if self.exceeded.load(Ordering::Relaxed) {
            too_large(self.max)
        } else if cause.is_storage() {
            // The server's failure: logged in full, answered without its paths.
            tracing::error!(error = %cause, "storing an upload failed");
            ApiError::Storage
        } else {
            tracing::warn!(error = %cause, "upload failed");
            ApiError::BadRequest(format!("upload failed: {cause}"))
        }
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "firmware is larger than the server's limit of {max} bytes (--max-firmware-size)"
    ))
}

/// A firmware upload's bytes, failing once more than `max` arrive.
pub fn firmware_upload(
    body: Body,
    max: u64,
) -> Result<(impl Stream<Item = std::io::Result<Bytes>>, UploadLimit), ApiError> {
    if axum::body::HttpBody::size_hint(&body).lower() > max {
        return Err(too_large(max));
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&exceeded);
    let mut seen = 0u64;
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            seen = seen.saturating_add(chunk.len() as u64);
            let over = seen > max;
            flag.store(over, Ordering::Relaxed);
            std::future::ready(if over {
                Err(std::io::Error::other("upload over the size limit"))
            } else {
                Ok(chunk)
            })
        });
    Ok((stream, UploadLimit { exceeded, max }))
}
