//! The S3 test server (moto, `scripts/s3-throwaway.sh`) and fresh buckets on it.

/// The variable naming the S3 test server's endpoint.
pub const ENDPOINT_VAR: &str = "OTTER_TEST_S3_ENDPOINT";

/// The S3 test server's endpoint (without a trailing `/`), or `None` outside CI when unset (the
/// S3 cases are then skipped); under `CI` a missing server fails the test.
pub fn endpoint() -> Option<String> {
    crate::required_env(ENDPOINT_VAR, "scripts/s3-throwaway.sh", "S3 cases")
        .map(|url| url.trim_end_matches('/').to_string())
}

/// A fresh, empty bucket on the server at `endpoint` (a plain HTTP PUT: moto accepts unsigned
/// bucket creation, and object_store does not create buckets).
pub async fn fresh_bucket(endpoint: &str) -> String {
    let bucket = format!("otter-test-{:016x}", rand::random::<u64>());
    let status = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("S3 test server unreachable")
        .status();
    assert!(status.is_success(), "creating bucket {bucket}: {status}");
    bucket
}
