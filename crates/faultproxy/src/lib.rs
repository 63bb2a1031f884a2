//! A small userspace fault-injecting TCP proxy for Otter's tests.
//!
//! CI machines have no kernel `netem`, yet the download and agent tests must
//! prove that resumable downloads survive slow links and dropped connections
//! without re-fetching much. [`Proxy`] sits between a client and an upstream
//! server on `127.0.0.1` and can add latency, cap bandwidth and cut
//! connections after an exact (or seeded-random) number of server→client
//! bytes. [`Stats::bytes_down`] counts exactly what reached the client, so a
//! test can assert e.g. "total bytes fetched ≤ 1.1 × image size".
//!
//! Fault semantics:
//! - `latency` and `bandwidth` are re-read for every chunk, so
//!   [`Proxy::set_faults`] also affects ongoing connections.
//! - The cut point (`cut_after` / `cut_random`) is fixed when a connection
//!   is accepted; when both are set the smaller one wins. A cut forwards
//!   exactly the allowed bytes, then drops both sockets (the client sees EOF
//!   right after the last allowed byte).
//! - `max_cuts` bounds the total number of cuts over the proxy's lifetime
//!   (counted in [`Stats::cuts`]); once reached, connections pass through.

mod pump;
mod rng;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The faults applied by a [`Proxy`]. `Faults::default()` is a clean
/// pass-through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Delay before forwarding each chunk read, in either direction.
    pub latency: Duration,
    /// Bytes/second cap per connection and per direction. `Some(0)` stalls
    /// the connection until the faults change.
    pub bandwidth: Option<u64>,
    /// Cut every connection after forwarding this many server→client bytes.
    pub cut_after: Option<u64>,
    /// `(seed, min, max)`: cut each connection after a random number of
    /// server→client bytes in `[min, max)` (just `min` when `max <= min`).
    /// Connection number `k` (0-based, since the proxy started) always gets
    /// the same cut point for the same seed.
    pub cut_random: Option<(u64, u64, u64)>,
    /// Stop cutting after this many cuts in total; then pass through.
    pub max_cuts: Option<u32>,
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Accepted client connections.
    pub connections: u64,
    /// Server→client bytes actually forwarded to clients.
    pub bytes_down: u64,
    /// Client→server bytes actually forwarded upstream.
    pub bytes_up: u64,
    /// Connections cut by a fault.
    pub cuts: u64,
}

/// State shared by the accept loop, every connection and the [`Proxy`] handle.
#[derive(Debug, Default)]
struct Shared {
    faults: Mutex<Faults>,
    connections: AtomicU64,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
    cuts: AtomicU64,
}

impl Shared {
    fn faults(&self) -> Faults {
        // A poisoned lock still holds a valid plain-data value.
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves one cut if `max_cuts` allows it; false means "pass through".
    fn try_cut(&self) -> bool {
        let max = self.faults().max_cuts.map(u64::from);
        self.cuts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match max {
                Some(m) if n >= m => None,
                _ => Some(n + 1),
            })
            .is_ok()
    }

    /// The server→client byte budget for connection number `index`.
    fn cut_limit(&self, index: u64) -> Option<u64> {
        let f = self.faults();
        let random = f.cut_random.map(|(seed, min, max)| {
            if max <= min {
                min
            } else {
                min + rng::for_index(seed, index) % (max - min)
            }
        });
        match (f.cut_after, random) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A running fault-injecting proxy listening on `127.0.0.1`.
///
/// Dropping it stops the proxy too (and closes every proxied connection);
/// [`Proxy::stop`] additionally waits for that to finish.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr, faults: Faults) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            ..Shared::default()
        });
        let task = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        tracing::debug!(%addr, %upstream, ?faults, "fault proxy started");
        Ok(Proxy {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the faults. Latency and bandwidth apply to ongoing
    /// connections at their next chunk; cut points to new connections only.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            connections: s.connections.load(Ordering::SeqCst),
            bytes_down: s.bytes_down.load(Ordering::SeqCst),
            bytes_up: s.bytes_up.load(Ordering::SeqCst),
            cuts: s.cuts.load(Ordering::SeqCst),
        }
    }

    /// Stops listening and closes every proxied connection.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The only possible error is the cancellation we just asked for.
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Accepts clients until aborted; aborting drops the `JoinSet`, which aborts
/// every connection task and so closes their sockets.
async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let index = shared.connections.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(%peer, index, "fault proxy accepted");
                    conns.spawn(serve(client, upstream, shared.clone(), index));
                }
                Err(e) => {
                    // Usually EMFILE or similar; back off instead of spinning.
                    tracing::warn!(error = %e, "fault proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Proxies one client connection until both directions end or a cut happens.
async fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>, index: u64) {
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "fault proxy cannot reach upstream");
            return;
        }
    };
    // Small chunks must not be held back by Nagle, or latency tests lie.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let limit = shared.cut_limit(index);
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let down = pump::pump(server_rd, client_wr, &shared, pump::Dir::Down, limit);
    let up = pump::pump(client_rd, server_wr, &shared, pump::Dir::Up, None);
    match pump::run_both(down, up).await {
        pump::Outcome::Finished => tracing::debug!(index, "fault proxy connection finished"),
        pump::Outcome::Cut => tracing::debug!(index, "fault proxy connection cut"),
        pump::Outcome::Failed(e) => {
            tracing::debug!(index, error = %e, "fault proxy connection failed")
        }
    }
    // Returning drops all four halves: an abrupt close on both sides.
}
