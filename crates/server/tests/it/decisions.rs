//! Decisions in one place (docs/campaigns.md "Decisions and their reasons"), driven by raw MQTT
//! devices sending the vendor SDKs' exact messages: the seeds' free-form versions upgrade, a
//! device-requested campaign pushes nothing until asked, repeated progress leaves one history
//! row per change, and an install that did not take is a failure the retry policy handles.

use crate::common::*;
use otter_protocol::Dialect;
use serde_json::{Value, json};
use std::time::Duration;

const AL: &str = "a1DecAli01";
const TC: &str = "TCDECIDE01";

fn tc_report(version: &str) -> String {
    format!(r#"{{"type": "report_version", "report":{{"version":"{version}"}}}}"#)
}

fn tc_progress(state: &str, percent: &str) -> String {
    format!(
        r#"{{"type": "report_progress", "report": {{"progress": {{"state":"{state}", "percent":"{percent}", "result_code":"0", "result_msg":""}}, "version": "1.1.0"}}}}"#
    )
}

/// An Aliyun device subscribed to its push topic, having reported `version`.
async fn aliyun(server: &TestServer, name: &str, version: &str) -> RawDevice {
    let secret = server.device(Dialect::Aliyun, AL, name).await;
    let dev = RawDevice::connect(server, Dialect::Aliyun, AL, name, &secret).await;
    dev.subscribe(&format!("/ota/device/upgrade/{AL}/{name}"))
        .await;
    dev.subscribe(&format!("/sys/{AL}/{name}/thing/ota/firmware/get_reply"))
        .await;
    dev.send(
        &format!("/ota/device/inform/{AL}/{name}"),
        &format!(r#"{{"id":1,"params":{{"version":"{version}"}}}}"#),
    )
    .await;
    server
        .wait_show(AL, name, |v| v["version"] == version)
        .await;
    dev
}

/// A Tencent device subscribed to its update topic, having reported `version`.
async fn tencent(server: &TestServer, name: &str, version: &str) -> RawDevice {
    let secret = server.device(Dialect::Tencent, TC, name).await;
    let mut dev = RawDevice::connect(server, Dialect::Tencent, TC, name, &secret).await;
    dev.subscribe(&format!("$ota/update/{TC}/{name}")).await;
    dev.send(&format!("$ota/report/{TC}/{name}"), &tc_report(version))
        .await;
    let rsp = dev.next_on(&format!("$ota/update/{TC}/{name}")).await;
    assert_eq!(rsp["type"], "report_version_rsp");
    dev
}

async fn upgrade_row(server: &TestServer, campaign: i64) -> Value {
    server.get(&format!("/campaigns/{campaign}/devices")).await[0].clone()
}

#[tokio::test]
async fn the_alibaba_seeds_versions_upgrade() {
    let server = start().await;
    let mut dev = aliyun(&server, "seed", "1-45-345a").await;
    server.upload(AL, "res-1.2.5", &image()).await;
    server.upgrade(AL, "seed", "res-1.2.5").await;
    let push = dev.next_on(&format!("/ota/device/upgrade/{AL}/seed")).await;
    assert_eq!(push["data"]["version"], "res-1.2.5", "{push}");
    dev.send(
        &format!("/ota/device/inform/{AL}/seed"),
        r#"{"id":3,"params":{"version":"res-1.2.5"}}"#,
    )
    .await;
    server
        .wait_show(AL, "seed", |v| v["upgrade"]["state"] == "succeeded")
        .await;
}

#[tokio::test]
async fn a_device_requested_campaign_pushes_nothing_until_the_device_asks() {
    let server = start().await;
    let mut dev = aliyun(&server, "asker", "1.0.0").await;
    server.upload(AL, "1.1.0", &image()).await;
    let created = server
        .post(
            "/campaigns",
            json!({ "product": AL, "version": "1.1.0", "mode": "requested", "skip_verification": true,
                    "selection": { "devices": ["asker"] } }),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    let row = upgrade_row(&server, id).await;
    assert_eq!(
        (&row["state"], &row["reason"], &row["pushes"]),
        (&json!("pending"), &json!("awaiting_request"), &json!(0)),
        "{row}"
    );
    // A version report alone records nothing and pushes nothing.
    dev.send(
        &format!("/ota/device/inform/{AL}/asker"),
        r#"{"id":4,"params":{"version":"1.0.0"}}"#,
    )
    .await;
    dev.nothing_for(Duration::from_millis(500)).await;
    let row = upgrade_row(&server, id).await;
    assert_eq!(
        (&row["state"], &row["pushes"]),
        (&json!("pending"), &json!(0))
    );
    // The device asks: it is pushed once.
    dev.send(
        &format!("/sys/{AL}/asker/thing/ota/firmware/get"),
        r#"{"id":"5","version":"1.0","method":"thing.ota.firmware.get","params":{}}"#,
    )
    .await;
    let job = dev
        .next_on(&format!("/sys/{AL}/asker/thing/ota/firmware/get_reply"))
        .await;
    assert_eq!(job["data"]["version"], "1.1.0", "{job}");
    let row = upgrade_row(&server, id).await;
    assert_eq!(
        (&row["state"], &row["pushes"]),
        (&json!("pushed"), &json!(1))
    );
}

#[tokio::test]
async fn repeated_progress_leaves_one_history_row_per_change() {
    let server = start().await;
    let mut dev = aliyun(&server, "twice", "1.0.0").await;
    server.upload(AL, "1.1.0", &image()).await;
    server.upgrade(AL, "twice", "1.1.0").await;
    dev.next_on(&format!("/ota/device/upgrade/{AL}/twice"))
        .await;
    // Alibaba's C SDK sends every step twice.
    for step in ["10", "10", "50", "50", "100", "100"] {
        dev.send(
            &format!("/ota/device/progress/{AL}/twice"),
            &format!(r#"{{"id":2,"params":{{"step":"{step}","desc":""}}}}"#),
        )
        .await;
    }
    for _ in 0..2 {
        dev.send(
            &format!("/ota/device/inform/{AL}/twice"),
            r#"{"id":3,"params":{"version":"1.1.0"}}"#,
        )
        .await;
    }
    server
        .wait_show(AL, "twice", |v| v["upgrade"]["state"] == "succeeded")
        .await;
    let history = server
        .get(&format!("/products/{AL}/devices/twice/history"))
        .await;
    let rows: Vec<(String, Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["state"].as_str().unwrap().to_owned(),
                e["percent"].clone(),
            )
        })
        .collect();
    let want: Vec<(String, Value)> = [
        ("queued", Value::Null),
        ("pushed", Value::Null),
        ("downloading", json!(10)),
        ("downloading", json!(50)),
        ("downloading", json!(100)),
        ("succeeded", json!(100)),
    ]
    .into_iter()
    .map(|(s, p)| (s.to_owned(), p))
    .collect();
    assert_eq!(rows, want);
}

/// Pushed, downloads, says burning and done, then comes back on 1.0.0.
async fn install_that_does_not_take(dev: &mut RawDevice, name: &str) {
    let topic = format!("$ota/update/{TC}/{name}");
    let push = dev.next_on(&topic).await;
    assert_eq!(push["type"], "update_firmware", "{push}");
    let up = format!("$ota/report/{TC}/{name}");
    for (state, percent) in [("downloading", "100"), ("burning", "100"), ("done", "100")] {
        dev.send(&up, &tc_progress(state, percent)).await;
    }
    dev.send(&up, &tc_report("1.0.0")).await;
    assert_eq!(dev.next_on(&topic).await["type"], "report_version_rsp");
}

#[tokio::test]
async fn an_install_that_did_not_take_fails_and_is_retried_only_by_the_policy() {
    for retries in [0, 1] {
        let (server, clock) = start_with_clock().await;
        let name = format!("flash{retries}");
        let mut dev = tencent(&server, &name, "1.0.0").await;
        server.upload(TC, "1.1.0", &image()).await;
        let created = server
            .post(
                "/campaigns",
                json!({ "product": TC, "version": "1.1.0", "skip_verification": true,
                        "selection": { "devices": [name] }, "strategy": { "retries": retries } }),
            )
            .await;
        let id = created["id"].as_i64().unwrap();
        install_that_does_not_take(&mut dev, &name).await;
        let shown = server
            .wait_show(TC, &name, |v| {
                v["upgrade"]["state"] == "failed" || v["upgrade"]["state"] == "queued"
            })
            .await;
        let history = server
            .get(&format!("/products/{TC}/devices/{name}/history"))
            .await;
        let failure = history
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["state"] == "failed")
            .cloned()
            .unwrap_or_else(|| panic!("no failure in the history: {history} {shown}"));
        assert_eq!(failure["reason"], "install_not_taken");
        assert_eq!(
            failure["result_msg"],
            "install did not take: came back on 1.0.0"
        );
        // Never pushed in between: the failure ends the attempt.
        dev.nothing_for(Duration::from_millis(500)).await;
        if retries == 0 {
            let done = server.wait_campaign(id, |c| c["state"] == "finished").await;
            assert_eq!(done["counts"]["failed"], 1, "{done}");
            clock.advance(120_000);
            dev.nothing_for(Duration::from_millis(500)).await;
        } else {
            // The retry comes after the policy's minute, not before.
            clock.advance(61_000);
            install_that_does_not_take(&mut dev, &name).await;
            let done = server.wait_campaign(id, |c| c["state"] == "finished").await;
            assert_eq!(done["counts"]["failed"], 1, "{done}");
            let row = upgrade_row(&server, id).await;
            assert_eq!((&row["attempts"], &row["pushes"]), (&json!(2), &json!(2)));
        }
    }
}
