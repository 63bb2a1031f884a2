//! End-to-end tests of the fault proxy against real local TCP servers: an
//! echo server and a "bulk" server that sends N patterned bytes on request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use otter_faultproxy::{Faults, Proxy, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(20);

/// Deterministic, non-repeating-looking payload so misplaced bytes show up.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + i / 251) % 251) as u8).collect()
}

/// Serves: read an 8-byte big-endian length, send that many pattern bytes, close.
async fn bulk_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 8];
                if sock.read_exact(&mut len).await.is_err() {
                    return;
                }
                let data = pattern(u64::from_be_bytes(len) as usize);
                // Errors are expected when the proxy cuts us off.
                let _ = sock.write_all(&data).await;
            });
        }
    });
    addr
}

/// Echoes everything back until the client closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = sock.into_split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            });
        }
    });
    addr
}

/// Reads until EOF or a reset, returning whatever arrived.
async fn read_all(sock: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asks the bulk server (through `addr`) for `size` bytes; returns what arrived.
async fn fetch(addr: SocketAddr, size: u64) -> Vec<u8> {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(&size.to_be_bytes()).await.unwrap();
    tokio::time::timeout(LIMIT, read_all(&mut sock))
        .await
        .expect("fetch timed out")
}

/// Counters are bumped just after each write, so poll briefly for them.
async fn wait_stats(proxy: &Proxy, want: Stats) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.stats() != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.stats(), want);
}

