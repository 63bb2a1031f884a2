//! The blob folder under failure: uploads cut short leave nothing behind for long, and storage
//! that fails is the server's error (5xx), told without the server's filesystem paths.

use crate::common::*;
use otter_protocol::Dialect;
use otter_server::{Application, ServeConfig};

/// Issue 19, finding 5: the staging files of uploads cut short by a crash (finished staging
/// objects and unfinished `#n` parts) are removed when the server starts.
#[tokio::test]
async fn staging_left_by_a_crash_is_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("blobs").join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let part = staging.join("0123456789abcdef0123456789abcdef#3");
    let finished = staging.join("fedcba9876543210fedcba9876543210");
    std::fs::write(&part, vec![7u8; 100_000]).unwrap();
    std::fs::write(&finished, b"a finished upload never promoted").unwrap();

    let app = Application::build(ServeConfig::ephemeral(dir.path()))
        .await
        .unwrap();
    assert!(!part.exists(), "an unfinished part is left");
    assert!(!finished.exists(), "a finished staging object is left");
    drop(app);
}

/// Issue 19, finding 7: a blob folder that cannot be written is the server's failure: 5xx,
/// and the answer does not show where the server keeps its files. (The staging folder is
/// replaced by a file: unwritable for root too, which read-only modes are not.)
#[tokio::test]
async fn an_unwritable_blob_folder_is_a_server_error_without_paths() {
    let server = start().await;
    server.device(Dialect::Aliyun, "a1ReadOnly1", "dev1").await;
    let staging = server.dir.path().join("blobs").join("staging");
    if staging.is_dir() {
        std::fs::remove_dir_all(&staging).unwrap();
    }
    std::fs::write(&staging, b"not a folder").unwrap();
    let resp = server
        .client
        .post(server.url("/api/v1/products/a1ReadOnly1/firmware?version=1.0.1"))
        .bearer_auth(&server.token)
        .body(vec![1u8; 10_000])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert!((500..600).contains(&status), "{status} {body}");
    let root = server.dir.path().to_string_lossy().into_owned();
    assert!(!body.contains(&root), "the answer shows a path: {body}");
    assert!(!body.contains("staging"), "the answer shows a path: {body}");
    assert!(body.contains("storage failed"), "{body}");

    // Once storage works again, so do uploads.
    std::fs::remove_file(&staging).unwrap();
    server.upload("a1ReadOnly1", "1.0.1", &image()).await;
}

/// Issue 21: one `otter serve` per data folder. A second server on the same embedded database
/// refuses to start and names the first; the first keeps serving; once it is gone, the folder
/// can be served again.
#[tokio::test]
async fn a_second_server_on_the_same_data_folder_refuses_and_the_first_keeps_serving() {
    let server = start().await;
    let err = match Application::build(ServeConfig::ephemeral(server.dir.path())).await {
        Ok(_) => panic!("a second server started on the same data folder"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("in use by another `otter serve`")
            && err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    // The first server was not disturbed: a device registers, connects and is answered.
    let secret = server.device(Dialect::Tencent, "TCOWNER001", "dev1").await;
    let mut dev =
        RawDevice::connect(&server, Dialect::Tencent, "TCOWNER001", "dev1", &secret).await;
    let (report, update) = ("$ota/report/TCOWNER001/dev1", "$ota/update/TCOWNER001/dev1");
    dev.subscribe(update).await;
    dev.send(
        report,
        r#"{"type":"report_version","report":{"version":"1.0.0"}}"#,
    )
    .await;
    assert_eq!(dev.next_on(update).await["result_code"], 0);

    let dir = tempfile::tempdir().unwrap();
    let first = Application::build(ServeConfig::ephemeral(dir.path()))
        .await
        .unwrap();
    drop(first);
    let again = Application::build(ServeConfig::ephemeral(dir.path())).await;
    assert!(
        again.is_ok(),
        "the folder stays locked after its server is gone"
    );
}
