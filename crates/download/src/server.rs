//! The HTTP/1.1 server for the whole Otter web app (API, console and downloads).
//!
//! Hand-rolled on hyper rather than `axum::serve` because device clients need control over the
//! wire: title-case header names (Tencent's C SDK matches `Content-Length` case-sensitively), plus
//! keep-alive and graceful shutdown. It never routes on `Host` (Tencent's Python SDK sends a
//! malformed one); the peer address is available to handlers as `ConnectInfo<SocketAddr>`.
//! The same app may be served over plaintext HTTP, HTTPS, or both at once.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::Layer;

use crate::tls::HttpsListener;

/// Marks requests that arrived on the HTTPS listener (a request extension): the console sets
/// its session cookie `Secure` for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverTls;

/// How long a client may take to send a request head (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for responses in flight (slow firmware downloads) before dropping
/// them; devices resume with `Range` afterwards.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets requests in
/// flight finish (for up to [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_all(Some(listener), None, app, shutdown).await
}

/// [`serve`] on a plaintext listener, an HTTPS listener, or both (none at all just waits for
/// `shutdown`).
pub async fn serve_all(
    plain: Option<TcpListener>,
    https: Option<HttpsListener>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(l) = &plain {
        tracing::info!(local = %l.local_addr()?, "HTTP server listening");
    }
    if let Some(l) = &https {
        tracing::info!(local = %l.local_addr()?, "HTTPS server listening");
    }
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .title_case_headers(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept(plain.as_ref()) => match accepted {
                Ok((stream, peer)) => spawn_connection(&builder, &graceful, &app, stream, peer),
                Err(err) => accept_failed(err).await,
            },
            accepted = accept(https.as_ref().map(|h| &h.listener)) => match accepted {
                Ok((stream, peer)) => {
                    let acceptor = https.as_ref().map(|h| h.acceptor.clone());
                    if let Some(acceptor) = acceptor {
                        spawn_tls_connection(&builder, &graceful, &app, acceptor, stream, peer);
                    }
                }
                Err(err) => accept_failed(err).await,
            },
            () = &mut shutdown => break,
        }
    }
    drop(plain);
    drop(https);
    tracing::info!(open = graceful.count(), "HTTP server shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP shutdown grace period over; dropping open connections");
    }
    Ok(())
}

/// Accepts on `listener`, or never completes when there is none.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Per-connection failures (reset before accept, EMFILE) must not stop the server.
async fn accept_failed(err: std::io::Error) {
    tracing::warn!(error = %err, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Completes the TLS handshake in the connection's own task (bounded by the header timeout, so
/// a silent client cannot hold it), then serves it like a plaintext one.
fn spawn_tls_connection(
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    app: &Router,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %err, "set_nodelay failed");
    }
    let builder = builder.clone();
    let watcher = graceful.watcher();
    let service = TowerToHyperService::new(
        Extension(ConnectInfo(peer)).layer(Extension(OverTls).layer(app.clone())),
    );
    tokio::spawn(async move {
        let tls = match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        if let Err(err) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %err, "HTTPS connection ended with an error");
        }
    });
}

fn spawn_connection(
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    app: &Router,
    stream: TcpStream,
    peer: SocketAddr,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %err, "set_nodelay failed");
    }
    let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
        }
    });
}
