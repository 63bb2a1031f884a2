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
