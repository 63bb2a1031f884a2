//! Firmware downloads over HTTP, and the HTTP/1.1 server the whole Otter web app runs on.
//!
//! Devices fetch firmware from a signed, expiring URL (see [`UrlSigner`]); the response is built
//! for the minimal HTTP clients of device SDKs (PROTOCOL.md §4): exact `Content-Length`, honoured
//! `Range`, title-case header names, never chunked or compressed.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

mod handler;
pub mod range;
mod server;
mod tls;
mod token;

pub use server::{OverTls, serve, serve_all};
pub use tls::{HttpsListener, TlsError};
pub use token::{DL_PREFIX, TokenError, UrlSigner};

/// What the download routes need.
#[derive(Clone, Debug)]
pub struct DownloadState {
    pub blobs: otter_blobs::Blobs,
    pub signer: Arc<UrlSigner>,
}

/// Routes GET and HEAD on the paths [`UrlSigner::url`] produces; merge it into the app router.
/// Do not put a compression layer over these routes (devices cannot inflate).
pub fn router(state: DownloadState) -> Router {
    Router::new()
        .route(
            "/dl/{sha256}/{product}/{device}/{expires}/{sig}",
            get(handler::download).head(handler::download),
        )
        .with_state(state)
}
