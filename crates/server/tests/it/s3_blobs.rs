//! A server whose firmware lives in S3 (a real S3 server: moto, started by `.ci/run` through
//! `scripts/s3-throwaway.sh`, named by `OTTER_TEST_S3_ENDPOINT`): uploads land in the bucket, a
//! device gets its push and downloads the image through Otter with the Range rules of
//! PROTOCOL.md §4, or, in presigned mode, straight from S3.

use crate::common::*;
use otter_protocol::Dialect;
use otter_server::{DownloadMode, S3Options};
// The S3 test server (under CI a missing one fails the test rather than skipping it), and fresh
// buckets on it.
use otter_testkit::s3::{endpoint as s3_endpoint, fresh_bucket};

/// A server storing blobs in a fresh bucket of the test server, under a prefix.
async fn s3_server(endpoint: &str, mode: DownloadMode) -> (TestServer, String) {
    let bucket = fresh_bucket(endpoint).await;
    let spec = format!("s3://{bucket}/firmware");
    let endpoint = endpoint.to_string();
    let server = start_with(move |c| {
        c.blobs = Some(spec);
        c.s3 = S3Options {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some("otter-test".into()),
            secret_access_key: Some("otter-test-secret".into()),
            allow_http: true,
        };
        c.download_mode = mode;
    })
    .await;
    (server, bucket)
}

/// A Tencent device with firmware 1.1.0 uploaded and pushed to it; returns the push's URL.
async fn pushed_url(server: &TestServer) -> String {
    let secret = server.device(Dialect::Tencent, "TCS3PROD01", "dev1").await;
    let fw = server.upload("TCS3PROD01", "1.1.0", &image()).await;
    assert_eq!(fw["md5"], md5_hex(&image()));
    let mut dev = RawDevice::connect(server, Dialect::Tencent, "TCS3PROD01", "dev1", &secret).await;
    let (report, update) = ("$ota/report/TCS3PROD01/dev1", "$ota/update/TCS3PROD01/dev1");
    dev.subscribe(update).await;
    dev.send(
        report,
        r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#,
    )
    .await;
    dev.next_on(update).await;
    server.upgrade("TCS3PROD01", "dev1", "1.1.0").await;
    let push = dev.next_on(update).await;
    assert_eq!(push["type"], "update_firmware");
    assert_eq!(push["md5sum"], md5_hex(&image()));
    push["url"].as_str().unwrap().to_string()
}

/// What the bucket lists (anonymous listing works on moto).
async fn listing(endpoint: &str, bucket: &str) -> String {
    reqwest::get(format!("{endpoint}/{bucket}?list-type=2"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn device_downloads_firmware_stored_in_s3_through_otter() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let (server, bucket) = s3_server(&endpoint, DownloadMode::Otter).await;
    let url = pushed_url(&server).await;
    assert!(url.starts_with(&server.url("/dl/")), "{url}");

    // The image is in the bucket, under the prefix; nothing went to the data dir.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(image()));
    let keys = listing(&endpoint, &bucket).await;
    assert!(
        keys.contains(&format!("<Key>firmware/sha256/{sha}</Key>")),
        "{keys}"
    );
    assert!(!server.dir.path().join("blobs").exists());

    // Whole file.
    let (status, body) = download(&url, None).await;
    assert_eq!((status, body.len()), (200, IMAGE_LEN));
    assert_eq!(md5_hex(&body), md5_hex(&image()));
    // Tencent's range: end one past the last byte, clamped.
    let (status, body) = download(&url, Some(&format!("bytes=0-{IMAGE_LEN}"))).await;
    assert_eq!((status, body.len()), (206, IMAGE_LEN));
    assert_eq!(md5_hex(&body), md5_hex(&image()));
    // A bounded range in the middle.
    let (status, body) = download(&url, Some("bytes=70000-70099")).await;
    assert_eq!(status, 206);
    assert_eq!(body, image()[70_000..70_100]);
    // Resume from an offset, as after a cut: the two pieces make the image.
    let (status, head) = download(&url, Some("bytes=0-122879")).await;
    assert_eq!(status, 206);
    let (status, tail) = download(&url, Some(&format!("bytes={}-", head.len()))).await;
    assert_eq!(status, 206);
    assert_eq!(md5_hex(&[head, tail].concat()), md5_hex(&image()));
    // Past the end: 416 with the size.
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Range", format!("bytes={IMAGE_LEN}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{IMAGE_LEN}").as_str()
    );
    // If-Range naming another version: the whole (new) file.
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Range", "bytes=1000-")
        .header("If-Range", "\"some-older-image\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), IMAGE_LEN);
}

#[tokio::test]
async fn presigned_mode_pushes_a_url_of_the_s3_server() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let (server, bucket) = s3_server(&endpoint, DownloadMode::Presigned).await;
    let url = pushed_url(&server).await;
    assert!(
        url.starts_with(&format!("{endpoint}/{bucket}/firmware/sha256/")),
        "{url}"
    );
    assert!(url.len() <= otter_server::MAX_PRESIGNED_URL, "{url}");
    let (status, body) = download(&url, None).await;
    assert_eq!((status, body.len()), (200, IMAGE_LEN));
    assert_eq!(md5_hex(&body), md5_hex(&image()));
    let (status, tail) = download(&url, Some(&format!("bytes=1000-{IMAGE_LEN}"))).await;
    assert_eq!(status, 206);
    assert_eq!(tail, image()[1000..]);
}

#[tokio::test]
async fn presigned_mode_needs_s3_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = otter_server::ServeConfig::ephemeral(dir.path());
    config.download_mode = DownloadMode::Presigned;
    let err = otter_server::Application::build(config)
        .await
        .err()
        .expect("presigned mode on a local folder must be refused");
    assert!(format!("{err:#}").contains("presigned"), "{err:#}");
}
