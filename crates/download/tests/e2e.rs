//! Downloads over a real socket with a raw HTTP/1.1 client, so the exact bytes of the response
//! head (header spelling, framing) are what is asserted, as a device SDK would see them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use otter_blobs::Blobs;
use otter_download::{DownloadState, UrlSigner, router, serve};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const SIZE: usize = 300_000;

struct Server {
    addr: SocketAddr,
    signer: Arc<UrlSigner>,
    sha256: String,
    data: Vec<u8>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
        let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 253) as u8).collect();
        let info = blobs.ingest(&data[..]).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let signer = Arc::new(UrlSigner::new(b"test key", &format!("http://{addr}")));
        let app = router(DownloadState {
            blobs,
            signer: signer.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            signer,
            sha256: info.sha256,
            data,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    fn path(&self) -> String {
        self.path_for(&self.sha256, later())
    }

    fn path_for(&self, sha256: &str, expires: u64) -> String {
        let url = self.signer.url(sha256, "PROD1", "dev-1", expires);
        let path = url.strip_prefix(&format!("http://{}", self.addr)).unwrap();
        assert_eq!(path, self.signer.path(sha256, "PROD1", "dev-1", expires));
        path.to_owned()
    }

    /// Sends one request with `extra` header lines on a fresh connection; returns (head, body).
    async fn get(&self, method: &str, path: &str, extra: &str) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip, deflate\r\n{extra}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no end of head");
        let head = String::from_utf8(raw[..split + 4].to_vec()).unwrap();
        (head, raw[split + 4..].to_vec())
    }
}

