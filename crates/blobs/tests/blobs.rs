//! Ingest and read against a real local folder.

use futures::TryStreamExt;
use otter_blobs::{BlobError, Blobs};

async fn read_all(blobs: &Blobs, sha: &str, range: std::ops::Range<u64>) -> Vec<u8> {
    let chunks: Vec<_> = blobs
        .read(sha, range)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

/// Deterministic test content that is not trivially repetitive.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn ingest_known_file_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let info = blobs.ingest(&b"hello world\n"[..]).await.unwrap();
    // Values from `sha256sum` / `md5sum` of "hello world\n".
    assert_eq!(
        info.sha256,
        "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
    );
    assert_eq!(info.md5, "6f5902ac237024bdd0c176cb93063dc4");
    assert_eq!(info.size, 12);
    assert_eq!(blobs.size(&info.sha256).await.unwrap(), Some(12));
    let stored = dir.path().join("sha256").join(&info.sha256);
    assert_eq!(std::fs::read(stored).unwrap(), b"hello world\n");
}

#[tokio::test]
async fn empty_input_is_a_valid_blob() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let info = blobs.ingest(&b""[..]).await.unwrap();
    assert_eq!(
        info.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(info.md5, "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(info.size, 0);
    assert!(read_all(&blobs, &info.sha256, 0..0).await.is_empty());
}

#[tokio::test]
async fn large_ingest_and_ranges_return_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(&format!("file://{}", dir.path().display())).unwrap();
    // Bigger than one multipart part (5 MiB), so several parts are written.
    let data = content(11 * 1024 * 1024 + 7);
    let info = blobs.ingest(&data[..]).await.unwrap();
    assert_eq!(info.size, data.len() as u64);
    let len = data.len() as u64;
    for range in [
        0..len,
        0..1,
        5..6,
        1000..70_000,
        len - 10..len,
        4_999_999..5_300_000,
    ] {
        let got = read_all(&blobs, &info.sha256, range.clone()).await;
        let want = &data[range.start as usize..range.end as usize];
        assert!(got == want, "range {range:?} differs");
    }
    // An end past the blob is clamped to it.
    let tail = read_all(&blobs, &info.sha256, len - 3..len + 100).await;
    assert_eq!(tail, &data[data.len() - 3..]);
    // No staging leftovers after a successful ingest.
    assert_eq!(
        blobs
            .sweep_staging(std::time::Duration::ZERO)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn reingesting_identical_content_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let a = blobs.ingest(&b"same bytes"[..]).await.unwrap();
    let b = blobs.ingest(&b"same bytes"[..]).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(read_all(&blobs, &a.sha256, 0..10).await, b"same bytes");
}

#[tokio::test]
async fn failing_reader_leaves_nothing_behind() {
    struct Broken(usize);
    impl tokio::io::AsyncRead for Broken {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("cut")));
            }
            self.0 -= 1;
            buf.put_slice(&[7; 1000]);
            std::task::Poll::Ready(Ok(()))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    assert!(matches!(
        blobs.ingest(Broken(3)).await,
        Err(BlobError::Io(_))
    ));
    let leftovers: Vec<_> = walk(dir.path());
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn bad_sha256_rejected_and_unknown_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    for bad in [
        "",
        "../../etc/passwd",
        &"A".repeat(64),
        &format!("{}/x", "a".repeat(62)),
    ] {
        assert!(matches!(
            blobs.size(bad).await,
            Err(BlobError::InvalidSha256(_))
        ));
        assert!(matches!(
            blobs.read(bad, 0..1).await,
            Err(BlobError::InvalidSha256(_))
        ));
    }
    let unknown = "0".repeat(64);
    assert_eq!(blobs.size(&unknown).await.unwrap(), None);
    assert!(matches!(
        blobs.read(&unknown, 0..1).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(matches!(
        blobs.read(&unknown, 0..0).await,
        Err(BlobError::NotFound(_))
    ));
}

#[test]
fn open_specs() {
    assert!(matches!(
        Blobs::open("s3://bucket/prefix"),
        Err(BlobError::Unsupported(_))
    ));
    assert!(matches!(
        Blobs::open("gopher://x"),
        Err(BlobError::Unsupported(_))
    ));
    assert!(matches!(Blobs::open(""), Err(BlobError::InvalidSpec(_))));
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/blobs");
    Blobs::open(nested.to_str().unwrap()).unwrap();
    assert!(nested.is_dir());
}

#[tokio::test]
async fn sweep_removes_only_old_staging_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let info = blobs.ingest(&b"keep me"[..]).await.unwrap();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let old = staging.join("crashed");
    std::fs::write(&old, b"half").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let fresh = staging.join("in-progress");
    std::fs::write(&fresh, b"busy").unwrap();
    let removed = blobs
        .sweep_staging(std::time::Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!old.exists());
    assert!(fresh.exists());
    assert_eq!(blobs.size(&info.sha256).await.unwrap(), Some(7));
}
