//! Every row of the campaign semantics table (docs/campaigns.md): what pause, resume, cancel,
//! timeout, retry and supersede do to a device in each state, and what a late report does after
//! cancel. Raw MQTT devices put each upgrade exactly where the row needs it.

use crate::common::*;
use otter_protocol::Dialect;
use serde_json::{Value, json};
use std::time::Duration;

const P: &str = "SEMPROD";

fn report(version: &str) -> String {
    format!(r#"{{"type": "report_version", "report":{{"version":"{version}"}}}}"#)
}

fn progress(state: &str, percent: &str) -> String {
    format!(
        r#"{{"type": "report_progress", "report": {{"progress": {{"state":"{state}", "percent":"{percent}", "result_code":"0", "result_msg":""}}, "version": "1.1.0"}}}}"#
    )
}

/// A Tencent device that has reported `version`, subscribed to its update topic.
async fn device(server: &TestServer, name: &str, version: &str) -> RawDevice {
    let secret = server.device(Dialect::Tencent, P, name).await;
    let mut dev = RawDevice::connect(server, Dialect::Tencent, P, name, &secret).await;
    dev.subscribe(&topic(name)).await;
    dev.send(&up(name), &report(version)).await;
    assert_eq!(
        dev.next_on(&topic(name)).await["type"],
        "report_version_rsp"
    );
    dev
}

fn topic(name: &str) -> String {
    format!("$ota/update/{P}/{name}")
}

fn up(name: &str) -> String {
    format!("$ota/report/{P}/{name}")
}

async fn push_of(dev: &mut RawDevice, name: &str) -> Value {
    let push = dev.next_on(&topic(name)).await;
    assert_eq!(push["type"], "update_firmware", "{push}");
    push
}

async fn state(server: &TestServer, name: &str) -> Value {
    server.show(P, name).await["upgrade"]["state"].clone()
}

async fn create(server: &TestServer, body: Value) -> i64 {
    let mut body = body;
    body["product"] = json!(P);
    body["version"] = json!("1.1.0");
    body["skip_verification"] = json!(true);
    server.post("/campaigns", body).await["id"]
        .as_i64()
        .unwrap()
}

/// Lets the planner (50 ms ticks) see the clock move.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn pause_resume_and_cancel_in_every_device_state() {
    let (server, clock) = start_with_clock().await;
    server
        .post("/products", json!({ "id": P, "dialect": "tencent" }))
        .await;
    server.upload(P, "1.1.0", &image()).await;
    let mut d0 = device(&server, "d0", "1.0.0").await; // will stay pushed
    let d1 = device(&server, "d1", "1.0.0").await; // goes offline: pending
    let mut d2 = device(&server, "d2", "1.0.0").await; // downloading
    let mut d3 = device(&server, "d3", "1.0.0").await; // burning
    let mut d4 = device(&server, "d4", "1.0.0").await; // succeeds
    let mut d5 = device(&server, "d5", "1.0.0").await; // stays queued (rate limit)
    drop(d1);
    server.wait_show(P, "d1", |v| v["online"] == false).await;

    let names: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
    let id = create(
        &server,
        json!({ "selection": { "devices": names }, "strategy": { "rate_per_minute": 5 } }),
    )
    .await;
    for (dev, name) in [
        (&mut d0, "d0"),
        (&mut d2, "d2"),
        (&mut d3, "d3"),
        (&mut d4, "d4"),
    ] {
        push_of(dev, name).await;
    }
    d2.send(&up("d2"), &progress("downloading", "40")).await;
    d3.send(&up("d3"), &progress("burning", "0")).await;
    d4.send(&up("d4"), &report("1.1.0")).await;
    for (name, want) in [
        ("d0", "pushed"),
        ("d1", "pending"),
        ("d2", "downloading"),
        ("d3", "burning"),
        ("d4", "succeeded"),
        ("d5", "queued"),
    ] {
        server
            .wait_show(P, name, |v| v["upgrade"]["state"] == want)
            .await;
    }

    // Pause: nothing new is released, even when the rate allows it again…
    let paused = server
        .post(&format!("/campaigns/{id}/pause"), json!({}))
        .await;
    assert_eq!(paused["state"], "paused");
    clock.advance(120_000);
    settle().await;
    assert_eq!(state(&server, "d5").await, "queued");
    d5.nothing_for(Duration::from_millis(200)).await;
    // …but devices already released go on: progress is recorded, a re-report is re-pushed.
    d2.send(&up("d2"), &progress("downloading", "60")).await;
    server
        .wait_show(P, "d2", |v| v["upgrade"]["percent"] == 60)
        .await;
    d0.send(&up("d0"), &report("1.0.0")).await;
    assert_eq!(d0.next_on(&topic("d0")).await["type"], "report_version_rsp");
    push_of(&mut d0, "d0").await;

    // Resume: releases the queued device.
    let resumed = server
        .post(&format!("/campaigns/{id}/resume"), json!({}))
        .await;
    assert_eq!(resumed["state"], "running");
    push_of(&mut d5, "d5").await;
    server
        .wait_show(P, "d5", |v| v["upgrade"]["state"] == "pushed")
        .await;

    // Cancel: every unfinished device is canceled; finished ones keep their result.
    let canceled = server
        .post(&format!("/campaigns/{id}/cancel"), json!({}))
        .await;
    assert_eq!(canceled["state"], "canceled");
    for (name, want) in [
        ("d0", "canceled"),
        ("d1", "canceled"),
        ("d2", "canceled"),
        ("d3", "canceled"),
        ("d4", "succeeded"),
        ("d5", "canceled"),
    ] {
        assert_eq!(state(&server, name).await, want, "{name}");
    }

    // Late reports after cancel: the version is recorded, the upgrade stays canceled, no push.
    d3.send(&up("d3"), &report("1.1.0")).await;
    server.wait_show(P, "d3", |v| v["version"] == "1.1.0").await;
    assert_eq!(state(&server, "d3").await, "canceled");
    d2.send(&up("d2"), &progress("fail", "0")).await;
    d0.send(&up("d0"), &report("1.0.0")).await;
    assert_eq!(d0.next_on(&topic("d0")).await["type"], "report_version_rsp");
    d0.nothing_for(Duration::from_millis(300)).await;
    assert_eq!(state(&server, "d2").await, "canceled");

    // A finished campaign refuses further actions with a clear error.
    for action in ["pause", "resume", "cancel"] {
        let (status, body) = server
            .api(
                reqwest::Method::POST,
                &format!("/campaigns/{id}/{action}"),
                None,
            )
            .await;
        assert_eq!(status, 400, "{action}: {body}");
        assert!(body["error"].as_str().unwrap().contains("canceled"));
    }
}