#[tokio::test]
async fn pass_through_forwards_bytes_exactly() {
    let echo = echo_server().await;
    let bulk = bulk_server().await;
    let echo_proxy = Proxy::start(echo, Faults::default()).await.unwrap();
    let bulk_proxy = Proxy::start(bulk, Faults::default()).await.unwrap();

    let payload = pattern(1 << 20);
    let sock = TcpStream::connect(echo_proxy.addr()).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    tokio::time::timeout(LIMIT, rd.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(echoed == payload, "echo mismatch: {} bytes", echoed.len());
    let want = Stats {
        connections: 1,
        bytes_down: 1 << 20,
        bytes_up: 1 << 20,
        cuts: 0,
    };
    wait_stats(&echo_proxy, want).await;

    let got = fetch(bulk_proxy.addr(), 300_000).await;
    assert!(
        got == pattern(300_000),
        "bulk mismatch: {} bytes",
        got.len()
    );
    let want = Stats {
        connections: 1,
        bytes_down: 300_000,
        bytes_up: 8,
        cuts: 0,
    };
    wait_stats(&bulk_proxy, want).await;
}

#[tokio::test]
async fn cut_after_delivers_exactly_n_bytes() {
    let bulk = bulk_server().await;
    let faults = Faults {
        cut_after: Some(12_345),
        ..Faults::default()
    };
    let proxy = Proxy::start(bulk, faults).await.unwrap();
    let got = fetch(proxy.addr(), 100_000).await;
    assert_eq!(got.len(), 12_345);
    assert!(got[..] == pattern(100_000)[..12_345]);
    // Every connection is cut while max_cuts is unset.
    assert_eq!(fetch(proxy.addr(), 100_000).await.len(), 12_345);
    let want = Stats {
        connections: 2,
        bytes_down: 2 * 12_345,
        bytes_up: 16,
        cuts: 2,
    };
    wait_stats(&proxy, want).await;
}

#[tokio::test]
async fn cut_after_zero_closes_before_any_byte() {
    let bulk = bulk_server().await;
    let faults = Faults {
        cut_after: Some(0),
        ..Faults::default()
    };
    let proxy = Proxy::start(bulk, faults).await.unwrap();
    assert!(fetch(proxy.addr(), 10_000).await.is_empty());
    assert_eq!(proxy.stats().cuts, 1);
}

/// Sequential fetches so connection numbers (and so cut points) are stable.
async fn cut_lengths(bulk: SocketAddr, faults: Faults, n: usize, size: u64) -> (Vec<usize>, Stats) {
    let proxy = Proxy::start(bulk, faults).await.unwrap();
    let mut lens = Vec::new();
    for _ in 0..n {
        let got = fetch(proxy.addr(), size).await;
        assert!(
            got[..] == pattern(size as usize)[..got.len()],
            "corrupt prefix"
        );
        lens.push(got.len());
    }
    let total: u64 = lens.iter().map(|&l| l as u64).sum();
    let want = Stats {
        connections: n as u64,
        bytes_down: total,
        bytes_up: 8 * n as u64,
        cuts: 3,
    };
    wait_stats(&proxy, want).await;
    (lens, proxy.stats())
}

#[tokio::test]
async fn cut_random_stops_after_max_cuts_and_is_deterministic() {
    let bulk = bulk_server().await;
    let faults = Faults {
        cut_random: Some((42, 1_000, 5_000)),
        max_cuts: Some(3),
        ..Faults::default()
    };
    let (lens, stats) = cut_lengths(bulk, faults, 5, 10_000).await;
    assert_eq!(stats.cuts, 3);
    for &len in &lens[..3] {
        assert!((1_000..5_000).contains(&len), "cut at {len}");
    }
    assert_eq!(&lens[3..], &[10_000, 10_000], "cuts after max_cuts");
    assert!(lens[0] != lens[1] || lens[1] != lens[2], "cut points vary");

    let (again, _) = cut_lengths(bulk, faults, 5, 10_000).await;
    assert_eq!(lens, again, "same seed, same cut points");
}

#[tokio::test]
async fn bandwidth_cap_slows_download() {
    let bulk = bulk_server().await;
    let faults = Faults {
        bandwidth: Some(200_000),
        ..Faults::default()
    };
    let proxy = Proxy::start(bulk, faults).await.unwrap();
    let started = Instant::now();
    let got = fetch(proxy.addr(), 100_000).await;
    let elapsed = started.elapsed();
    assert_eq!(got.len(), 100_000);
    // 100 KB at 200 KB/s is 0.5 s; only a loose lower bound is meaningful.
    assert!(elapsed >= Duration::from_millis(400), "took {elapsed:?}");
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let echo = echo_server().await;
    let faults = Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    };
    let proxy = Proxy::start(echo, faults).await.unwrap();
    let mut sock = TcpStream::connect(proxy.addr()).await.unwrap();
    let started = Instant::now();
    sock.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(LIMIT, sock.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(&back, b"ping");
    // Up and down each wait the latency once.
    assert!(elapsed >= Duration::from_millis(280), "took {elapsed:?}");
}

#[tokio::test]
async fn set_faults_affects_new_and_ongoing_connections() {
    let bulk = bulk_server().await;
    let stalled = Faults {
        bandwidth: Some(0),
        ..Faults::default()
    };
    let proxy = Proxy::start(bulk, stalled).await.unwrap();
    let addr = proxy.addr();
    let pending = tokio::spawn(fetch(addr, 50_000));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.stats().bytes_down, 0, "stalled connection sent data");

    // Lifting the stall releases the ongoing connection.
    proxy.set_faults(Faults::default());
    assert_eq!(pending.await.unwrap().len(), 50_000);

    // A cut point applies to the next connection.
    proxy.set_faults(Faults {
        cut_after: Some(100),
        ..Faults::default()
    });
    assert_eq!(fetch(addr, 50_000).await.len(), 100);
}

#[tokio::test]
async fn stop_closes_listener_and_connections() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo, Faults::default()).await.unwrap();
    let addr = proxy.addr();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"hi").await.unwrap();
    let mut back = [0u8; 2];
    sock.read_exact(&mut back).await.unwrap();

    proxy.stop().await;
    let rest = tokio::time::timeout(LIMIT, read_all(&mut sock))
        .await
        .unwrap();
    assert!(rest.is_empty(), "connection stays closed");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}
