//! The `otter` binary driven as a user would: `otter serve`, the admin commands with `--json`, and
//! `otter agent` upgrading 1.0.0 → 1.1.0 for each dialect, checked with `otter device show`.

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::OTTER;
use otter_testkit::Running;

/// `otter serve` on free ports over `data_dir`; returns it, its MQTT address and HTTP URL.
fn serve(data_dir: &Path) -> (Running, String, String) {
    OTTER.serve(data_dir, &[])
}

fn upgrade_with_agent(dialect: &str, product: &str) {
    upgrade_with_agent_from(dialect, product, "1.0.0", "1.1.0");
}

/// `otter agent` on `from` upgrades to `to` (versions are opaque strings to the server unless
/// the product's scheme orders them).
fn upgrade_with_agent_from(dialect: &str, product: &str, from: &str, to: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http) = serve(&data);
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    assert_eq!(
        token.trim().len(),
        64,
        "a generated admin token is written to the data dir"
    );

    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", product, "--dialect", dialect],
    );
    let device = OTTER.json(
        &http,
        &data,
        &["device", "create", "--product", product, "--name", "dev1"],
    );
    let secret = device["secret"].as_str().unwrap().to_owned();
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, vec![7u8; 150_000]).unwrap();
    let fw = OTTER.json(
        &http,
        &data,
        &[
            "firmware",
            "upload",
            "--product",
            product,
            "--version",
            to,
            image.to_str().unwrap(),
        ],
    );
    assert_eq!(fw["size"], 150_000);
    assert_eq!(fw["sha256"].as_str().unwrap().len(), 64);
    let listed = OTTER.json(&http, &data, &["firmware", "list", "--product", product]);
    assert_eq!(listed[0]["version"], to);

    let installed = dir.path().join("installed.bin");
    let _agent = Running(
        Command::new(OTTER)
            .args([
                "agent",
                "--broker",
                &mqtt,
                "--dialect",
                dialect,
                "--product",
                product,
                "--device",
                "dev1",
                "--current-version",
                from,
            ])
            .arg("--secret")
            .arg(&secret)
            .arg("--state-dir")
            .arg(dir.path().join("agent"))
            .arg("--install-command")
            .arg(format!(
                "cp \"$OTTER_FIRMWARE_PATH\" {}",
                installed.display()
            ))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&http, &data, product, |v| {
        v["version"] == from && v["online"] == true
    });
    let campaign = OTTER.json(
        &http,
        &data,
        &[
            "upgrade",
            "--product",
            product,
            "--device",
            "dev1",
            "--version",
            to,
        ],
    );
    assert_eq!(campaign["upgrades"][0]["device"], "dev1");
    let shown = wait_for(&http, &data, product, |v| {
        v["upgrade"]["state"] == "succeeded"
    });
    assert_eq!(shown["version"], to);
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        vec![7u8; 150_000],
        "the install command got the verified image"
    );
}

fn wait_for(http: &str, data: &Path, product: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = OTTER.json(
            http,
            data,
            &["device", "show", "--product", product, "--name", "dev1"],
        );
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "device never got there: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tencent_agent_upgrades_through_the_cli() {
    upgrade_with_agent("tencent", "TCPRODUCT1");
}

#[test]
fn aliyun_agent_upgrades_through_the_cli() {
    upgrade_with_agent("aliyun", "a1B2c3D4e5F");
}

#[test]
fn enos_agent_upgrades_through_the_cli() {
    upgrade_with_agent("enos", "enosPK1");
}

/// The Alibaba seed's own example: a device on `1-45-345a` upgrades to `res-1.2.5`.
#[test]
fn aliyun_seed_versions_upgrade_through_the_cli() {
    upgrade_with_agent_from("aliyun", "a1SeedAli01", "1-45-345a", "res-1.2.5");
}

/// The EnOS seed's own example: a device reporting `initVersion` upgrades to `2.1.2`.
#[test]
fn enos_seed_versions_upgrade_through_the_cli() {
    upgrade_with_agent_from("enos", "enosSeedPK", "initVersion", "2.1.2");
}

