//! Health-gated rollouts on the fake clock, with raw Tencent devices that send nothing but
//! versions and progress (as vendor SDK devices do): a release that installs fine and then
//! boot-loops 20 % of the first wave trips the churn gate, the second wave is never released,
//! and with `on_unhealthy: rollback` the first wave ends back on 1.0.0; the same campaign over a
//! healthy fleet passes every gate and finishes.

use crate::common::*;
use otter_protocol::Dialect;
use otter_server::clock::ManualClock;
use serde_json::{Value, json};
use std::sync::Arc;

const P: &str = "TCHEALTH01";
const DEVICES: usize = 20;
const BAKE_MS: u64 = 1_800_000;
/// Reconnects of each boot-looping device during the bake.
const LOOPS: usize = 20;

fn report(version: &str) -> String {
    format!(r#"{{"type": "report_version", "report":{{"version":"{version}"}}}}"#)
}

fn progress(state: &str, version: &str) -> String {
    format!(
        r#"{{"type": "report_progress", "report": {{"progress": {{"state":"{state}", "percent":"100", "result_code":"0", "result_msg":""}}, "version": "{version}"}}}}"#
    )
}

fn name(i: usize) -> String {
    format!("d{i:02}")
}

/// Connects device `i`, subscribes and reports `version`.
async fn connect(server: &TestServer, i: usize, secret: &str, version: &str) -> RawDevice {
    let name = name(i);
    let mut dev = RawDevice::connect(server, Dialect::Tencent, P, &name, secret).await;
    dev.subscribe(&format!("$ota/update/{P}/{name}")).await;
    dev.send(&format!("$ota/report/{P}/{name}"), &report(version))
        .await;
    let rsp = dev.next_on(&format!("$ota/update/{P}/{name}")).await;
    assert_eq!(rsp["type"], "report_version_rsp");
    dev
}

/// Takes the push of `version` and installs it: progress, burning, done, the new version.
async fn install(dev: &mut RawDevice, i: usize, version: &str) {
    let name = name(i);
    let topic = format!("$ota/update/{P}/{name}");
    let push = dev.next_on(&topic).await;
    assert_eq!(
        (&push["type"], &push["version"]),
        (&json!("update_firmware"), &json!(version)),
        "{name}: {push}"
    );
    let up = format!("$ota/report/{P}/{name}");
    for state in ["downloading", "burning", "done"] {
        dev.send(&up, &progress(state, version)).await;
    }
    dev.send(&up, &report(version)).await;
    assert_eq!(dev.next_on(&topic).await["type"], "report_version_rsp");
}

struct Fleet {
    server: TestServer,
    clock: Arc<ManualClock>,
    devices: Vec<RawDevice>,
    secrets: Vec<String>,
    campaign: i64,
}

async fn fleet(on_unhealthy: &str) -> Fleet {
    fleet_with(
        on_unhealthy,
        &["came_back>=90%", "churn<=2x", "offline<=3x"],
    )
    .await
}

async fn fleet_with(on_unhealthy: &str, rules: &[&str]) -> Fleet {
    let (server, clock) = start_with_clock().await;
    let mut devices = Vec::new();
    let mut secrets = Vec::new();
    for i in 0..DEVICES {
        let secret = server.device(Dialect::Tencent, P, &name(i)).await;
        devices.push(connect(&server, i, &secret, "1.0.0").await);
        secrets.push(secret);
    }
    server.upload(P, "1.0.0", &image()).await;
    server.upload(P, "1.1.0", &image()).await;
    let created = server
        .post(
            "/campaigns",
            json!({ "product": P, "version": "1.1.0", "skip_verification": true,
                    "selection": { "versions": ["1.0.0"] },
                    "strategy": { "waves": [50, 100], "health": {
                        "bake_secs": BAKE_MS / 1000,
                        "rules": rules,
                        "on_unhealthy": on_unhealthy } } }),
        )
        .await;
    let campaign = created["id"].as_i64().unwrap();
    Fleet {
        server,
        clock,
        devices,
        secrets,
        campaign,
    }
}

impl Fleet {
    async fn install_wave(&mut self, range: std::ops::Range<usize>, version: &str) {
        for i in range {
            install(&mut self.devices[i], i, version).await;
        }
    }

    /// Waits for the bake after `wave` to start.
    async fn baking(&self, wave: usize) {
        self.server
            .wait_campaign(self.campaign, |c| {
                c["bakes"].as_array().unwrap().len() > wave
            })
            .await;
    }

    /// Moves the clock past the bake's end and waits for its verdict; returns the campaign.
    async fn judged(&self, wave: usize) -> Value {
        self.clock.advance(BAKE_MS as i64 + 1_000);
        self.server
            .wait_campaign(self.campaign, |c| !c["bakes"][wave]["verdict"].is_null())
            .await
    }

    /// Device `i` reboots `LOOPS` times on the new version (a boot loop).
    async fn boot_loop(&mut self, i: usize) {
        for _ in 0..LOOPS {
            let old = std::mem::replace(
                &mut self.devices[i],
                connect(&self.server, i, &self.secrets[i], "1.1.0").await,
            );
            drop(old);
        }
    }
}

#[tokio::test]
async fn a_boot_looping_release_trips_churn_and_the_next_wave_never_goes() {
    let mut f = fleet("pause").await;
    f.install_wave(0..10, "1.1.0").await;
    f.baking(0).await;
    // 20 % of the first wave boot-loops; the control group (wave 2) stays put.
    for i in [0, 1] {
        f.boot_loop(i).await;
    }
    let judged = f.judged(0).await;
    let bake = &judged["bakes"][0];
    assert_eq!(bake["verdict"], "unhealthy", "{judged}");
    let churn = &bake["evaluation"]["evaluation"]["signals"][1];
    assert_eq!(
        (&churn["rule"], &churn["tripped"]),
        (&json!("churn<=2x"), &json!(true)),
        "{bake}"
    );
    let paused = f
        .server
        .wait_campaign(f.campaign, |c| c["state"] == "paused")
        .await;
    assert!(
        paused["reason"].as_str().unwrap().contains("churn<=2x"),
        "{paused}"
    );
    f.clock.advance(3_600_000);
    let later = f.server.get(&format!("/campaigns/{}", f.campaign)).await;
    assert_eq!(
        later["counts"]["queued"], 10,
        "wave 2 is never released: {later}"
    );
}

#[tokio::test]
async fn with_rollback_the_devices_that_took_the_release_end_on_the_old_version() {
    let mut f = fleet("rollback").await;
    f.install_wave(0..10, "1.1.0").await;
    f.baking(0).await;
    for i in [0, 1] {
        f.boot_loop(i).await;
    }
    let judged = f.judged(0).await;
    assert_eq!(judged["bakes"][0]["verdict"], "unhealthy", "{judged}");
    let aborted = f
        .server
        .wait_campaign(f.campaign, |c| c["state"] == "aborted")
        .await;
    assert!(
        aborted["reason"]
            .as_str()
            .unwrap()
            .contains("rollback campaign #"),
        "{aborted}"
    );
    let campaigns = f.server.get(&format!("/campaigns?product={P}")).await;
    let rollback = campaigns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rollback_of"] == f.campaign)
        .unwrap_or_else(|| panic!("no rollback campaign: {campaigns}"))
        .clone();
    assert_eq!(rollback["allow_downgrade"], true);
    let id = rollback["id"].as_i64().unwrap();
    // Every device of wave 1 took 1.1.0: each is offered 1.0.0 and installs it.
    f.install_wave(0..10, "1.0.0").await;
    let done = f
        .server
        .wait_campaign(id, |c| c["state"] == "finished")
        .await;
    assert_eq!(done["counts"]["succeeded"], 10, "{done}");
    for i in 0..10 {
        let shown = f.server.show(P, &name(i)).await;
        assert_eq!(shown["version"], "1.0.0", "{shown}");
    }
    // The second wave was never touched.
    for i in 10..DEVICES {
        assert_eq!(
            f.server.show(P, &name(i)).await["upgrade"]["state"],
            "canceled"
        );
    }
}

#[tokio::test]
async fn a_healthy_release_passes_every_gate_and_finishes() {
    let mut f = fleet("rollback").await;
    f.install_wave(0..10, "1.1.0").await;
    f.baking(0).await;
    let judged = f.judged(0).await;
    assert_eq!(judged["bakes"][0]["verdict"], "healthy", "{judged}");
    f.install_wave(10..DEVICES, "1.1.0").await;
    f.baking(1).await;
    let judged = f.judged(1).await;
    assert_eq!(judged["bakes"][1]["verdict"], "healthy", "{judged}");
    let done = f
        .server
        .wait_campaign(f.campaign, |c| c["state"] == "finished")
        .await;
    assert_eq!(done["counts"]["succeeded"], DEVICES, "{done}");
}

/// Devices that send Otter's health report: a release that crashes trips the counter rule,
/// even though every device came back and none churns.
#[tokio::test]
async fn a_fleet_that_reports_crashes_trips_on_its_counters() {
    let mut f = fleet_with("pause", &["came_back>=90%", "churn<=2x", "crashes<=0.5/h"]).await;
    f.install_wave(0..10, "1.1.0").await;
    f.baking(0).await;
    for i in 0..4 {
        let name = name(i);
        f.devices[i]
            .send(
                &format!("$ota/report/{P}/{name}"),
                r#"{"type":"otter_health","counters":{"crashes":5,"reboots":1}}"#,
            )
            .await;
    }
    // The reports are stored before the clock moves past the bake (a version report after
    // them is answered only once they were handled: one device's messages go in order).
    for i in 0..4 {
        let name = name(i);
        f.devices[i]
            .send(&format!("$ota/report/{P}/{name}"), &report("1.1.0"))
            .await;
        assert_eq!(
            f.devices[i]
                .next_on(&format!("$ota/update/{P}/{name}"))
                .await["type"],
            "report_version_rsp"
        );
    }
    let judged = f.judged(0).await;
    let bake = &judged["bakes"][0];
    assert_eq!(bake["verdict"], "unhealthy", "{judged}");
    assert_eq!(bake["evaluation"]["evidence"]["counters"]["crashes"], 20);
    let crashes = &bake["evaluation"]["evaluation"]["signals"][2];
    assert_eq!(
        (&crashes["rule"], &crashes["tripped"]),
        (&json!("crashes<=0.5/h"), &json!(true)),
        "{bake}"
    );
    for signal in [0, 1] {
        assert_eq!(
            bake["evaluation"]["evaluation"]["signals"][signal]["tripped"], false,
            "{bake}"
        );
    }
}
