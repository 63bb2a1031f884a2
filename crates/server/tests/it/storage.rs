//! The blob folder under failure: uploads cut short leave nothing behind for long, and storage
//! that fails is the server's error (5xx), told without the server's filesystem paths.

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
