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

/// A moto server of the test's own that checks credentials (`INITIAL_NO_AUTH_ACTION_COUNT=0`:
/// every request must be signed with a key moto knows, so any made-up key is refused with
/// `InvalidAccessKeyId`); killed when dropped. Runs `$PYTHON` (default `python3`) with moto's
/// server module, which `scripts/s3-throwaway.sh` installs.
pub struct CheckingMoto {
    _child: crate::Running,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl CheckingMoto {
    /// Starts it on a free loopback port and waits until it accepts connections (20 s at most;
    /// a plain TCP connect, since even a probing HTTP request would be checked).
    pub fn start() -> Self {
        let port = crate::free_port();
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let child = std::process::Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} -m moto.server: {e}"));
        let child = crate::Running(child);
        crate::wait_port(port);
        CheckingMoto {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}
