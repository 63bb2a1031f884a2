//! Ingest and read against a real local folder, and against a real S3 server (moto, started by
//! `.ci/run` through `scripts/s3-throwaway.sh`) when `OTTER_TEST_S3_ENDPOINT` names one.

use futures::TryStreamExt;
use otter_blobs::{BlobError, Blobs, S3Options};
// The S3 test server, if any (under CI a missing server is a failure, never a silent skip), and
// fresh buckets on it.
use otter_testkit::s3::{endpoint as s3_endpoint, fresh_bucket};

/// Options for the test server (moto takes any credentials).
fn s3_options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        access_key_id: Some("otter-test".into()),
        secret_access_key: Some("otter-test-secret".into()),
        allow_http: true,
    }
}

/// A store on every available engine, each empty: a local folder, then S3 when available.
/// The folder guard keeps the local store alive.
async fn engines() -> Vec<(&'static str, Blobs, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let local = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let mut all = vec![("local", local, dir)];
    if let Some(endpoint) = s3_endpoint() {
        let bucket = fresh_bucket(&endpoint).await;
        let s3 = Blobs::open_with(&format!("s3://{bucket}/fw/v1"), &s3_options(&endpoint)).unwrap();
        all.push(("s3", s3, tempfile::tempdir().unwrap()));
    }
    all
}

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
    for (engine, blobs, _dir) in engines().await {
        let info = blobs.ingest(&b"hello world\n"[..]).await.unwrap();
        // Values from `sha256sum` / `md5sum` of "hello world\n".
        assert_eq!(
            info.sha256, "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447",
            "{engine}"
        );
        assert_eq!(info.md5, "6f5902ac237024bdd0c176cb93063dc4", "{engine}");
        assert_eq!(info.size, 12, "{engine}");
        assert_eq!(
            blobs.size(&info.sha256).await.unwrap(),
            Some(12),
            "{engine}"
        );
        assert_eq!(
            read_all(&blobs, &info.sha256, 0..12).await,
            b"hello world\n"
        );
    }
}

