//! Signed firmware end to end with the real binary: an operator generates a key and signs a
//! firmware offline (`otter firmware keygen`, `otter firmware sign`), registers the public key
//! (`otter product key add`) and uploads with the signature; the server refuses a bad
//! signature with a clear error, and an `otter agent --trusted-key` device installs the
//! signed upgrade. A server-side key (`otter serve --signing-key-dir`) signs uploads too, and
//! a rotated key is accepted by a device that only trusts the old key.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::OTTER;
use otter_testkit::Running;

const PRODUCT: &str = "TCSIGNED1";

struct Cli {
    http: String,
    data: PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        OTTER
            .admin(&self.http, &self.data)
            .args(args)
            .output()
            .unwrap()
    }

    /// An admin command with `--json`; must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "otter {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "otter {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A command that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "otter {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }
}

fn agent(mqtt: &str, secret: &str, state: &Path, installed: &Path, key: &Path) -> Running {
    Running(
        Command::new(OTTER)
            .args(["agent", "--broker", mqtt, "--dialect", "tencent"])
            .args(["--product", PRODUCT, "--device", "dev1"])
            .args(["--current-version", "1.0.0"])
            .arg("--secret")
            .arg(secret)
            .arg("--state-dir")
            .arg(state)
            .arg("--trusted-key")
            .arg(key)
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

fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Product, device and a running agent trusting `trusted`; returns the agent and the file its
/// install command writes.
fn device_with_agent(cli: &Cli, mqtt: &str, dir: &Path, trusted: &Path) -> (Running, PathBuf) {
    let device = cli.json(&["device", "create", "--product", PRODUCT, "--name", "dev1"]);
    let secret = device["secret"].as_str().unwrap().to_owned();
    let installed = dir.join("installed.bin");
    let agent = agent(mqtt, &secret, &dir.join("agent"), &installed, trusted);
    wait_until("the device online", 20, || {
        cli.json(&["device", "show", "--product", PRODUCT, "--name", "dev1"])["online"] == true
    });
    (agent, installed)
}

fn upgrade_to(cli: &Cli, version: &str) {
    cli.json(&[
        "upgrade",
        "--product",
        PRODUCT,
        "--device",
        "dev1",
        "--version",
        version,
    ]);
    wait_until("the upgrade to succeed", 60, || {
        let v = cli.json(&["device", "show", "--product", PRODUCT, "--name", "dev1"]);
        v["upgrade"]["state"] == "succeeded" && v["version"] == version
    });
}

#[test]
fn offline_signed_firmware_installs_and_bad_signatures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http) = OTTER.serve(&data, &[]);
    wait_until("the API", 20, || data.join("admin-token").exists());
    let cli = Cli { http, data };
    cli.json(&["product", "create", "--id", PRODUCT, "--dialect", "tencent"]);

    // The operator's machine: a key pair, and a foreign one.
    let key = dir.path().join("release.pem");
    let stranger = dir.path().join("stranger.pem");
    let printed = cli.ok(&["firmware", "keygen", "--out", s(&key)]);
    assert!(printed.contains("key id"), "{printed}");
    cli.ok(&["firmware", "keygen", "--out", s(&stranger)]);
    assert!(
        cli.fails(&["firmware", "keygen", "--out", s(&key)])
            .contains("--force")
    );
    let public = dir.path().join("release.pem.pub");
    let added = cli.json(&[
        "product",
        "key",
        "add",
        "--product",
        PRODUCT,
        "--public-key",
        s(&public),
    ]);
    let key_id = added["key_id"].as_str().unwrap().to_owned();
    // A second key must be announced by the first.
    let refused = cli.fails(&[
        "product",
        "key",
        "add",
        "--product",
        PRODUCT,
        "--public-key",
        s(&dir.path().join("stranger.pem.pub")),
    ]);
    assert!(refused.contains("must be announced"), "{refused}");

    let image: Vec<u8> = (0..200_000).map(|i| (i * 13 % 251) as u8).collect();
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, &image).unwrap();
    let sign = |with: &Path, out: &Path| {
        cli.ok(&[
            "firmware",
            "sign",
            "--key",
            s(with),
            "--product",
            PRODUCT,
            "--version",
            "2.0.0",
            "--expires",
            "30d",
            "--out",
            s(out),
            s(&fw),
        ]);
    };
    let good = dir.path().join("good.json");
    sign(&key, &good);
    let doc: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    assert_eq!(doc["key"], key_id.as_str());
    assert_eq!(doc["size"], 200_000);

    // Signed by a key the product does not have.
    let foreign = dir.path().join("foreign.json");
    sign(&stranger, &foreign);
    let upload = |sig: &Path| {
        [
            "firmware",
            "upload",
            "--product",
            PRODUCT,
            "--version",
            "2.0.0",
            "--signature",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([s(sig).to_owned(), s(&fw).to_owned()])
        .collect::<Vec<_>>()
    };
    let args = upload(&foreign);
    let err = cli.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("400") && err.contains("not a registered signing key"),
        "{err}"
    );
    // A tampered document (expiry stretched): the signature no longer verifies.
    let mut tampered = doc.clone();
    tampered["expires"] = (doc["expires"].as_u64().unwrap() + 1000).into();
    let tampered_path = dir.path().join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).unwrap();
    let args = upload(&tampered_path);
    let err = cli.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("signature refused: the signature does not verify"),
        "{err}"
    );
    assert_eq!(
        cli.json(&["firmware", "list", "--product", PRODUCT]),
        Value::Array(vec![])
    );

    let args = upload(&good);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("--json");
    let out = cli.run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uploaded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(uploaded["signature"]["key_id"], key_id.as_str());

    let (_agent, installed) = device_with_agent(&cli, &mqtt, dir.path(), &public);
    upgrade_to(&cli, "2.0.0");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        image,
        "installed the signed image"
    );
}

#[test]
fn server_side_key_signs_and_a_rotated_key_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (_server, mqtt, http) = OTTER.serve(&data, &["--signing-key-dir", s(&keys)]);
    wait_until("the API", 20, || data.join("admin-token").exists());
    let cli = Cli { http, data };
    cli.json(&["product", "create", "--id", PRODUCT, "--dialect", "tencent"]);

    // An offline root key the devices trust, and a server key announced by it.
    let root = dir.path().join("root.pem");
    cli.ok(&["firmware", "keygen", "--out", s(&root)]);
    let root_pub = dir.path().join("root.pem.pub");
    cli.json(&[
        "product",
        "key",
        "add",
        "--product",
        PRODUCT,
        "--public-key",
        s(&root_pub),
    ]);
    let server_key = keys.join(format!("{PRODUCT}.pem"));
    cli.ok(&["firmware", "keygen", "--out", s(&server_key)]);
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, b"version three").unwrap();
    let upload = [
        "firmware",
        "upload",
        "--product",
        PRODUCT,
        "--version",
        "3.0.0",
        s(&fw),
    ];
    // Not yet registered: the upload is refused rather than signed with an unknown key.
    assert!(cli.fails(&upload).contains("not registered"));
    let added = cli.json(&[
        "product",
        "key",
        "add",
        "--product",
        PRODUCT,
        "--public-key",
        s(&server_key),
        "--announce-with",
        s(&root),
    ]);
    assert!(added["signed_by"].is_string());
    let uploaded = cli.json(&upload);
    assert_eq!(uploaded["signature"]["key_id"], added["key_id"]);

    let (_agent, installed) = device_with_agent(&cli, &mqtt, dir.path(), &root_pub);
    upgrade_to(&cli, "3.0.0");
    assert_eq!(std::fs::read(&installed).unwrap(), b"version three");
}
