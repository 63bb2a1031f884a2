//! The HTTP/1.1 server for the whole Otter web app (API, console and downloads).
//!
//! Hand-rolled on hyper rather than `axum::serve` because device clients need control over the
//! wire: title-case header names (Tencent's C SDK matches `Content-Length` case-sensitively), plus
//! keep-alive and graceful shutdown. It never routes on `Host` (Tencent's Python SDK sends a
//! malformed one); the peer address is available to handlers as `ConnectInfo<SocketAddr>`.

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
use tower::Layer;

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
    let local = listener.local_addr()?;
    tracing::info!(%local, "HTTP server listening");
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
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_connection(&builder, &graceful, &app, stream, peer),
                Err(err) => {
                    // Per-connection failures (reset before accept, EMFILE) must not stop the server.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(open = graceful.count(), "HTTP server shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP shutdown grace period over; dropping open connections");
    }
    Ok(())
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