#[tokio::test]
async fn local_blobs_are_plain_files_named_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let info = blobs.ingest(&b"hello world\n"[..]).await.unwrap();
    let stored = dir.path().join("sha256").join(&info.sha256);
    assert_eq!(std::fs::read(stored).unwrap(), b"hello world\n");
    assert!(!blobs.can_presign());
    assert_eq!(
        blobs
            .presigned_url(&info.sha256, std::time::Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn empty_input_is_a_valid_blob() {
    for (engine, blobs, _dir) in engines().await {
        let info = blobs.ingest(&b""[..]).await.unwrap();
        assert_eq!(
            info.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "{engine}"
        );
        assert_eq!(info.md5, "d41d8cd98f00b204e9800998ecf8427e", "{engine}");
        assert_eq!(info.size, 0, "{engine}");
        assert_eq!(blobs.size(&info.sha256).await.unwrap(), Some(0), "{engine}");
        assert!(read_all(&blobs, &info.sha256, 0..0).await.is_empty());
    }
}

#[tokio::test]
async fn large_ingest_and_ranges_return_exact_bytes() {
    // Bigger than two multipart parts (5 MiB), so several parts are written.
    let data = content(11 * 1024 * 1024 + 7);
    let len = data.len() as u64;
    for (engine, blobs, _dir) in engines().await {
        let info = blobs.ingest(&data[..]).await.unwrap();
        assert_eq!(info.size, len, "{engine}");
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
            assert!(got == want, "{engine}: range {range:?} differs");
        }
        // An end past the blob is clamped to it.
        let tail = read_all(&blobs, &info.sha256, len - 3..len + 100).await;
        assert_eq!(tail, &data[data.len() - 3..], "{engine}");
        // No staging leftovers after a successful ingest.
        assert_eq!(
            blobs
                .sweep_staging(std::time::Duration::ZERO)
                .await
                .unwrap(),
            0,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn local_path_forms_are_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let url = Blobs::open(&format!("file://{}", dir.path().display())).unwrap();
    let info = plain.ingest(&b"either way"[..]).await.unwrap();
    assert_eq!(url.size(&info.sha256).await.unwrap(), Some(10));
}

#[tokio::test]
async fn reingesting_identical_content_is_fine() {
    for (engine, blobs, _dir) in engines().await {
        let a = blobs.ingest(&b"same bytes"[..]).await.unwrap();
        let b = blobs.ingest(&b"same bytes"[..]).await.unwrap();
        assert_eq!(a, b, "{engine}");
        assert_eq!(read_all(&blobs, &a.sha256, 0..10).await, b"same bytes");
    }
}

#[tokio::test]
async fn withdrawn_blobs_are_discarded_or_restored() {
    for (engine, blobs, _dir) in engines().await {
        let a = blobs.ingest(&b"retired bytes"[..]).await.unwrap();
        // Read once first: a local store caches the open file, which withdrawing must forget.
        assert_eq!(read_all(&blobs, &a.sha256, 0..7).await, b"retired");
        let withdrawn = blobs.withdraw(&a.sha256).await.unwrap().unwrap();
        assert_eq!(withdrawn.sha256(), a.sha256);
        assert!(!blobs.exists(&a.sha256).await.unwrap(), "{engine}");
        assert!(
            blobs.blob(&a.sha256).await.unwrap().is_none(),
            "{engine}: downloads see it gone"
        );
        blobs.restore(withdrawn).await.unwrap();
        assert_eq!(
            read_all(&blobs, &a.sha256, 0..13).await,
            b"retired bytes",
            "{engine}"
        );

        // Withdrawn, then stored again by an ingest of the same content, then restored: the
        // same bytes either way.
        let withdrawn = blobs.withdraw(&a.sha256).await.unwrap().unwrap();
        blobs.ingest(&b"retired bytes"[..]).await.unwrap();
        blobs.restore(withdrawn).await.unwrap();
        assert_eq!(
            read_all(&blobs, &a.sha256, 0..13).await,
            b"retired bytes",
            "{engine}"
        );

        // Left withdrawn (a process stopped between the steps): listed for settling.
        blobs.withdraw(&a.sha256).await.unwrap().unwrap();
        let left = blobs.withdrawn(std::time::Duration::ZERO).await.unwrap();
        assert_eq!(left.len(), 1, "{engine}");
        assert!(
            blobs
                .withdrawn(std::time::Duration::from_secs(3600))
                .await
                .unwrap()
                .is_empty(),
            "{engine}: a recent one may be another node's"
        );
        let withdrawn = left.into_iter().next().unwrap();
        assert_eq!(withdrawn.sha256(), a.sha256);
        blobs.discard(withdrawn).await.unwrap();
        assert!(
            blobs
                .withdrawn(std::time::Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!blobs.exists(&a.sha256).await.unwrap(), "{engine}");
        assert!(
            blobs.withdraw(&a.sha256).await.unwrap().is_none(),
            "{engine}: nothing to withdraw"
        );
        // The content can be stored again.
        blobs.ingest(&b"retired bytes"[..]).await.unwrap();
        assert!(blobs.exists(&a.sha256).await.unwrap(), "{engine}");
        assert!(blobs.withdraw("../etc").await.is_err());
    }
}

/// A reader that yields `0` chunks of 1000 bytes, then fails.
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

#[tokio::test]
async fn failing_reader_leaves_nothing_behind() {
    for (engine, blobs, _dir) in engines().await {
        assert!(
            matches!(blobs.ingest(Broken(3)).await, Err(BlobError::Source(_))),
            "{engine}"
        );
        // Nothing to sweep: the staging upload was aborted, not left for the sweeper.
        let swept = blobs
            .sweep_staging(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(swept, 0, "{engine}");
    }
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    assert!(matches!(
        blobs.ingest(Broken(3)).await,
        Err(BlobError::Source(_))
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
    for (engine, blobs, _dir) in engines().await {
        for bad in [
            "",
            "../../etc/passwd",
            &"A".repeat(64),
            &format!("{}/x", "a".repeat(62)),
        ] {
            assert!(
                matches!(blobs.size(bad).await, Err(BlobError::InvalidSha256(_))),
                "{engine}"
            );
            assert!(
                matches!(
                    blobs.read(bad, 0..1).await,
                    Err(BlobError::InvalidSha256(_))
                ),
                "{engine}"
            );
            assert!(
                matches!(
                    blobs
                        .presigned_url(bad, std::time::Duration::from_secs(60))
                        .await,
                    Err(BlobError::InvalidSha256(_))
                ),
                "{engine}"
            );
        }
        let unknown = "0".repeat(64);
        assert_eq!(blobs.size(&unknown).await.unwrap(), None, "{engine}");
        assert!(
            matches!(
                blobs.read(&unknown, 0..1).await,
                Err(BlobError::NotFound(_))
            ),
            "{engine}"
        );
        assert!(
            matches!(
                blobs.read(&unknown, 0..0).await,
                Err(BlobError::NotFound(_))
            ),
            "{engine}"
        );
    }
}

#[test]
fn open_specs() {
    assert!(matches!(
        Blobs::open("gopher://x"),
        Err(BlobError::Unsupported(_))
    ));
    assert!(matches!(Blobs::open(""), Err(BlobError::InvalidSpec(_))));
    for bad in ["s3://", "s3:///prefix", "s3://a b/c", "s3://x"] {
        assert!(
            matches!(Blobs::open(bad), Err(BlobError::InvalidSpec(_))),
            "{bad}"
        );
    }
    // Opening a bucket sends nothing: no server is needed to build the engine.
    let s3 = Blobs::open_with(
        "s3://otter-firmware/prod",
        &s3_options("http://127.0.0.1:9"),
    )
    .unwrap();
    assert!(s3.can_presign());
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/blobs");
    Blobs::open(nested.to_str().unwrap()).unwrap();
    assert!(nested.is_dir());
}

#[tokio::test]
async fn s3_objects_live_under_the_prefix() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let options = s3_options(&endpoint);
    let prefixed = Blobs::open_with(&format!("s3://{bucket}/fw/v1/"), &options).unwrap();
    let info = prefixed.ingest(&b"prefixed"[..]).await.unwrap();
    // The same bucket without the prefix sees nothing at the blob's own key ...
    let bare = Blobs::open_with(&format!("s3://{bucket}"), &options).unwrap();
    assert_eq!(bare.size(&info.sha256).await.unwrap(), None);
    // ... and the bucket's listing shows it at {prefix}/sha256/{hex}.
    let listing = reqwest::get(format!("{endpoint}/{bucket}?list-type=2"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = format!("<Key>fw/v1/sha256/{}</Key>", info.sha256);
    assert!(listing.contains(&key), "{listing}");
}

#[tokio::test]
async fn s3_presigned_url_downloads_the_blob_with_ranges() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let blobs = Blobs::open_with(&format!("s3://{bucket}/fw"), &s3_options(&endpoint)).unwrap();
    let data = content(300_000);
    let info = blobs.ingest(&data[..]).await.unwrap();
    let url = blobs
        .presigned_url(&info.sha256, std::time::Duration::from_secs(600))
        .await
        .unwrap()
        .expect("S3 presigns");
    assert!(
        url.starts_with(&format!("{endpoint}/{bucket}/fw/sha256/{}?", info.sha256)),
        "{url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let client = reqwest::Client::new();
    // The object is private: without the signature S3 refuses it.
    let (unsigned, _) = url.split_once('?').unwrap();
    assert_eq!(client.get(unsigned).send().await.unwrap().status(), 403);
    let full = client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.bytes().await.unwrap(), &data[..]);
    // Resume as Tencent's SDK does: the end is one past the last byte, clamped by S3.
    let part = client
        .get(&url)
        .header("Range", format!("bytes=1000-{}", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), &data[1000..]);
    // Longer than SigV4 allows: refused rather than silently shortened.
    let too_long = otter_blobs::MAX_PRESIGN_TTL + std::time::Duration::from_secs(1);
    assert!(blobs.presigned_url(&info.sha256, too_long).await.is_err());
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

#[tokio::test]
async fn blob_handle_gives_size_and_ranges() {
    let data = content(300 * 1024 + 5);
    let len = data.len() as u64;
    for (engine, blobs, _dir) in engines().await {
        assert!(
            blobs.blob(&"0".repeat(64)).await.unwrap().is_none(),
            "{engine}"
        );
        assert!(
            matches!(blobs.blob("../x").await, Err(BlobError::InvalidSha256(_))),
            "{engine}"
        );
        let info = blobs.ingest(&data[..]).await.unwrap();
        let blob = blobs.blob(&info.sha256).await.unwrap().unwrap();
        assert_eq!(blob.size(), len, "{engine}");
        // Several reads from one handle, including across read-chunk boundaries, and an end
        // past the blob (clamped).
        for range in [
            0..len,
            1..2,
            65_535..65_537,
            100_000..len + 10,
            len - 1..len,
        ] {
            let chunks: Vec<_> = blob
                .read(range.clone())
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let end = range.end.min(len) as usize;
            assert!(
                chunks.concat() == data[range.start as usize..end],
                "{engine}: {range:?}"
            );
        }
        assert!(
            blob.read(5..5)
                .await
                .unwrap()
                .try_next()
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            matches!(
                blob.read(len..len + 1).await,
                Err(BlobError::InvalidRange { .. })
            ),
            "{engine}"
        );
    }
}

/// Concurrent reads of one blob (sharing its open file and the read buffers) each get their own
/// bytes.
#[tokio::test]
async fn concurrent_local_reads_get_their_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let data = content(2 * 1024 * 1024 + 3);
    let info = blobs.ingest(&data[..]).await.unwrap();
    let reads = (0..32u64).map(|i| {
        let blobs = blobs.clone();
        let sha = info.sha256.clone();
        let range = i * 60_001..i * 60_001 + 70_000 + i * 1000;
        tokio::spawn(async move { (range.clone(), read_all(&blobs, &sha, range).await) })
    });
    for read in reads {
        let (range, got) = read.await.unwrap();
        assert!(
            got == data[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
}

/// A blob that was not there when first asked for is found once ingested (misses are not
/// remembered).
#[tokio::test]
async fn local_miss_then_ingest_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let data = b"late firmware".to_vec();
    // Learn the name from another store.
    let other = tempfile::tempdir().unwrap();
    let sha = Blobs::open(other.path().to_str().unwrap())
        .unwrap()
        .ingest(&data[..])
        .await
        .unwrap()
        .sha256;
    assert_eq!(blobs.size(&sha).await.unwrap(), None);
    assert!(blobs.blob(&sha).await.unwrap().is_none());
    blobs.ingest(&data[..]).await.unwrap();
    assert_eq!(blobs.size(&sha).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read_all(&blobs, &sha, 0..100).await, data);
}

/// A local blob file cut short behind Otter's back (after its size was cached) fails the read
/// instead of yielding fewer bytes than announced.
#[tokio::test]
async fn truncated_local_file_fails_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let data = content(200 * 1024);
    let info = blobs.ingest(&data[..]).await.unwrap();
    let blob = blobs.blob(&info.sha256).await.unwrap().unwrap();
    let path = dir.path().join("sha256").join(&info.sha256);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let got: Result<Vec<_>, _> = blob.read(0..blob.size()).await.unwrap().try_collect().await;
    assert!(matches!(got, Err(BlobError::Io(_))), "{got:?}");
}

/// Issue 19, finding 5: an upload cut short by a crash leaves an unfinished part
/// (`staging/<name>#<n>`), which the store's own listing does not show; the sweeper removes it,
/// and finished staging objects, and leaves blobs alone.
#[tokio::test]
async fn sweep_removes_unfinished_parts_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(dir.path().to_str().unwrap()).unwrap();
    let kept = blobs.ingest(&b"a blob stays"[..]).await.unwrap();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(
        staging.join("0123456789abcdef0123456789abcdef#1"),
        [0u8; 4096],
    )
    .unwrap();
    std::fs::write(
        staging.join("fedcba9876543210fedcba9876543210"),
        b"never promoted",
    )
    .unwrap();
    assert_eq!(
        blobs
            .sweep_staging(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "fresh leftovers are kept: they may be uploads in progress"
    );
    let swept = blobs
        .sweep_staging(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept, 2);
    assert!(walk(&staging).is_empty(), "{:?}", walk(&staging));
    assert_eq!(blobs.size(&kept.sha256).await.unwrap(), Some(12));
}
