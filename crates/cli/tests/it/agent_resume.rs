//! `otter agent` killed with SIGKILL in the middle of a slow download and started again resumes
//! from its checkpoint: the bytes fetched after the restart are the rest of the image, not all
//! of it. The server is `otter serve`; downloads go through a bandwidth-capped fault proxy.

use otter_faultproxy::{Faults, Proxy};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::OTTER;
use otter_testkit::{Running, free_addr};

const PRODUCT: &str = "TCRESUME1";
const SIZE: usize = 2_000_000;
/// Bytes per second through the proxy while the agent is to be killed.
const SLOW: u64 = 200_000;

/// `otter serve` on `http`, its download links pointing at `public`; returns the MQTT address.
fn serve(data: &Path, http: &str, public: &str) -> (Running, String) {
    let public = format!("http://{public}");
    let (server, mqtt, _) = OTTER.serve(data, &["--http-listen", http, "--public-url", &public]);
    (server, mqtt)
}

/// The admin command `otter args --json` against the server on `http` (an address).
fn otter(http: &str, data: &Path, args: &[&str]) -> Value {
    OTTER.json(&format!("http://{http}"), data, args)
}

fn agent(mqtt: &str, secret: &str, state: &Path, installed: &Path) -> Running {
    Running(
        Command::new(OTTER)
            .args(["agent", "--broker", mqtt, "--dialect", "tencent"])
            .args(["--product", PRODUCT, "--device", "dev1"])
            .args(["--current-version", "1.0.0", "--retry-backoff-ms", "100"])
            .arg("--secret")
            .arg(secret)
            .arg("--state-dir")
            .arg(state)
            .arg("--install-command")
            .arg(format!(
                "cp \"$OTTER_FIRMWARE_PATH\" '{}'",
                installed.display()
            ))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Bytes the agent's checkpoint says are safely on disk.
fn checkpointed(state: &Path) -> u64 {
    std::fs::read(state.join("downloads/checkpoint.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["bytes_done"].as_u64())
        .unwrap_or(0)
}

fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_download_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = free_addr();
    let faults = Faults {
        bandwidth: Some(SLOW),
        ..Faults::default()
    };
    let proxy = Proxy::start(http.parse().unwrap(), faults).await.unwrap();
    let (_server, mqtt) = serve(&data, &http, &proxy.addr().to_string());
    wait_until("the API", 20, || data.join("admin-token").exists());

    otter(
        &http,
        &data,
        &["product", "create", "--id", PRODUCT, "--dialect", "tencent"],
    );
    let device = otter(
        &http,
        &data,
        &["device", "create", "--product", PRODUCT, "--name", "dev1"],
    );
    let secret = device["secret"].as_str().unwrap().to_owned();
    let image: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, &image).unwrap();
    let fw = fw.to_str().unwrap();
    otter(
        &http,
        &data,
        &[
            "firmware",
            "upload",
            "--product",
            PRODUCT,
            "--version",
            "1.1.0",
            fw,
        ],
    );

    let state: PathBuf = dir.path().join("agent");
    let installed = dir.path().join("installed.bin");
    let mut first = agent(&mqtt, &secret, &state, &installed);
    let show = || {
        otter(
            &http,
            &data,
            &["device", "show", "--product", PRODUCT, "--name", "dev1"],
        )
    };
    wait_until("the device online", 20, || show()["online"] == true);
    otter(
        &http,
        &data,
        &[
            "upgrade",
            "--product",
            PRODUCT,
            "--device",
            "dev1",
            "--version",
            "1.1.0",
        ],
    );

    // Kill it a good way into the (slow) download.
    wait_until("a checkpoint", 30, || checkpointed(&state) >= 600_000);
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    // Let the proxy notice the dead connection before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let saved = checkpointed(&state);
    let before = proxy.stats().bytes_down;
    assert!(saved < SIZE as u64, "killed before the end");

    proxy.set_faults(Faults::default());
    let _second = agent(&mqtt, &secret, &state, &installed);
    wait_until("the upgrade to succeed", 60, || {
        show()["upgrade"]["state"] == "succeeded"
    });
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        image,
        "installed the verified image"
    );

    let after = proxy.stats().bytes_down - before;
    let rest = SIZE as u64 - saved;
    // The rest of the image plus response heads, not the whole image again.
    assert!(
        after <= rest + 16 * 1024,
        "fetched {after} bytes after the restart; {rest} were missing"
    );
    assert!(
        proxy.stats().bytes_down <= SIZE as u64 + 300_000,
        "total {} for a {SIZE}-byte image",
        proxy.stats().bytes_down
    );
    assert_eq!(show()["version"], "1.1.0");
}
