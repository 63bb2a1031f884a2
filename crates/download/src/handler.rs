//! The firmware download endpoint: checks the signed URL, then streams the blob with exact
//! framing (`Content-Length`, `206`/`Content-Range`), since device HTTP clients are minimal and
//! unforgiving (no chunked decoding, no inflate, resume by appending).

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body::{Frame, SizeHint};
use otter_blobs::BlobError;

use crate::DownloadState;
use crate::range::{self, ByteRange};

/// Longest piece of an untrusted path segment copied into a log line.
const MAX_LOGGED: usize = 80;

type Segments = (String, String, String, String, String);

/// GET/HEAD `/dl/{sha256}/{product}/{device}/{expires}/{sig}`.
pub(crate) async fn download(
    State(state): State<DownloadState>,
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    path: Result<Path<Segments>, PathRejection>,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    let Ok(Path((sha256, product, device, expires, sig))) = path else {
        return refuse(StatusCode::BAD_REQUEST, peer, "malformed path", "", "", "");
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            peer,
            "malformed expiry",
            &sha256,
            &product,
            &device,
        );
    };
    if let Err(err) = state
        .signer
        .verify(&sha256, &product, &device, expires, &sig, now_unix())
    {
        return refuse(
            StatusCode::FORBIDDEN,
            peer,
            &err.to_string(),
            &sha256,
            &product,
            &device,
        );
    }
    // One lookup serves both the size and the read (local blobs: a cached open file).
    let blob = match state.blobs.blob(&sha256).await {
        Ok(Some(blob)) => blob,
        Ok(None) | Err(BlobError::InvalidSha256(_)) => {
            return refuse(
                StatusCode::NOT_FOUND,
                peer,
                "unknown blob",
                &sha256,
                &product,
                &device,
            );
        }
        Err(err) => return store_failure(&err, &sha256),
    };
    let size = blob.size();
    let etag = format!("\"{sha256}\"");
    let (status, bytes) = match requested_range(&headers, &etag, size) {
        ByteRange::Full => (StatusCode::OK, 0..size),
        ByteRange::Partial(bytes) => (StatusCode::PARTIAL_CONTENT, bytes),
        ByteRange::Unsatisfiable => {
            tracing::info!(
                ?peer,
                sha256,
                product,
                device,
                size,
                "download refused: range not satisfiable"
            );
            return unsatisfiable(size, &etag);
        }
    };
    let len = bytes.end - bytes.start;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    insert_etag(h, &etag);
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {}-{}/{size}", bytes.start, bytes.end - 1);
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, value);
        }
    }
    if method == Method::HEAD || len == 0 {
        return response;
    }
    match blob.read(bytes.clone()).await {
        Ok(stream) => {
            tracing::debug!(
                ?peer,
                sha256,
                device,
                start = bytes.start,
                end = bytes.end,
                "download"
            );
            *response.body_mut() = Body::new(SizedBody {
                stream,
                remaining: len,
            });
            response
        }
        // Deleted between the size check and the read.
        Err(BlobError::NotFound(_)) => refuse(
            StatusCode::NOT_FOUND,
            peer,
            "unknown blob",
            &sha256,
            &product,
            &device,
        ),
        Err(err) => store_failure(&err, &sha256),
    }
}

/// The range to serve: `Range` applies unless an `If-Range` names another version.
fn requested_range(headers: &HeaderMap, etag: &str, size: u64) -> ByteRange {
    let Some(value) = headers.get(header::RANGE) else {
        return ByteRange::Full;
    };
    if let Some(validator) = headers.get(header::IF_RANGE) {
        // Strong comparison (RFC 9110 §13.1.5); a date never matches since we send no
        // Last-Modified. A mismatch means "send the whole new file".
        if validator.as_bytes().trim_ascii() != etag.as_bytes() {
            return ByteRange::Full;
        }
    }
    match value.to_str() {
        Ok(value) => range::parse(value, size),
        Err(_) => ByteRange::Full,
    }
}

fn unsatisfiable(size: u64, etag: &str) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    insert_etag(h, etag);
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        h.insert(header::CONTENT_RANGE, value);
    }
    response
}

fn insert_etag(headers: &mut HeaderMap, etag: &str) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
}

/// Logs a refused request and answers it with a short, fixed-length body.
fn refuse(
    status: StatusCode,
    peer: Option<SocketAddr>,
    reason: &str,
    sha256: &str,
    product: &str,
    device: &str,
) -> Response {
    tracing::warn!(
        ?peer,
        status = status.as_u16(),
        sha256 = clip(sha256),
        product = clip(product),
        device = clip(device),
        "download refused: {reason}"
    );
    let body = status.canonical_reason().unwrap_or("refused");
    (status, format!("{body}\n")).into_response()
}

fn store_failure(err: &BlobError, sha256: &str) -> Response {
    tracing::error!(sha256 = clip(sha256), error = %err, "blob store failed during download");
    (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n").into_response()
}

/// At most [`MAX_LOGGED`] characters of an untrusted string.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(MAX_LOGGED) {
        Some((i, _)) => s.get(..i).unwrap_or_default(),
        None => s,
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A body of exactly `remaining` bytes streamed from the blob store. Its exact size hint lets
/// hyper frame the response with `Content-Length`, never chunked; a store that yields too few
/// bytes fails the body (hyper then drops the connection) instead of hanging the device.
struct SizedBody {
    stream: BoxStream<'static, Result<Bytes, BlobError>>,
    remaining: u64,
}

impl http_body::Body for SizedBody {
    type Data = Bytes;
    type Error = BlobError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BlobError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.stream.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(mut chunk))) => {
                // Never send more than announced, whatever the store returns.
                let take = usize::try_from(self.remaining).unwrap_or(usize::MAX);
                chunk.truncate(take);
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(err))) => {
                tracing::warn!(error = %err, "blob read failed mid-download");
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                let short = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("blob ended {} bytes early", self.remaining),
                );
                self.remaining = 0;
                tracing::warn!(error = %short, "blob shorter than announced");
                Poll::Ready(Some(Err(BlobError::Io(short))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_is_char_safe() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(200);
        assert_eq!(clip(&long).chars().count(), MAX_LOGGED);
    }

    #[test]
    fn if_range_rules() {
        let etag = "\"abc\"";
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=5-"));
        assert_eq!(requested_range(&h, etag, 10), ByteRange::Partial(5..10));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"abc\""));
        assert_eq!(requested_range(&h, etag, 10), ByteRange::Partial(5..10));
        for other in [
            "\"abd\"",
            "W/\"abc\"",
            "abc",
            "Tue, 15 Nov 1994 08:12:31 GMT",
        ] {
            h.insert(header::IF_RANGE, HeaderValue::from_static(other));
            assert_eq!(requested_range(&h, etag, 10), ByteRange::Full, "{other}");
        }
    }
}
