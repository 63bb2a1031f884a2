//! Copies one direction of a proxied connection while applying the faults:
//! latency per chunk, bandwidth pacing, and the exact-byte cut.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::Shared;

/// Largest chunk read at once when no bandwidth cap applies.
const MAX_CHUNK: usize = 16 * 1024;
/// Poll interval while `bandwidth == Some(0)` stalls a connection.
const STALL_POLL: Duration = Duration::from_millis(20);
/// Idle time after which pacing forgets its history, so a quiet connection
/// cannot save up credit and then burst far above the cap.
const MAX_BURST: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Server → client.
    Down,
    /// Client → server.
    Up,
}

/// How one direction ended without an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The reader hit EOF; the writer was shut down to pass it on.
    Eof,
    /// A fault cut the connection.
    Cut,
}

/// How a whole connection ended, for logs.
#[derive(Debug)]
pub(crate) enum Outcome {
    Finished,
    Cut,
    Failed(std::io::Error),
}

/// Small chunks under a cap keep pacing smooth (about 20 writes a second).
fn chunk_size(bandwidth: Option<u64>) -> usize {
    match bandwidth {
        Some(rate) => usize::try_from(rate / 20)
            .unwrap_or(MAX_CHUNK)
            .clamp(512, MAX_CHUNK),
        None => MAX_CHUNK,
    }
}

/// Paces writes so the running average stays at or below the current cap.
struct Pacer {
    rate: Option<u64>,
    start: Instant,
    sent: u64,
}

impl Pacer {
    fn new() -> Self {
        Pacer {
            rate: None,
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Sleeps until `n` more bytes fit under the cap read from `shared`.
    async fn wait(&mut self, n: u64, shared: &Shared) {
        loop {
            let rate = shared.faults().bandwidth;
            if rate != self.rate {
                self.rate = rate;
                self.restart();
            }
            match rate {
                None => return,
                Some(0) => tokio::time::sleep(STALL_POLL).await,
                Some(r) => {
                    if Instant::now() > self.due(self.sent, r) + MAX_BURST {
                        self.restart();
                    }
                    tokio::time::sleep_until(self.due(self.sent + n, r)).await;
                    self.sent += n;
                    return;
                }
            }
        }
    }

    fn restart(&mut self) {
        self.start = Instant::now();
        self.sent = 0;
    }

    /// When `bytes` may have been sent at `rate` bytes/second.
    fn due(&self, bytes: u64, rate: u64) -> Instant {
        let secs = bytes as f64 / rate as f64;
        // Absurd values only come from absurd configs: wait "forever".
        let wait = Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400));
        self.start + wait
    }
}

/// Copies `rd` to `wr` until EOF, an error, or the cut `limit` (server→client
/// bytes) is reached and `max_cuts` still allows a cut.
pub(crate) async fn pump<R, W>(
    mut rd: R,
    mut wr: W,
    shared: &Shared,
    dir: Dir,
    mut limit: Option<u64>,
) -> std::io::Result<End>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let counter = match dir {
        Dir::Down => &shared.bytes_down,
        Dir::Up => &shared.bytes_up,
    };
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut pacer = Pacer::new();
    let mut forwarded: u64 = 0;
    loop {
        if let Some(l) = limit
            && forwarded >= l
        {
            if shared.try_cut() {
                tracing::debug!(?dir, forwarded, "fault proxy cut");
                return Ok(End::Cut);
            }
            limit = None; // max_cuts reached: this connection passes through.
        }
        let mut want = chunk_size(shared.faults().bandwidth);
        if let Some(l) = limit {
            // Never read past the cut point, so exactly `l` bytes go out.
            want = want.min(usize::try_from(l - forwarded).unwrap_or(want));
        }
        // `want` is clamped to the buffer; `read` never returns more than asked.
        let n = rd.read(&mut buf[..want.min(MAX_CHUNK)]).await?;
        if n == 0 {
            wr.shutdown().await?;
            return Ok(End::Eof);
        }
        let latency = shared.faults().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        pacer.wait(n as u64, shared).await;
        wr.write_all(&buf[..n]).await?;
        forwarded += n as u64;
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// Drives both directions: a clean EOF in one lets the other finish (TCP
/// half-close), while a cut or an error ends the whole connection at once.
pub(crate) async fn run_both<D, U>(down: D, up: U) -> Outcome
where
    D: Future<Output = std::io::Result<End>>,
    U: Future<Output = std::io::Result<End>>,
{
    let mut down = std::pin::pin!(down);
    let mut up = std::pin::pin!(up);
    let (mut down_done, mut up_done) = (false, false);
    while !(down_done && up_done) {
        let result = tokio::select! {
            r = &mut down, if !down_done => { down_done = true; r }
            r = &mut up, if !up_done => { up_done = true; r }
        };
        match result {
            Ok(End::Eof) => {}
            Ok(End::Cut) => return Outcome::Cut,
            Err(e) => return Outcome::Failed(e),
        }
    }
    Outcome::Finished
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_tracks_rate() {
        assert_eq!(chunk_size(None), MAX_CHUNK);
        assert_eq!(chunk_size(Some(0)), 512);
        assert_eq!(chunk_size(Some(200_000)), 10_000);
        assert_eq!(chunk_size(Some(u64::MAX)), MAX_CHUNK);
    }
}
