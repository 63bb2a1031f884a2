//! otter-psk: a TLS-PSK terminator in front of Otter's MQTT broker.
//!
//! Tencent's C SDK, on port 8883, sends no MQTT password: it proves the device secret with
//! TLS-PSK (identity = MQTT client id, key = base64-decoded secret, PSK-AES-CBC-SHA suites,
//! TLS 1.2). rustls has no PSK, so this crate terminates those connections with OpenSSL and
//! hands them to the broker as ordinary plaintext MQTT:
//!
//! 1. the PSK callback asks the caller's [`PskLookup`] for the identity's key and for the
//!    genuine login (user name and signed password) that device would send in key mode;
//! 2. the first packet must be a CONNECT (MQTT 3.1.1) whose client id equals the PSK identity,
//!    else it is answered with CONNACK 5 and the connection closed;
//! 3. the CONNECT's user name and password are replaced by the looked-up login, and the
//!    connection is piped to the broker's loopback listener, preceded by a PROXY protocol v1
//!    header carrying the device's real address. The broker's gate then verifies the login like
//!    any other — nothing PSK-specific lives in the broker.
//!
//! The PSK callback is synchronous but the lookup is async (a database query). Each handshake
//! therefore runs on a blocking-pool thread, where the callback may block on the lookup with
//! the runtime's `Handle::block_on`; the number of simultaneous handshakes is capped and each
//! is time-limited, so a flood of slow handshakes cannot exhaust the blocking pool. After the
//! handshake the stream goes back to ordinary async tasks.

pub mod mqtt;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContext, SslMethod, SslOptions, SslRef, SslVersion};
use tokio::io::{AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;
use tracing::{debug, info, warn};

/// Cipher suites of Tencent's C SDK (mbedTLS PSK mode).
pub const PSK_CIPHERS: &str = "PSK-AES128-CBC-SHA:PSK-AES256-CBC-SHA:PSK-AES128-CBC-SHA256";

/// What the caller knows about a PSK identity.
#[derive(Clone, PartialEq, Eq)]
pub struct PskLogin {
    /// The pre-shared key (for Tencent: the base64-decoded device secret).
    pub key: Vec<u8>,
    /// User name to put in the CONNECT forwarded to the broker.
    pub username: String,
    /// Password to put in the CONNECT forwarded to the broker.
    pub password: String,
}

impl std::fmt::Debug for PskLogin {
    /// Never prints the key or the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the PSK callback found, kept on the connection for after the handshake.
#[derive(Clone)]
struct Found {
    identity: String,
    login: PskLogin,
}

/// Caller-supplied key lookup.
pub trait PskLookup: Send + Sync + 'static {
    /// The key and broker login of `identity`; `None` fails the handshake.
    fn login(&self, identity: &str) -> impl Future<Output = Option<PskLogin>> + Send;
}

/// How to run the terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PskConfig {
    /// Address devices connect to (8883 by convention; port 0 picks a free port).
    pub listen: SocketAddr,
    /// The broker listener connections are piped to; it must expect a PROXY protocol header.
    pub upstream: SocketAddr,
    /// Largest CONNECT accepted, in bytes.
    pub max_packet_size: usize,
    /// Time allowed for the TLS handshake and for the CONNECT to arrive.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; more wait for a slot.
    pub max_handshakes: usize,
}

impl PskConfig {
    /// Defaults: 256 KiB packets, 10 s handshakes, 64 at once.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        Self {
            listen,
            upstream,
            max_packet_size: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 64,
        }
    }
}

/// Errors from starting the terminator.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("OpenSSL set-up failed: {0}")]
    Ssl(#[from] ErrorStack),
}

