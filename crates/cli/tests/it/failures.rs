//! Failures shown as they are, through the binary: a device that failed and waits for its retry
//! shows the failure (code, its meaning, the device's text) and when the retry is due in
//! `campaign show --json`; a campaign that ends with failures says so; `campaign watch` ends on
//! exactly what `campaign show` prints.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::OTTER;
use otter_testkit::Running;

/// `otter campaign show ID --json` until `check` holds (deadline: the planner retries a minute
/// after a release, so a retried failure needs a little over a minute).
fn show_until(
    http: &str,
    data: &Path,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let shown = OTTER.json(http, data, &["campaign", "show", id]);
        if check(&shown) {
            return shown;
        }
        assert!(Instant::now() < deadline, "never {what}: {shown:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_failed_device_shows_its_failure_while_it_waits_for_a_retry_and_watch_ends_on_show() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http) = OTTER.serve(&data, &[]);
    let product = "FAILPROD01";
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", product, "--dialect", "tencent"],
    );
    let device = OTTER.json(
        &http,
        &data,
        &["device", "create", "--product", product, "--name", "dev1"],
    );
    let secret = device["secret"].as_str().unwrap().to_owned();
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, vec![3u8; 4096]).unwrap();
    OTTER.json(
        &http,
        &data,
        &[
            "firmware",
            "upload",
            "--product",
            product,
            "--version",
            "2.0",
            image.to_str().unwrap(),
        ],
    );
    // The agent downloads and verifies the image, then its install command fails.
    let _agent = Running(
        Command::new(crate::OTTER)
            .args(["agent", "--broker", &mqtt, "--dialect", "tencent"])
            .args([
                "--product",
                product,
                "--device",
                "dev1",
                "--current-version",
                "1.0",
            ])
            .arg("--secret")
            .arg(&secret)
            .arg("--state-dir")
            .arg(dir.path().join("agent"))
            .args(["--install-command", "echo flash is worn out >&2; exit 3"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while OTTER.json(
        &http,
        &data,
        &["device", "show", "--product", product, "--name", "dev1"],
    )["online"]
        != true
    {
        assert!(Instant::now() < deadline, "the agent never came online");
        std::thread::sleep(Duration::from_millis(200));
    }
    let created = OTTER.json(
        &http,
        &data,
        &[
            "campaign",
            "create",
            "--product",
            product,
            "--version",
            "2.0",
            "--device",
            "dev1",
            "--skip-verification",
            "--retries",
            "1",
        ],
    );
    let id = created["id"].as_i64().unwrap().to_string();

    // Failed once: queued again, and the failure is still there to read.
    let shown = show_until(&http, &data, &id, "queued for a retry", |v| {
        // `show` reads the campaign, then its devices: both must have seen the requeue.
        v["devices"][0]["reason"] == "retrying" && v["retrying"] == 1
    });
    let dev = &shown["devices"][0];
    assert_eq!(dev["state"], "queued", "{shown:#}");
    assert_eq!(
        dev["result_code"], -5,
        "Tencent's code for a failed update: {shown:#}"
    );
    assert_eq!(dev["result_text"], "update failed on the device");
    assert!(
        dev["result_msg"].as_str().unwrap_or("").contains("exit"),
        "the device's own text: {shown:#}"
    );
    let released = dev["released_at"].as_i64().unwrap();
    assert_eq!(dev["retry_not_before"], released + 60_000);
    assert_eq!(shown["retrying"], 1);
    assert_eq!(shown["outcome"], Value::Null, "still live");
    assert!(
        shown["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["state"] == "queued" && r["reason"] == "retrying"),
        "{shown:#}"
    );
    let text = OTTER
        .admin(&http, &data)
        .args(["campaign", "show", &id])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("1 of them queued for a retry"), "{text}");
    assert!(
        text.contains("code -5: update failed on the device"),
        "{text}"
    );
    assert!(text.contains("retry not before"), "{text}");

    // `watch --json` follows it to its end: the retry fails too, for good.
    let watch = OTTER
        .admin(&http, &data)
        .args(["campaign", "watch", &id, "--json", "--interval-ms", "200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let watched = watch.wait_with_output().unwrap();
    assert!(watched.status.success());
    let lines: Vec<Value> = String::from_utf8(watched.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
        .collect();
    let last = lines.last().expect("watch printed the campaign");
    let mut shown = OTTER.json(&http, &data, &["campaign", "show", &id]);
    let devices = shown.as_object_mut().unwrap().remove("devices").unwrap();
    assert_eq!(
        *last, shown,
        "watch's last frame is what campaign show says"
    );
    assert_eq!(shown["state"], "finished");
    assert_eq!(shown["outcome"], "finished_with_failures");
    assert_eq!(shown["failed"], 1);
    assert_eq!(devices[0]["state"], "failed");
    assert_eq!(devices[0]["attempts"], 2);
    assert_eq!(devices[0]["result_text"], "update failed on the device");

    // In text, watch's last words are campaign show's summary.
    let watched = OTTER
        .admin(&http, &data)
        .args(["campaign", "watch", &id])
        .output()
        .unwrap();
    let watched = String::from_utf8(watched.stdout).unwrap();
    let show = OTTER
        .admin(&http, &data)
        .args(["campaign", "show", &id])
        .output()
        .unwrap();
    let show = String::from_utf8(show.stdout).unwrap();
    let summary = show.split("\n\n").next().unwrap();
    assert_eq!(
        watched.trim_end(),
        summary,
        "watch:\n{watched}\nshow:\n{show}"
    );
    assert!(summary.contains("finished with failures"), "{summary}");
    let list = OTTER
        .admin(&http, &data)
        .args(["campaign", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains("finished with failures") && list.contains("0/1"),
        "{list}"
    );
}