#[tokio::test]
async fn timeout_retry_then_success_is_recorded_in_the_history() {
    let (server, clock) = start_with_clock().await;
    server
        .post("/products", json!({ "id": P, "dialect": "tencent" }))
        .await;
    server.upload(P, "1.1.0", &image()).await;
    let mut dev = device(&server, "slow", "1.0.0").await;
    let id = create(&server, json!({ "selection": { "devices": ["slow"] }, "strategy": { "timeout_secs": 60, "retries": 1 } })).await;
    push_of(&mut dev, "slow").await;

    clock.advance(61_000);
    // Timed out (Tencent devices are told nothing; the record says -1 time_out), then retried.
    let second = push_of(&mut dev, "slow").await;
    assert_eq!(second["version"], "1.1.0");
    dev.send(&up("slow"), &report("1.1.0")).await;
    server
        .wait_show(P, "slow", |v| v["upgrade"]["state"] == "succeeded")
        .await;
    let rows = server.get(&format!("/campaigns/{id}/devices")).await;
    assert_eq!(rows[0]["attempts"], 2);
    let history = server
        .get(&format!("/products/{P}/devices/slow/history"))
        .await;
    let states: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        // An online device's release and push are one change (one write): no `pending` between.
        [
            "queued",
            "pushed",
            "timed_out",
            "queued",
            "pushed",
            "succeeded"
        ]
    );
    let timed_out = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state"] == "timed_out")
        .unwrap();
    assert_eq!(
        (
            timed_out["result_code"].clone(),
            timed_out["result_msg"].clone()
        ),
        (json!(-1), json!("time_out"))
    );
    settle().await;
    assert_eq!(
        server.get(&format!("/campaigns/{id}")).await["state"],
        "finished"
    );
}