fn later() -> u64 {
    now() + 3600
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn status(head: &str) -> u16 {
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The value of the header line that starts with exactly `name: ` (case-sensitive, as Tencent's
/// C SDK matches it).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    head.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
}

fn assert_download_head(head: &str) {
    assert!(head.len() < 1024, "head is {} bytes", head.len());
    assert_eq!(header(head, "Accept-Ranges"), Some("bytes"), "{head}");
    assert_eq!(
        header(head, "Content-Type"),
        Some("application/octet-stream")
    );
    assert!(header(head, "Content-Length").is_some(), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(!lower.contains("content-encoding"), "{head}");
}

#[tokio::test]
async fn tencent_whole_file_range_is_206_with_content_length() {
    let s = Server::start().await;
    // Tencent sends bytes={offset}-{file_size}: one past the last byte.
    let (head, body) = s
        .get("GET", &s.path(), &format!("Range: bytes=0-{SIZE}\r\n"))
        .await;
    assert_eq!(status(&head), 206, "{head}");
    assert_download_head(&head);
    assert!(
        head.lines().any(|l| l.starts_with("Content-Length: ")),
        "{head}"
    );
    assert_eq!(header(&head, "Content-Length"), Some("300000"));
    assert_eq!(
        header(&head, "Content-Range"),
        Some("bytes 0-299999/300000")
    );
    let etag = format!("\"{}\"", s.sha256);
    assert_eq!(header(&head, "Etag"), Some(etag.as_str()));
    assert!(body == s.data);
}

#[tokio::test]
async fn resume_returns_exactly_the_tail() {
    let s = Server::start().await;
    let offset = 123_457;
    let (head, body) = s
        .get(
            "GET",
            &s.path(),
            &format!("Range: bytes={offset}-{SIZE}\r\n"),
        )
        .await;
    assert_eq!(status(&head), 206);
    assert_download_head(&head);
    assert_eq!(
        header(&head, "Content-Length"),
        Some((SIZE - offset).to_string().as_str())
    );
    assert_eq!(
        header(&head, "Content-Range"),
        Some(format!("bytes {offset}-299999/300000").as_str())
    );
    assert!(body == s.data[offset..]);

    let (head, body) = s.get("GET", &s.path(), "Range: bytes=10-19\r\n").await;
    assert_eq!(status(&head), 206);
    assert_eq!(body, &s.data[10..20]);

    let (head, body) = s.get("GET", &s.path(), "Range: bytes=-5\r\n").await;
    assert_eq!(status(&head), 206);
    assert_eq!(body, &s.data[SIZE - 5..]);
}

#[tokio::test]
async fn no_range_is_200_full() {
    let s = Server::start().await;
    let (head, body) = s.get("GET", &s.path(), "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert_download_head(&head);
    assert_eq!(header(&head, "Content-Length"), Some("300000"));
    assert!(header(&head, "Content-Range").is_none());
    assert!(body == s.data);
}

#[tokio::test]
async fn if_range_mismatch_sends_full_file() {
    let s = Server::start().await;
    let (head, body) = s
        .get(
            "GET",
            &s.path(),
            "Range: bytes=100-\r\nIf-Range: \"0000\"\r\n",
        )
        .await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(body == s.data);

    let matching = format!("Range: bytes=100-\r\nIf-Range: \"{}\"\r\n", s.sha256);
    let (head, body) = s.get("GET", &s.path(), &matching).await;
    assert_eq!(status(&head), 206, "{head}");
    assert!(body == s.data[100..]);
}

#[tokio::test]
async fn start_past_end_is_416() {
    let s = Server::start().await;
    let (head, body) = s
        .get("GET", &s.path(), &format!("Range: bytes={SIZE}-\r\n"))
        .await;
    assert_eq!(status(&head), 416, "{head}");
    assert_eq!(header(&head, "Content-Range"), Some("bytes */300000"));
    assert_eq!(header(&head, "Content-Length"), Some("0"));
    assert!(body.is_empty());
}

#[tokio::test]
async fn head_has_length_but_no_body() {
    let s = Server::start().await;
    let (head, body) = s.get("HEAD", &s.path(), "Range: bytes=5-\r\n").await;
    assert_eq!(status(&head), 206, "{head}");
    assert_download_head(&head);
    assert_eq!(header(&head, "Content-Length"), Some("299995"));
    assert!(body.is_empty());
}

#[tokio::test]
async fn refusals() {
    let s = Server::start().await;
    // Expired.
    let expired = s.path_for(&s.sha256, now() - 1);
    assert_eq!(status(&s.get("GET", &expired, "").await.0), 403);
    // Forged: signature changed, or a field changed under a valid signature.
    let good = s.path();
    let forged = format!("{}AAAA", &good[..good.len() - 4]);
    assert_eq!(status(&s.get("GET", &forged, "").await.0), 403);
    let other_device = good.replace("/dev-1/", "/dev-2/");
    assert_eq!(status(&s.get("GET", &other_device, "").await.0), 403);
    // Valid token for a blob that is not stored.
    let unknown = s.path_for(&"0".repeat(64), later());
    let (head, _) = s.get("GET", &unknown, "").await;
    assert_eq!(status(&head), 404);
    assert!(header(&head, "Content-Length").is_some(), "{head}");
    // Valid token for a name that is not a sha256 at all.
    let weird = s.path_for("..", later());
    assert_eq!(status(&s.get("GET", &weird, "").await.0), 404);
    // Malformed paths.
    assert_eq!(status(&s.get("GET", "/dl/abc", "").await.0), 404);
    assert_eq!(status(&s.get("GET", "/dl/a/b/c/d/e/f", "").await.0), 404);
    assert_eq!(
        status(&s.get("GET", "/dl/a/b/c/notanumber/e", "").await.0),
        400
    );
    assert_eq!(status(&s.get("GET", "/dl/a/%FF/c/1/e", "").await.0), 400);
    assert_eq!(status(&s.get("POST", &good, "").await.0), 405);
    // The server survived all of it.
    assert_eq!(status(&s.get("GET", &good, "").await.0), 200);
}

#[tokio::test]
async fn malformed_host_header_is_ignored() {
    let s = Server::start().await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    // Tencent's Python SDK sends the host followed by the path.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1/dl/x/y\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n",
        s.path()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 206"), "{text}");
}

#[tokio::test]
async fn keep_alive_serves_consecutive_requests() {
    let s = Server::start().await;
    let stream = TcpStream::connect(s.addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    for offset in [0usize, 299_990] {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nRange: bytes={offset}-\r\n\r\n",
            s.path()
        );
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut length = None;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                length = Some(v.trim().parse::<usize>().unwrap());
            }
        }
        let mut body = vec![0; length.expect("Content-Length")];
        stream.read_exact(&mut body).await.unwrap();
        assert!(body == s.data[offset..]);
    }
}

#[tokio::test]
async fn shutdown_returns() {
    let mut s = Server::start().await;
    assert_eq!(status(&s.get("GET", &s.path(), "").await.0), 200);
    // An idle keep-alive connection must not hold shutdown up.
    let _idle = TcpStream::connect(s.addr).await.unwrap();
    s.stop.take().unwrap().send(()).unwrap();
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), s.task)
        .await
        .expect("serve did not return");
    done.unwrap().unwrap();
    assert!(TcpStream::connect(s.addr).await.is_err());
}