#[test]
fn bad_token_and_unreachable_server_give_clear_errors() {
    let out = Command::new(OTTER)
        .args(["product", "list", "--server", "http://127.0.0.1:9"])
        .env("OTTER_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the server"));

    let dir = tempfile::tempdir().unwrap();
    let (_server, _, http) = serve(dir.path());
    let out = Command::new(OTTER)
        .args(["product", "list", "--server", &http])
        .env("OTTER_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn campaign_commands_drive_a_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _mqtt, http) = serve(&data);
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", "CLIPROD", "--dialect", "enos"],
    );
    for name in ["a", "b", "c"] {
        OTTER.json(
            &http,
            &data,
            &["device", "create", "--product", "CLIPROD", "--name", name],
        );
    }
    let tags = OTTER.json(
        &http,
        &data,
        &[
            "device",
            "tag",
            "--product",
            "CLIPROD",
            "--name",
            "a",
            "--add",
            "lab",
        ],
    );
    assert_eq!(tags, serde_json::json!(["lab"]));
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, b"firmware").unwrap();
    OTTER.json(
        &http,
        &data,
        &[
            "firmware",
            "upload",
            "--product",
            "CLIPROD",
            "--version",
            "2.0",
            image.to_str().unwrap(),
        ],
    );

    // Not verified yet: refused with the reason.
    let out = Command::new(OTTER)
        .args([
            "campaign",
            "create",
            "--product",
            "CLIPROD",
            "--version",
            "2.0",
            "--device",
            "a",
            "--server",
            &http,
        ])
        .env("OTTER_DATA_DIR", &data)
        .env_remove("OTTER_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verify"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let verify = OTTER.json(
        &http,
        &data,
        &[
            "firmware",
            "verify",
            "--product",
            "CLIPROD",
            "--version",
            "2.0",
            "--devices",
            "a",
        ],
    );
    assert_eq!(verify["kind"], "verification");
    assert_eq!(
        OTTER.json(&http, &data, &["firmware", "list", "--product", "CLIPROD"])[0]["state"],
        "verifying"
    );

    let list_file = dir.path().join("devices.csv");
    std::fs::write(&list_file, "name,site\nb,x\nc,y\n").unwrap();
    let args = [
        "campaign",
        "create",
        "--product",
        "CLIPROD",
        "--version",
        "2.0",
        "--devices-file",
        list_file.to_str().unwrap(),
        "--skip-verification",
        "--rate",
        "1",
        "--waves",
        "50,100",
        "--gate",
        "0",
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let preview = OTTER.json(&http, &data, &dry);
    assert_eq!(preview["dry_run"], true);
    assert_eq!(
        preview["targeting"]["selected"],
        serde_json::json!(["b", "c"])
    );
    assert_eq!(preview["waves"], serde_json::json!([1, 1]));
    let created = OTTER.json(&http, &data, &args);
    let id = created["id"].as_i64().unwrap().to_string();
    assert_eq!(created["skip_verification"], true);

    let listed = OTTER.json(&http, &data, &["campaign", "list", "--product", "CLIPROD"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let shown = OTTER.json(&http, &data, &["campaign", "show", &id]);
    assert_eq!(shown["total"], 2);
    assert_eq!(shown["devices"].as_array().unwrap().len(), 2);
    assert_eq!(
        OTTER.json(&http, &data, &["campaign", "pause", &id])["state"],
        "paused"
    );
    assert_eq!(
        OTTER.json(&http, &data, &["campaign", "resume", &id])["state"],
        "running"
    );
    let canceled = OTTER.json(&http, &data, &["campaign", "cancel", &id]);
    assert_eq!(canceled["state"], "canceled");
    assert_eq!(canceled["counts"]["canceled"], 2);
    let history = OTTER.json(
        &http,
        &data,
        &["device", "history", "--product", "CLIPROD", "--name", "b"],
    );
    assert_eq!(history[0]["state"], "canceled");
}

/// `otter agent` on `version`, reporting only (its install command never runs here).
fn idle_agent(
    mqtt: &str,
    product: &str,
    device: &str,
    secret: &str,
    version: &str,
    state: &Path,
) -> Running {
    Running(
        Command::new(OTTER)
            .args(["agent", "--broker", mqtt, "--dialect", "tencent"])
            .args([
                "--product",
                product,
                "--device",
                device,
                "--current-version",
                version,
            ])
            .arg("--secret")
            .arg(secret)
            .arg("--state-dir")
            .arg(state)
            .args(["--install-command", "false"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A semver device on 2.0.0 in a campaign to 1.1.0 without --allow-downgrade is skipped, and
/// the reason shows in the dry run, `otter upgrade`, `campaign show --json` and `device show --json`.
#[test]
fn a_newer_device_is_skipped_with_its_reason_everywhere() {
    const P: &str = "TCSKIP0001";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http) = serve(&data);
    let shown = OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", P, "--dialect", "tencent"],
    );
    assert_eq!(shown["version_scheme"], "semver");
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, vec![3u8; 10_000]).unwrap();
    OTTER.json(
        &http,
        &data,
        &[
            "firmware",
            "upload",
            "--product",
            P,
            "--version",
            "1.1.0",
            image.to_str().unwrap(),
        ],
    );
    let mut agents = Vec::new();
    for (name, version) in [("dev1", "1.0.0"), ("dev2", "2.0.0")] {
        let device = OTTER.json(
            &http,
            &data,
            &["device", "create", "--product", P, "--name", name],
        );
        let secret = device["secret"].as_str().unwrap().to_owned();
        agents.push(idle_agent(
            &mqtt,
            P,
            name,
            &secret,
            version,
            &dir.path().join(name),
        ));
    }
    for (name, version) in [("dev1", "1.0.0"), ("dev2", "2.0.0")] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while OTTER.json(
            &http,
            &data,
            &["device", "show", "--product", P, "--name", name],
        )["version"]
            != version
        {
            assert!(Instant::now() < deadline, "{name} never reported {version}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let create = [
        "campaign",
        "create",
        "--product",
        P,
        "--version",
        "1.1.0",
        "--device",
        "dev1",
        "--device",
        "dev2",
        "--skip-verification",
    ];

    let dry = OTTER.json(&http, &data, &[&create[..], &["--dry-run"]].concat());
    let skipped = &dry["targeting"]["skipped"][0];
    assert_eq!(
        (&skipped["device"], &skipped["code"]),
        (&json!("dev2"), &json!("newer_than_target")),
        "{dry}"
    );
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .starts_with("runs 2.0.0, newer than the target 1.1.0")
    );

    // `otter upgrade` of that device says at once that it will not be pushed, and why.
    let out = Command::new(OTTER)
        .args([
            "upgrade",
            "--product",
            P,
            "--device",
            "dev2",
            "--version",
            "1.1.0",
        ])
        .env("OTTER_SERVER", &http)
        .env("OTTER_DATA_DIR", &data)
        .env_remove("OTTER_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("dev2: runs 2.0.0, newer than the target 1.1.0"),
        "{stderr}"
    );

    let created = OTTER.json(&http, &data, &create);
    let id = created["id"].to_string();
    let shown = OTTER.json(&http, &data, &["campaign", "show", &id]);
    let skipped: Vec<&Value> = shown["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "skipped")
        .collect();
    assert_eq!(
        skipped,
        [&json!({ "state": "skipped", "reason": "newer_than_target", "devices": 1 })],
        "{shown}"
    );
    assert_eq!(shown["counts"]["skipped"], 1);
    let device = OTTER.json(
        &http,
        &data,
        &["device", "show", "--product", P, "--name", "dev2"],
    );
    assert_eq!(
        (&device["upgrade"]["state"], &device["upgrade"]["reason"]),
        (&json!("skipped"), &json!("newer_than_target")),
        "{device}"
    );
    assert!(
        device["upgrade"]["result_msg"]
            .as_str()
            .unwrap()
            .starts_with("runs 2.0.0")
    );
    drop(agents);
}

/// `otter agent --health-report-command` sends the counters the command prints; the server
/// keeps their totals (shown in `device show`) for health gates.
#[test]
fn the_agent_sends_health_reports_from_its_command() {
    const P: &str = "TCHEALTHAG";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http) = serve(&data);
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", P, "--dialect", "tencent"],
    );
    let device = OTTER.json(
        &http,
        &data,
        &["device", "create", "--product", P, "--name", "dev1"],
    );
    let secret = device["secret"].as_str().unwrap().to_owned();
    let _agent = Running(
        Command::new(OTTER)
            .args(["agent", "--broker", &mqtt, "--dialect", "tencent"])
            .args([
                "--product",
                P,
                "--device",
                "dev1",
                "--current-version",
                "1.0.0",
            ])
            .arg("--secret")
            .arg(&secret)
            .arg("--state-dir")
            .arg(dir.path().join("agent"))
            .args([
                "--health-report-command",
                "printf 'crashes 2\\nreboots=1\\n'",
            ])
            .args(["--health-report-secs", "1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = OTTER.json(
            &http,
            &data,
            &["device", "show", "--product", P, "--name", "dev1"],
        );
        let crashes = v["health_counters"]["crashes"].as_i64().unwrap_or(0);
        if crashes >= 4 {
            // Two reports at least: increments add up.
            assert!(
                v["health_counters"]["reboots"].as_i64().unwrap() >= 2,
                "{v}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no health report arrived: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 21: a second `otter serve` on the same data folder refuses at once, naming the first,
/// and the first keeps serving its fleet.
#[test]
fn a_second_serve_on_the_same_data_dir_refuses_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (first, _, http) = serve(&data);
    let second = Command::new(OTTER)
        .args([
            "serve",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("OTTER_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second serve started: {stderr}"
    );
    assert!(
        stderr.contains("in use by another `otter serve`")
            && stderr.contains(&format!("process {}", first.0.id())),
        "{stderr}"
    );
    // The first still answers its operators.
    OTTER.json(
        &http,
        &data,
        &[
            "product",
            "create",
            "--id",
            "a1Owner0002",
            "--dialect",
            "aliyun",
        ],
    );
    let products = OTTER.json(&http, &data, &["product", "list"]);
    assert_eq!(products[0]["id"], "a1Owner0002", "{products}");
}

/// Issue 21: logs written to a pipe or file carry no colour codes, and `--log-format json`
/// writes one JSON object per line for log collectors.
#[test]
fn logs_are_plain_off_a_terminal_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (_text, _, _, log) = OTTER.serve_logged(&dir.path().join("text"), &[]);
    assert!(!log.is_empty(), "no start-up log");
    assert!(
        log.iter().all(|l| !l.contains('\x1b')),
        "colour codes: {log:?}"
    );
    let (_json, _, _, log) =
        OTTER.serve_logged(&dir.path().join("json"), &["--log-format", "json"]);
    assert!(!log.is_empty(), "no start-up log");
    for line in &log {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

/// Issue 21: `otter backup` taken during a campaign, while the server runs, restores to a server
/// whose devices, firmware and campaigns are what the original had at the backup's time.
#[test]
fn a_backup_taken_during_a_campaign_restores_the_fleet_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _, http) = serve(&data);
    let run = |http: &str, data: &Path, args: &[&str]| OTTER.json(http, data, args);
    run(
        &http,
        &data,
        &[
            "product",
            "create",
            "--id",
            "a1Backup001",
            "--dialect",
            "aliyun",
        ],
    );
    for name in ["d1", "d2", "d3"] {
        run(
            &http,
            &data,
            &[
                "device",
                "create",
                "--product",
                "a1Backup001",
                "--name",
                name,
            ],
        );
    }
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, vec![42u8; 300_000]).unwrap();
    let fw = run(
        &http,
        &data,
        &[
            "firmware",
            "upload",
            "--product",
            "a1Backup001",
            "--version",
            "2.0",
            image.to_str().unwrap(),
        ],
    );
    // The devices are offline: the campaign stays live, its devices pending.
    run(
        &http,
        &data,
        &[
            "campaign",
            "create",
            "--product",
            "a1Backup001",
            "--version",
            "2.0",
            "--device",
            "d1",
            "--device",
            "d2",
            "--skip-verification",
        ],
    );
    let list = |http: &str, data: &Path| {
        (
            run(http, data, &["device", "list", "--product", "a1Backup001"]),
            run(
                http,
                data,
                &["firmware", "list", "--product", "a1Backup001"],
            ),
            run(
                http,
                data,
                &["campaign", "list", "--product", "a1Backup001"],
            ),
        )
    };
    let at_backup = list(&http, &data);

    let backup = dir.path().join("backup");
    let out = Command::new(OTTER)
        .args(["backup", "--to"])
        .arg(&backup)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 blobs"),
        "{out:?}"
    );
    // Changes after the backup are not in it.
    run(
        &http,
        &data,
        &[
            "device",
            "create",
            "--product",
            "a1Backup001",
            "--name",
            "late",
        ],
    );

    // Restore as documented: a server on the backup folder.
    let (_restored, _, restored_http) = serve(&backup);
    assert_eq!(list(&restored_http, &backup), at_backup);
    // The image came along.
    let shown = run(
        &restored_http,
        &backup,
        &["firmware", "list", "--product", "a1Backup001"],
    );
    assert_eq!(shown[0]["sha256"], fw["sha256"], "{shown}");
    assert!(
        backup
            .join("blobs/sha256")
            .join(fw["sha256"].as_str().unwrap())
            .is_file()
    );
}
