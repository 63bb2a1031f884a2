//! Issue 20, "Fail fast at start": a node whose blob store, secret key, broker or database cannot
//! work refuses to start, with a message naming the cause, instead of starting and failing at
//! the first upload or device; `/readyz` says whether a running node can do its work.

use crate::OTTER;
use otter_testkit::mosquitto::Mosquitto;
use otter_testkit::s3::{CheckingMoto, endpoint as s3_endpoint};
use otter_testkit::{Running, free_port};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a refusing node may take to exit: every start-up check has a bound well below it.
const REFUSED_WITHIN: Duration = Duration::from_secs(60);

/// Runs `otter serve` over `data` with `args` (and no AWS variables from the environment), which
/// must exit non-zero within [`REFUSED_WITHIN`]; returns what it wrote on stderr.
fn refused(data: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(OTTER);
    cmd.args(["serve", "--mqtt-listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .env_remove("OTTER_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        cmd.env_remove(var);
    }
    let mut child = Running(cmd.spawn().unwrap());
    let mut stderr = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > REFUSED_WITHIN {
            drop(child);
            panic!(
                "otter serve {args:?} still runs after {REFUSED_WITHIN:?}:\n{}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().unwrap();
    assert!(!status.success(), "otter serve {args:?} exited 0:\n{text}");
    assert!(
        !text.contains("otter: MQTT"),
        "otter serve {args:?} announced its listeners before refusing:\n{text}"
    );
    text
}

#[test]
fn a_missing_bucket_refuses_the_start() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("otter-missing-{:016x}", rand_u64());
    let blobs = format!("s3://{bucket}/fw");
    let err = refused(
        dir.path(),
        &[
            "--blobs",
            &blobs,
            "--s3-endpoint",
            &endpoint,
            "--s3-access-key-id",
            "otter-test",
            "--s3-secret-access-key",
            "otter-test-secret",
        ],
    );
    assert!(
        err.contains(&format!(
            "S3 bucket \"{bucket}\" does not exist at {endpoint}"
        )),
        "{err}"
    );
}

#[test]
fn a_wrong_s3_credential_refuses_the_start() {
    // Only where the S3 tests run: they are where moto is installed.
    if s3_endpoint().is_none() {
        return;
    }
    let moto = CheckingMoto::start();
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        dir.path(),
        &[
            "--blobs",
            "s3://otter-firmware",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-access-key-id",
            "AKIANOTAREALKEY00000",
            "--s3-secret-access-key",
            "wrong",
        ],
    );
    assert!(
        err.contains("S3 refused the credentials (InvalidAccessKeyId"),
        "{err}"
    );
}

/// The reported symptom: the documented node command without S3 credentials started, and the
/// first upload failed after asking a cloud metadata service. No S3 server is needed: nothing is
/// sent.
#[test]
fn no_s3_credential_refuses_the_start_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let err = refused(
        dir.path(),
        &["--blobs", "s3://otter-firmware", "--s3-endpoint", &endpoint],
    );
    assert!(
        err.contains("no S3 credentials: set --s3-access-key-id/--s3-secret-access-key"),
        "{err}"
    );
}

#[test]
fn a_foreign_secret_key_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let (_server, _, http) = OTTER.serve(&data, &[]);
        OTTER.json(
            &http,
            &data,
            &[
                "product",
                "create",
                "--id",
                "a1FailFast1",
                "--dialect",
                "aliyun",
            ],
        );
        OTTER.json(
            &http,
            &data,
            &[
                "device",
                "create",
                "--product",
                "a1FailFast1",
                "--name",
                "dev1",
            ],
        );
    }
    // The same database with another node's fresh key.
    let foreign = dir.path().join("other-secret-key");
    let err = refused(&data, &["--secret-key-file", foreign.to_str().unwrap()]);
    assert!(
        err.contains(&format!("the secret key in {}", foreign.display()))
            && err.contains("does not open the device secrets")
            && err.contains("Every node on one database needs the same secret key"),
        "{err}"
    );
    // With its own key the data dir still serves.
    let (_server, _, _) = OTTER.serve(&data, &[]);
}

#[test]
fn an_unreachable_broker_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = format!("mqtt://127.0.0.1:{}", free_port());
    let err = refused(dir.path(), &["--broker", &broker, "--broker-secret", "s"]);
    assert!(
        err.contains(&format!("connecting to the MQTT broker {broker}"))
            && err.contains("connection refused"),
        "{err}"
    );
}

#[tokio::test]
async fn a_broker_refusing_the_login_refuses_the_start() {
    let broker = Mosquitto::start("allow_anonymous false\n").await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://{}", broker.addr);
    let err = refused(dir.path(), &["--broker", &url, "--broker-secret", "s"]);
    assert!(
        err.contains(&format!("connecting to the MQTT broker {url}"))
            && err.contains("refused the login"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("postgres://otter:hunter2@127.0.0.1:{port}/otter");
    let err = refused(dir.path(), &["--database", &url]);
    assert!(
        err.contains(&format!(
            "opening the database postgres://otter:***@127.0.0.1:{port}/otter"
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password is shown: {err}");
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn readyz_says_ready_then_names_the_blob_store_once_its_folder_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _, http) = OTTER.serve(&data, &[]);
    let (status, body) = get(&format!("{http}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "checks": {"database": "ok", "blobs": "ok", "broker": "ok"}})
    );
    assert_eq!(get(&format!("{http}/healthz")).await, (200, "ok".into()));

    std::fs::remove_dir_all(data.join("blobs")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = get(&format!("{http}/readyz")).await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["ready"], false, "{body}");
    assert_eq!(
        answer["checks"]["blobs"], "failing: folder missing",
        "{body}"
    );
    assert_eq!(answer["checks"]["database"], "ok", "{body}");
    assert!(
        !body.contains(&data.display().to_string()),
        "a path: {body}"
    );
    // Liveness is not readiness.
    assert_eq!(get(&format!("{http}/healthz")).await, (200, "ok".into()));
}

#[tokio::test]
async fn readyz_is_served_on_the_admin_listener_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _, http, admin) = OTTER.serve_admin(&data, &[]);
    for base in [&http, &admin] {
        let (status, body) = get(&format!("{base}/readyz")).await;
        assert_eq!(status, 200, "{base}: {body}");
        assert!(body.contains("\"ready\":true"), "{base}: {body}");
    }
}

#[tokio::test]
async fn readyz_names_the_broker_once_its_connection_is_down() {
    let broker = Mosquitto::start("allow_anonymous true\n").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("mqtt://{}", broker.addr);
    let (_server, _, http) = OTTER.serve(&data, &["--broker", &url, "--broker-secret", "s"]);
    let (status, body) = get(&format!("{http}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    drop(broker);
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = get(&format!("{http}/readyz")).await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["checks"]["broker"], "failing: disconnected",
        "{body}"
    );
    assert_eq!(answer["checks"]["blobs"], "ok", "{body}");
    assert_eq!(get(&format!("{http}/healthz")).await, (200, "ok".into()));
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id()) << 32
}
