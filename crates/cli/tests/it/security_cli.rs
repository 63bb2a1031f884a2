//! Security administration through the `otter` binary as an operator would run it: scoped tokens
//! (create, use, list, revoke), the audit log, secret rotation and download-key rotation.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

use crate::OTTER;

/// Runs `otter args --json` with `token` (the admin token from the data dir when `None`).
fn run(http: &str, data: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = OTTER.admin(http, data);
    cmd.args(args).arg("--json");
    if let Some(token) = token {
        cmd.env("OTTER_TOKEN", token);
    }
    cmd.output().unwrap()
}

fn ok(out: Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tokens_audit_and_rotation_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, _, http) = OTTER.serve(&data, &[]);
    let admin = |args: &[&str]| ok(run(&http, &data, None, args));

    admin(&[
        "product",
        "create",
        "--id",
        "a1Cli000001",
        "--dialect",
        "aliyun",
    ]);
    admin(&[
        "device",
        "create",
        "--product",
        "a1Cli000001",
        "--name",
        "dev1",
    ]);
    let read = admin(&["token", "create", "--name", "grafana", "--scope", "read"]);
    let read_token = read["secret"].as_str().unwrap().to_owned();
    assert_eq!(read["scope"], "read");

    // The read token lists, but cannot start a rollout: the CLI says why and exits non-zero.
    let listed = ok(run(
        &http,
        &data,
        Some(&read_token),
        &["device", "list", "--product", "a1Cli000001"],
    ));
    assert_eq!(listed[0]["name"], "dev1");
    let refused = run(
        &http,
        &data,
        Some(&read_token),
        &[
            "upgrade",
            "--product",
            "a1Cli000001",
            "--device",
            "dev1",
            "--version",
            "1.1.0",
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("403") && stderr.contains("needs operate"),
        "{stderr}"
    );

    // Secret rotation prints the new secret once; the audit log records who did what.
    let rotated = admin(&[
        "device",
        "rotate-secret",
        "--product",
        "a1Cli000001",
        "--name",
        "dev1",
    ]);
    assert_eq!(rotated["secret"].as_str().unwrap().len(), 32);
    let audit = admin(&["audit", "--limit", "10"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "device.rotate_secret", "{audit}");
    assert!(actions.contains(&"token.create"), "{actions:?}");

    // Revoked tokens stop working.
    let id = read["id"].as_i64().unwrap().to_string();
    let tokens = admin(&["token", "list"]);
    assert_eq!(tokens[0]["name"], "grafana");
    assert!(tokens[0]["revoked_at"].is_null());
    admin(&["token", "revoke", &id]);
    let after = run(
        &http,
        &data,
        Some(&read_token),
        &["device", "list", "--product", "a1Cli000001"],
    );
    assert!(String::from_utf8_lossy(&after.stderr).contains("401"));

    // Download-key rotation keeps the old key for its grace period.
    drop(server);
    let before = std::fs::read_to_string(data.join("download-key")).unwrap();
    let out = Command::new(OTTER)
        .args(["rotate-download-key", "--grace-secs", "3600"])
        .env("OTTER_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(data.join("download-key")).unwrap();
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_ne!(lines[0], before.trim());
    assert!(
        lines[1].starts_with(before.trim()),
        "the old key is kept: {after}"
    );
    // The server starts with the rotated keys.
    let _server = OTTER.serve(&data, &[]);
}