#[tokio::test]
async fn final_timeout_ignores_a_late_success() {
    let (server, clock) = start_with_clock().await;
    server
        .post("/products", json!({ "id": P, "dialect": "tencent" }))
        .await;
    server.upload(P, "1.1.0", &image()).await;
    let mut dev = device(&server, "late", "1.0.0").await;
    create(
        &server,
        json!({ "selection": { "devices": ["late"] }, "strategy": { "timeout_secs": 30 } }),
    )
    .await;
    push_of(&mut dev, "late").await;
    clock.advance(31_000);
    server
        .wait_show(P, "late", |v| v["upgrade"]["state"] == "timed_out")
        .await;
    dev.send(&up("late"), &report("1.1.0")).await;
    let v = server
        .wait_show(P, "late", |v| v["version"] == "1.1.0")
        .await;
    assert_eq!(
        v["upgrade"]["state"], "timed_out",
        "a finished upgrade is never revived"
    );
}

#[tokio::test]
async fn conflicts_are_refused_by_name_or_superseded() {
    let (server, _clock) = start_with_clock().await;
    server
        .post("/products", json!({ "id": P, "dialect": "tencent" }))
        .await;
    server.upload(P, "1.1.0", &image()).await;
    let mut dev = device(&server, "busy", "1.0.0").await;
    let first = create(&server, json!({ "selection": { "devices": ["busy"] } })).await;
    push_of(&mut dev, "busy").await;
    let body = json!({ "product": P, "version": "1.1.0", "skip_verification": true, "selection": { "devices": ["busy"] } });
    let (status, err) = server
        .api(reqwest::Method::POST, "/campaigns", Some(body.clone()))
        .await;
    assert_eq!(status, 409);
    assert!(err["error"].as_str().unwrap().contains("busy"), "{err}");
    let mut superseding = body;
    superseding["supersede"] = json!(true);
    let second = server.post("/campaigns", superseding).await["id"]
        .as_i64()
        .unwrap();
    let old = server.get(&format!("/campaigns/{first}/devices")).await;
    assert_eq!(old[0]["state"], "canceled");
    assert!(
        old[0]["result_msg"]
            .as_str()
            .unwrap()
            .contains(&second.to_string())
    );
    push_of(&mut dev, "busy").await;
}

#[tokio::test]
async fn downgrades_need_the_explicit_flag() {
    let (server, _clock) = start_with_clock().await;
    server
        .post("/products", json!({ "id": P, "dialect": "tencent" }))
        .await;
    server.upload(P, "1.1.0", &image()).await;
    let mut dev = device(&server, "newer", "2.0.0").await;
    let body = json!({ "product": P, "version": "1.1.0", "skip_verification": true, "selection": { "devices": ["newer"] } });
    let (status, err) = server
        .api(reqwest::Method::POST, "/campaigns", Some(body.clone()))
        .await;
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("no device"),
        "{err}"
    );
    let mut preview = body.clone();
    preview["dry_run"] = json!(true);
    preview["selection"]["devices"] = json!(["newer", "nobody"]);
    let (_, p) = server
        .api(reqwest::Method::POST, "/campaigns", Some(preview))
        .await;
    assert!(p["error"].is_string(), "the dry run explains too: {p}");
    dev.nothing_for(Duration::from_millis(200)).await;
    let mut allowed = body;
    allowed["allow_downgrade"] = json!(true);
    server.post("/campaigns", allowed).await;
    push_of(&mut dev, "newer").await;
}