/// Why one connection was dropped (logged, never returned to callers).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("no login was looked up during the handshake")]
    NoLogin,
    #[error(transparent)]
    Mqtt(#[from] mqtt::ConnectError),
    #[error("client id {client_id:?} is not the PSK identity {identity:?}")]
    WrongClientId { client_id: String, identity: String },
    #[error("broker: {0}")]
    Upstream(std::io::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A running terminator; dropping it (or [`PskTerminator::shutdown`]) stops accepting.
/// Connections already piped to the broker stay up until the broker ends them.
pub struct PskTerminator {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for PskTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared<L> {
    config: PskConfig,
    context: SslContext,
    login_index: Index<Ssl, Found>,
    handshakes: Semaphore,
    _lookup: std::marker::PhantomData<L>,
}

impl PskTerminator {
    /// Binds `config.listen` and starts accepting TLS-PSK connections.
    pub async fn start<L: PskLookup>(config: PskConfig, lookup: Arc<L>) -> Result<Self, PskError> {
        let login_index = Ssl::new_ex_index::<Found>()?;
        let context = ssl_context(lookup, login_index, Handle::current())?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| PskError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| PskError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared::<L> {
            handshakes: Semaphore::new(config.max_handshakes.max(1)),
            config,
            context,
            login_index,
            _lookup: std::marker::PhantomData,
        });
        info!(%local_addr, "mqtt over tls-psk listening");
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(Self { local_addr, task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting new connections.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

/// The OpenSSL server context: PSK-only, TLS 1.2, no renegotiation, and a PSK callback that
/// blocks on `lookup` (it only ever runs on a blocking-pool thread, see [`handshake`]).
fn ssl_context<L: PskLookup>(
    lookup: Arc<L>,
    login_index: Index<Ssl, Found>,
    runtime: Handle,
) -> Result<SslContext, ErrorStack> {
    let mut builder = SslContext::builder(SslMethod::tls_server())?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    builder.set_max_proto_version(Some(SslVersion::TLS1_2))?;
    builder.set_cipher_list(PSK_CIPHERS)?;
    builder.set_options(SslOptions::NO_RENEGOTIATION);
    builder.set_psk_server_callback(move |ssl, identity, key_out| {
        Ok(psk_callback(
            &*lookup,
            &runtime,
            login_index,
            ssl,
            identity,
            key_out,
        ))
    });
    Ok(builder.build())
}

/// Looks the identity up and writes its key; 0 (an unknown identity) fails the handshake.
/// Must not panic: it runs inside OpenSSL.
fn psk_callback<L: PskLookup>(
    lookup: &L,
    runtime: &Handle,
    login_index: Index<Ssl, Found>,
    ssl: &mut SslRef,
    identity: Option<&[u8]>,
    key_out: &mut [u8],
) -> usize {
    let Some(identity) = identity.and_then(|i| std::str::from_utf8(i).ok()) else {
        debug!("tls-psk client sent no usable identity");
        return 0;
    };
    let Some(login) = runtime.block_on(lookup.login(identity)) else {
        info!(identity, "tls-psk identity unknown");
        return 0;
    };
    let len = login.key.len();
    let Some(out) = key_out.get_mut(..len) else {
        warn!(identity, len, "tls-psk key too long");
        return 0;
    };
    if len == 0 {
        return 0;
    }
    out.copy_from_slice(&login.key);
    let identity = identity.to_owned();
    ssl.set_ex_data(login_index, Found { identity, login });
    len
}

async fn accept_loop<L: PskLookup>(listener: TcpListener, shared: Arc<Shared<L>>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, peer, shared).await {
                        info!(%peer, error = %e, "tls-psk connection dropped");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "tls-psk accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One device connection: handshake, CONNECT check and rewrite, then a byte pipe.
async fn serve<L: PskLookup>(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared<L>>,
) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr()?;
    let mut tls = handshake(stream, &shared).await?;
    let Found { identity, login } = tls
        .ssl()
        .ex_data(shared.login_index)
        .cloned()
        .ok_or(ConnError::NoLogin)?;

    let read = mqtt::read_connect(&mut tls, shared.config.max_packet_size);
    let (mut connect, rest) = tokio::time::timeout(shared.config.handshake_timeout, read)
        .await
        .map_err(|_| ConnError::HandshakeTimeout)??;
    if connect.client_id != identity {
        let _ = tls.write_all(&mqtt::CONNACK_NOT_AUTHORIZED).await;
        let _ = tls.shutdown().await;
        return Err(ConnError::WrongClientId {
            client_id: connect.client_id,
            identity,
        });
    }
    connect.login = Some(rumqttc::mqttbytes::v4::Login::new(
        login.username,
        login.password,
    ));

    let mut upstream = TcpStream::connect(shared.config.upstream)
        .await
        .map_err(ConnError::Upstream)?;
    let _ = upstream.set_nodelay(true);
    let mut first = proxy_header(peer, local).into_bytes();
    first.extend_from_slice(&mqtt::encode_connect(&connect)?);
    first.extend_from_slice(&rest);
    upstream
        .write_all(&first)
        .await
        .map_err(ConnError::Upstream)?;
    debug!(%peer, identity, "tls-psk device piped to the broker");
    // Either side closing ends the pipe; errors here are ordinary disconnects.
    let _ = copy_bidirectional(&mut tls, &mut upstream).await;
    Ok(())
}

/// Runs the TLS handshake on a blocking-pool thread, so that the synchronous PSK callback
/// may block on the async lookup. Bounded by `max_handshakes` and `handshake_timeout`.
async fn handshake<L: PskLookup>(
    stream: TcpStream,
    shared: &Shared<L>,
) -> Result<SslStream<TcpStream>, ConnError> {
    let _permit = shared
        .handshakes
        .acquire()
        .await
        .map_err(|_| ConnError::Tls("terminator closing".into()))?;
    let ssl = Ssl::new(&shared.context).map_err(|e| ConnError::Tls(e.to_string()))?;
    let mut tls = SslStream::new(ssl, stream).map_err(|e| ConnError::Tls(e.to_string()))?;
    let timeout = shared.config.handshake_timeout;
    let runtime = Handle::current();
    let (tls, result) = tokio::task::spawn_blocking(move || {
        // The socket and the timer stay registered with the runtime; this thread only polls.
        let _context = runtime.enter();
        let accept = tokio::time::timeout(timeout, Pin::new(&mut tls).accept());
        let result = futures::executor::block_on(accept);
        (tls, result)
    })
    .await
    .map_err(|e| ConnError::Tls(format!("handshake task: {e}")))?;
    match result {
        Ok(Ok(())) => Ok(tls),
        Ok(Err(e)) => Err(ConnError::Tls(e.to_string())),
        Err(_) => Err(ConnError::HandshakeTimeout),
    }
}

/// A PROXY protocol v1 line telling the broker who the device really is.
fn proxy_header(peer: SocketAddr, local: SocketAddr) -> String {
    let family = match (peer, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => "TCP4",
        (SocketAddr::V6(_), SocketAddr::V6(_)) => "TCP6",
        _ => return "PROXY UNKNOWN\r\n".to_owned(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        peer.ip(),
        local.ip(),
        peer.port(),
        local.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_header_v1() {
        let peer: SocketAddr = "10.0.0.7:40000".parse().unwrap();
        let local: SocketAddr = "10.0.0.1:8883".parse().unwrap();
        assert_eq!(
            proxy_header(peer, local),
            "PROXY TCP4 10.0.0.7 10.0.0.1 40000 8883\r\n"
        );
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(proxy_header(peer, v6), "PROXY UNKNOWN\r\n");
    }
}
