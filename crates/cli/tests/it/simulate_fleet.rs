//! `otter simulate --devices 1000` (mixed dialects, real downloads) completes a campaign per
//! product against a real `otter serve`, both run as the binaries a user runs.

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::OTTER;
use otter_testkit::{Running, free_addr};

const TOKEN: &str = "simulate-test-token";
const DEVICES: usize = 1000;

async fn api(
    http: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Option<Value> {
    let mut req = reqwest::Client::new()
        .request(method, format!("{http}/api/v1{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.ok()?;
    // Not yet (the fleet registers its products as it starts): the caller polls again.
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_simulated_devices_complete_a_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let _server = Running(
        Command::new(OTTER)
            .args([
                "serve",
                "--mqtt-listen",
                &mqtt,
                "--http-listen",
                &http,
                "--data-dir",
            ])
            .arg(dir.path())
            .env("OTTER_TOKEN", TOKEN)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = format!("http://{http}");
    wait_for("the server", Duration::from_secs(20), async || {
        reqwest::get(format!("{http}/healthz")).await.is_ok()
    })
    .await;
    let _fleet = Running(
        Command::new(OTTER)
            .args([
                "simulate",
                "--devices",
                &DEVICES.to_string(),
                "--broker",
                &mqtt,
                "--server",
                &http,
                "--download",
                "--step-delay-ms",
                "20",
            ])
            .env("OTTER_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let products = ["SIM-tencent", "SIM-aliyun", "SIM-enos"];
    let online = async |p: &str| -> usize {
        let devices = api(
            &http,
            reqwest::Method::GET,
            &format!("/products/{p}/devices?limit=1000"),
            None,
        )
        .await
        .unwrap_or_default();
        devices
            .as_array()
            .map(|d| d.iter().filter(|d| d["online"] == true).count())
            .unwrap_or(0)
    };
    wait_for(
        "every simulated device online",
        Duration::from_secs(120),
        async || {
            let mut total = 0;
            for p in products {
                total += online(p).await;
            }
            total == DEVICES
        },
    )
    .await;

    let mut campaigns = Vec::new();
    for p in products {
        let upload = reqwest::Client::new()
            .post(format!("{http}/api/v1/products/{p}/firmware?version=1.1.0"))
            .bearer_auth(TOKEN)
            .body(vec![5u8; 64 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status().as_u16(), 201);
        let body = json!({ "product": p, "version": "1.1.0", "skip_verification": true, "selection": { "versions": ["1.0.0"] }, "strategy": { "waves": [10, 100], "gate_percent": 95 } });
        let created = api(&http, reqwest::Method::POST, "/campaigns", Some(body))
            .await
            .unwrap();
        campaigns.push((
            created["id"].as_i64().unwrap(),
            created["total"].as_i64().unwrap(),
        ));
    }
    assert_eq!(
        campaigns.iter().map(|(_, n)| n).sum::<i64>(),
        DEVICES as i64,
        "every device is in a campaign"
    );
    for (id, total) in campaigns {
        wait_for(
            "the campaign to finish",
            Duration::from_secs(300),
            async || {
                let c = api(
                    &http,
                    reqwest::Method::GET,
                    &format!("/campaigns/{id}"),
                    None,
                )
                .await
                .unwrap_or_default();
                c["state"] == "finished"
            },
        )
        .await;
        let c = api(
            &http,
            reqwest::Method::GET,
            &format!("/campaigns/{id}"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(c["counts"]["succeeded"], total, "{c}");
    }
}

/// `otter simulate` run as `OTTER_SERVER=… OTTER_BROKER=… otter simulate`: each status line
/// from its stdout as it comes.
fn simulate(envs: &[(&str, &str)], args: &[&str]) -> (Running, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut cmd = Command::new(OTTER);
    cmd.arg("simulate")
        .args(args)
        .env_remove("OTTER_SERVER")
        .env_remove("OTTER_BROKER")
        .env_remove("OTTER_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = Running(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The first line `check` accepts (the lines before it are returned in the panic message).
fn line_where(lines: &std::sync::mpsc::Receiver<String>, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if check(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no such line; otter simulate printed:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn simulate_registers_through_otter_server_and_says_why_devices_do_not_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_addr(), free_addr());
    let _server = Running(
        Command::new(OTTER)
            .args([
                "serve",
                "--mqtt-listen",
                &mqtt,
                "--http-listen",
                &http,
                "--data-dir",
            ])
            .arg(dir.path())
            .env("OTTER_TOKEN", TOKEN)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = format!("http://{http}");
    otter_testkit::wait_port(mqtt.rsplit_once(':').unwrap().1.parse().unwrap());

    // Told the server by OTTER_SERVER (and the broker by OTTER_BROKER): registers, connects.
    let envs = [
        ("OTTER_SERVER", http.as_str()),
        ("OTTER_BROKER", mqtt.as_str()),
        ("OTTER_TOKEN", TOKEN),
    ];
    let (_fleet, lines) = simulate(&envs, &["--devices", "3", "--product-prefix", "ENV"]);
    line_where(&lines, |l| {
        l == format!("registering devices through {http}")
    });
    line_where(&lines, |l| l.starts_with("registered 3 new devices"));
    line_where(&lines, |l| l.starts_with("connected 3/3 "));

    // Not told any server: registers nothing, and the status line says why nothing connects.
    let envs = [("OTTER_BROKER", mqtt.as_str())];
    let (_fleet, lines) = simulate(&envs, &["--devices", "2", "--product-prefix", "NONE"]);
    line_where(&lines, |l| l.starts_with("not registering devices"));
    let status = line_where(&lines, |l| {
        l.contains("2 not connected: refused by the broker")
    });
    assert!(status.starts_with("connected 0/2 "), "{status}");
    assert!(
        status.contains("unknown device or wrong secret"),
        "{status}"
    );
}