#[tokio::test]
async fn start_time_and_maintenance_window_hold_releases() {
    let (server, clock) = start_with_clock().await;
    server
        .post("/products", json!({ "id": P, "dialect": "tencent" }))
        .await;
    server.upload(P, "1.1.0", &image()).await;
    let mut dev = device(&server, "night", "1.0.0").await;
    let now = 1_800_000_000_000i64; // the test clock's start: 2027-01-15T08:00:00Z
    let minute_of_day = (now / 60_000 % 1440) as u16;
    let strategy = json!({
        "start_at_ms": now + 600_000,
        "window": { "start_minute": (minute_of_day + 60) % 1440, "duration_minutes": 30, "utc_offset_minutes": 0 },
    });
    let id = create(
        &server,
        json!({ "selection": { "devices": ["night"] }, "strategy": strategy }),
    )
    .await;
    assert_eq!(
        server.get(&format!("/campaigns/{id}")).await["state"],
        "scheduled"
    );
    clock.advance(600_000);
    settle().await;
    assert_eq!(
        server.get(&format!("/campaigns/{id}")).await["state"],
        "running"
    );
    assert_eq!(
        state(&server, "night").await,
        "queued",
        "started, but outside the window"
    );
    dev.nothing_for(Duration::from_millis(200)).await;
    clock.advance(3_000_000);
    push_of(&mut dev, "night").await;
}

#[tokio::test]
async fn verification_on_an_offline_test_device_is_not_verified_never_rejected() {
    let (server, clock) = start_with_clock().await;
    server
        .post("/products", json!({ "id": P, "dialect": "tencent" }))
        .await;
    server.upload(P, "1.1.0", &image()).await;
    // A registered test device that never connects: the offer never reaches it.
    server.device(Dialect::Tencent, P, "asleep").await;
    let verify = server
        .post(
            &format!("/products/{P}/firmware/verify"),
            json!({ "version": "1.1.0", "devices": ["asleep"], "timeout_secs": 30 }),
        )
        .await;
    let id = verify["id"].as_i64().unwrap();
    let live = server
        .wait_campaign(id, |c| c["counts"]["pending"] == 1)
        .await;
    assert_eq!(live["outcome"], Value::Null);
    let devices = server.get(&format!("/campaigns/{id}/devices")).await;
    assert_eq!(
        devices[0]["reason"], "device_offline",
        "it says why it waits"
    );
    clock.advance(31_000);
    let ended = server.wait_campaign(id, |c| c["state"] == "finished").await;
    assert_eq!(
        ended["reason"],
        "not verified: 1 of 1 test devices were offline and never received the offer"
    );
    assert_eq!(ended["outcome"], "finished_with_failures");
    let fw = server.get(&format!("/products/{P}/firmware")).await;
    assert_eq!(fw[0]["state"], "uploaded", "the image is not blamed: {fw}");

    // A test device that gets the offer and fails it does reject the image.
    let mut dev = device(&server, "awake", "1.0.0").await;
    let verify = server
        .post(
            &format!("/products/{P}/firmware/verify"),
            json!({ "version": "1.1.0", "devices": ["awake"] }),
        )
        .await;
    let id = verify["id"].as_i64().unwrap();
    push_of(&mut dev, "awake").await;
    dev.send(
        &up("awake"),
        r#"{"type": "report_progress", "report": {"progress": {"state":"fail", "result_code":"-4", "result_msg":"md5 mismatch"}, "version": "1.1.0"}}"#,
    )
    .await;
    let ended = server.wait_campaign(id, |c| c["state"] == "finished").await;
    assert_eq!(ended["reason"], Value::Null);
    let fw = server.get(&format!("/products/{P}/firmware")).await;
    assert_eq!(fw[0]["state"], "rejected");
    let devices = server.get(&format!("/campaigns/{id}/devices")).await;
    assert_eq!(
        devices[0]["result_text"],
        "MD5 of the downloaded file does not match"
    );
}
