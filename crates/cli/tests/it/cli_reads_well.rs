//! The CLI as people read it: device lists with versions and filters, times in words, a closed
//! pipe that ends quietly, `OTTER_SERVER` without a scheme, the token found through
//! `--data-dir`, weak secrets refused with the limit stated.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::OTTER;

#[test]
fn device_lists_filter_and_the_cli_copes_with_what_people_type() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _mqtt, http) = OTTER.serve(&data, &[]);
    let product = "a1ReadWell1";
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", product, "--dialect", "aliyun"],
    );
    for name in ["kitchen-1", "kitchen-2", "garage-1"] {
        OTTER.json(
            &http,
            &data,
            &["device", "create", "--product", product, "--name", name],
        );
    }
    OTTER.json(
        &http,
        &data,
        &[
            "device",
            "tag",
            "--product",
            product,
            "--name",
            "kitchen-2",
            "--add",
            "floor=1",
        ],
    );

    // Filters: by name, tag, online state, version.
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["device", "list", "--product", product];
        all.extend_from_slice(args);
        OTTER
            .json(&http, &data, &all)
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&[]), ["garage-1", "kitchen-1", "kitchen-2"]);
    assert_eq!(
        names(&["--name-contains", "kitchen"]),
        ["kitchen-1", "kitchen-2"]
    );
    assert_eq!(names(&["--tag", "floor=1"]), ["kitchen-2"]);
    assert_eq!(names(&["--online", "yes"]), Vec::<String>::new());
    assert_eq!(
        names(&["--version", "none", "--name-contains", "garage"]),
        ["garage-1"]
    );
    assert_eq!(names(&["--version", "9.9"]), Vec::<String>::new());
    let listed = OTTER.json(
        &http,
        &data,
        &["device", "list", "--product", product, "--tag", "floor=1"],
    );
    assert_eq!(listed[0]["tags"], serde_json::json!(["floor=1"]));
    assert_eq!(listed[0]["version"], serde_json::Value::Null);

    // Text: a version column, words for online, times in words.
    let out = OTTER
        .admin(&http, &data)
        .args(["device", "list", "--product", product])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.contains("VERSION") && text.contains("offline") && text.contains("never"),
        "{text}"
    );
    let out = OTTER.admin(&http, &data).args(["audit"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(" UTC"), "audit times in words: {text}");

    // A reader that stops early: the CLI ends quietly, without a panic.
    let mut child = OTTER
        .admin(&http, &data)
        .args(["audit", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // `| head -0`
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        status.success(),
        "a closed pipe is not an error: {status:?} {stderr}"
    );

    // OTTER_SERVER without a scheme, and the token found through --data-dir (no OTTER_DATA_DIR).
    let bare = http.trim_start_matches("http://");
    let out = Command::new(crate::OTTER)
        .args(["product", "list", "--json", "--data-dir"])
        .arg(&data)
        .env("OTTER_SERVER", bare)
        .env_remove("OTTER_TOKEN")
        .env_remove("OTTER_DATA_DIR")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let products: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(products[0]["id"], product);
    // Without it, the error says how to point at the token.
    let out = Command::new(crate::OTTER)
        .args(["product", "list", "--server", &http])
        .env_remove("OTTER_TOKEN")
        .env_remove("OTTER_DATA_DIR")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--data-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A scheme that is not HTTP is named.
    let out = OTTER
        .admin(&http, &data)
        .args(["product", "list", "--server", "mqtt://127.0.0.1:1883"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be http or https"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A 5-character device secret is refused, with the limit.
    let out = OTTER
        .admin(&http, &data)
        .args([
            "device",
            "create",
            "--product",
            product,
            "--name",
            "weak",
            "--secret",
            "12345",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("16 to 256 characters, not 5"), "{err}");
}
