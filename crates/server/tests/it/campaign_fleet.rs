//! Campaigns over a simulated fleet of 320 devices of three dialects (some offline, some failing,
//! some ignoring offers) against a real server whose planner runs on a manual clock: every target
//! kind, verification, dry run, waves with a success gate, rate limit, timeout and retry, device-
//! requested mode, the abort threshold and cancel — asserting which devices were pushed and how
//! each one ended.

use crate::common::*;
use otter_agent::sim::{Behavior, Fleet, SimConfig, SimDevice};
use otter_protocol::Dialect;
use otter_server::clock::ManualClock;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Spec {
    name: String,
    version: &'static str,
    behavior: Behavior,
    online: bool,
}

/// Device `i` of a product: mostly 1.0.0, some 1.0.1 and 2.0.0; some fail, ignore or stay offline.
fn spec(prefix: &str, i: usize, fail: Behavior, fail_every: usize) -> Spec {
    let version = match i {
        _ if i % 20 == 19 => "2.0.0",
        _ if i % 4 == 3 => "1.0.1",
        _ => "1.0.0",
    };
    let behavior = match i {
        _ if i % fail_every == fail_every - 3 => fail,
        _ if i % 10 == 8 => Behavior::Ignore,
        _ => Behavior::Succeed,
    };
    Spec {
        name: format!("{prefix}-{i:03}"),
        version,
        behavior,
        online: i % 25 != 24,
    }
}

struct Product {
    id: &'static str,
    dialect: Dialect,
    specs: Vec<Spec>,
    secrets: BTreeMap<String, String>,
}

impl Product {
    async fn register(
        server: &TestServer,
        id: &'static str,
        dialect: Dialect,
        specs: Vec<Spec>,
    ) -> Self {
        let mut secrets = BTreeMap::new();
        for (i, s) in specs.iter().enumerate() {
            secrets.insert(s.name.clone(), server.device(dialect, id, &s.name).await);
            let tag = if i % 2 == 0 { "eu" } else { "us" };
            let (status, _) = server
                .api(
                    reqwest::Method::PUT,
                    &format!("/products/{id}/devices/{}/tags", s.name),
                    Some(json!({ "add": [tag] })),
                )
                .await;
            assert_eq!(status, 200);
        }
        server.upload(id, "1.1.0", &image()).await;
        Product {
            id,
            dialect,
            specs,
            secrets,
        }
    }

    fn sim_devices(&self, online: bool) -> Vec<SimDevice> {
        self.specs
            .iter()
            .filter(|s| s.online == online)
            .map(|s| SimDevice {
                dialect: self.dialect,
                product: self.id.into(),
                device: s.name.clone(),
                secret: self.secrets[&s.name].clone(),
                version: s.version.into(),
                behavior: s.behavior,
            })
            .collect()
    }

    fn spec(&self, name: &str) -> &Spec {
        self.specs.iter().find(|s| s.name == name).unwrap()
    }
}

async fn fleet(server: &TestServer, products: &[&Product], ask_for_job: bool) -> Fleet {
    fleet_of(server, products, ask_for_job, true).await
}

/// The devices that are `online` in this test (the others only showed up once, earlier).
async fn fleet_of(
    server: &TestServer,
    products: &[&Product],
    ask_for_job: bool,
    online: bool,
) -> Fleet {
    let config = SimConfig {
        ask_for_job,
        ..SimConfig::new(server.mqtt.to_string())
    };
    let devices = products
        .iter()
        .flat_map(|p| p.sim_devices(online))
        .collect();
    let fleet = Fleet::start(config, devices).await.unwrap();
    assert!(
        fleet.wait_connected(Duration::from_secs(20)).await,
        "fleet did not connect"
    );
    fleet
}

/// Waits until every device's version report reached the store.
async fn wait_reported(server: &TestServer, product: &Product) {
    for s in &product.specs {
        server
            .wait_show(product.id, &s.name, |v| v["version"] == s.version)
            .await;
    }
}

async fn campaign(server: &TestServer, id: i64) -> Value {
    server.get(&format!("/campaigns/{id}")).await
}

/// Moves the planner clock 10 s at a time until the campaign is in one of `states`.
async fn drive(server: &TestServer, clock: &ManualClock, id: i64, states: &[&str]) -> Value {
    for _ in 0..400 {
        let c = campaign(server, id).await;
        if states.contains(&c["state"].as_str().unwrap()) {
            return c;
        }
        clock.advance(10_000);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    panic!(
        "campaign #{id} never reached {states:?}: {}",
        campaign(server, id).await
    );
}

async fn rows(server: &TestServer, id: i64) -> BTreeMap<String, Value> {
    let list = server
        .get(&format!("/campaigns/{id}/devices?limit=1000"))
        .await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| (u["device"].as_str().unwrap().to_owned(), u.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_devices_through_every_target_kind_and_strategy() {
    let (server, clock) = start_with_clock().await;
    let tc = Product::register(
        &server,
        "TCFLEET",
        Dialect::Tencent,
        (0..120)
            .map(|i| spec("tc", i, Behavior::FailInstall, 10))
            .collect(),
    )
    .await;
    let al = Product::register(
        &server,
        "ALFLEET",
        Dialect::Aliyun,
        (0..100)
            .map(|i| spec("al", i, Behavior::FailInstall, 10))
            .collect(),
    )
    .await;
    let en = Product::register(
        &server,
        "ENFLEET",
        Dialect::Enos,
        (0..100)
            .map(|i| spec("en", i, Behavior::FailVerify, 3))
            .collect(),
    )
    .await;

    // The offline devices were seen once, reported their version, and went away.
    let gone = fleet_of(&server, &[&tc, &al, &en], false, false).await;
    let sims = fleet(&server, &[&tc], false).await;
    let first_run = fleet(&server, &[&al, &en], true).await;
    for p in [&tc, &al, &en] {
        wait_reported(&server, p).await;
    }
    gone.stop().await;
    for p in [&tc, &al, &en] {
        for s in p.specs.iter().filter(|s| !s.online) {
            server
                .wait_show(p.id, &s.name, |v| v["online"] == false)
                .await;
        }
    }

    // Device-requested campaign on Aliyun: named devices at a source version, restricted to a
    // tag. Nothing is pushed; devices get the offer when they next ask (here: on reconnecting).
    let named: Vec<String> = (0..40).map(|i| format!("al-{i:03}")).collect();
    let (status, body) = server
        .api(reqwest::Method::POST, "/campaigns", Some(json!({
            "product": "ALFLEET", "version": "1.1.0", "mode": "requested", "skip_verification": true,
            "selection": { "devices": named, "versions": ["1.0.0"], "tags": ["eu"] },
        })))
        .await;
    assert_eq!(status, 201, "{body}");
    let al_campaign = body["id"].as_i64().unwrap();
    for s in &al.specs {
        assert_eq!(
            first_run.pushes(&s.name),
            0,
            "{}: nothing is pushed in requested mode",
            s.name
        );
    }
    first_run.stop().await;
    let asking = fleet(&server, &[&al, &en], true).await;

    // ---- Tencent: verification first.
    let (status, body) = server.api(reqwest::Method::POST, "/campaigns", Some(json!({ "product": "TCFLEET", "version": "1.1.0", "selection": { "versions": ["1.0.0"] } }))).await;
    assert_eq!(status, 409, "unverified firmware is refused: {body}");
    assert!(body["error"].as_str().unwrap().contains("verify"));
    let verify = server
        .post(
            "/products/TCFLEET/firmware/verify",
            json!({ "version": "1.1.0", "devices": ["tc-000", "tc-001"] }),
        )
        .await;
    drive(
        &server,
        &clock,
        verify["id"].as_i64().unwrap(),
        &["finished"],
    )
    .await;
    let fw = server.get("/products/TCFLEET/firmware").await;
    assert_eq!(fw[0]["state"], "verified");

    // Dry run: the devices, waves and timeline; nothing starts.
    let strategy = json!({ "rate_per_minute": 30, "waves": [10, 50, 100], "gate_percent": 90, "timeout_secs": 120, "retries": 1 });
    let request = json!({ "product": "TCFLEET", "version": "1.1.0", "selection": { "versions": ["1.0.0"] }, "strategy": strategy });
    let mut dry = request.clone();
    dry["dry_run"] = json!(true);
    let (status, preview) = server
        .api(reqwest::Method::POST, "/campaigns", Some(dry))
        .await;
    assert_eq!(status, 200);
    let expected: Vec<&Spec> = tc
        .specs
        .iter()
        .filter(|s| s.version == "1.0.0" && s.name != "tc-000" && s.name != "tc-001")
        .collect();
    let selected: Vec<&str> = preview["targeting"]["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        selected,
        expected.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(
        preview["waves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap())
            .sum::<u64>(),
        expected.len() as u64
    );
    assert_eq!(preview["projection"]["waves"].as_array().unwrap().len(), 3);
    assert_eq!(
        server
            .get("/campaigns?product=TCFLEET")
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "dry run created nothing"
    );
    assert!(
        tc.specs.iter().skip(2).all(|s| sims.pushes(&s.name) == 0),
        "dry run pushed nothing"
    );

    // The rollout: waves 10/50/100 % with a 90 % gate, 30 devices a minute, 120 s timeout, 1 retry.
    let created = server.post("/campaigns", request).await;
    let tc_campaign = created["id"].as_i64().unwrap();
    let released =
        |c: &Value| c["total"].as_i64().unwrap() - c["counts"]["queued"].as_i64().unwrap_or(0);
    assert!(
        released(&campaign(&server, tc_campaign).await) <= 30,
        "rate limit in the first minute"
    );
    // Wave 0 holds an ignoring device, so the 90 % gate holds; the operator resumes.
    let paused = drive(&server, &clock, tc_campaign, &["paused", "finished"]).await;
    assert_eq!(paused["state"], "paused", "{paused}");
    assert!(paused["reason"].as_str().unwrap().contains("held"));
    server
        .post(&format!("/campaigns/{tc_campaign}/resume"), json!({}))
        .await;
    drive(&server, &clock, tc_campaign, &["finished"]).await;
    let tc_rows = rows(&server, tc_campaign).await;
    assert_eq!(tc_rows.len(), expected.len());
    for s in &expected {
        let row = &tc_rows[&s.name];
        let (state, attempts, code) = (
            row["state"].as_str().unwrap(),
            row["attempts"].as_u64().unwrap(),
            &row["result_code"],
        );
        match (s.online, s.behavior) {
            (false, _) => assert_eq!(
                (state, attempts, code, sims.pushes(&s.name)),
                ("timed_out", 2, &json!(-1), 0),
                "{}",
                s.name
            ),
            (true, Behavior::Succeed) => assert_eq!(
                (state, sims.version(&s.name).unwrap().as_str()),
                ("succeeded", "1.1.0"),
                "{}",
                s.name
            ),
            (true, Behavior::FailInstall) => assert_eq!(
                (state, attempts, code),
                ("failed", 2, &json!(-5)),
                "{}",
                s.name
            ),
            (true, Behavior::Ignore) => assert_eq!(
                (state, attempts, code, sims.pushes(&s.name)),
                ("timed_out", 2, &json!(-1), 2),
                "{}",
                s.name
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    for s in tc
        .specs
        .iter()
        .skip(2)
        .filter(|s| s.version != "1.0.0" && s.online)
    {
        assert_eq!(
            sims.pushes(&s.name),
            0,
            "{} is not at a source version and was never pushed",
            s.name
        );
        assert_eq!(sims.version(&s.name).unwrap(), s.version);
    }

    // ---- Aliyun: the requested campaign delivered offers only to matching devices that asked.
    let al_rows = rows(&server, al_campaign).await;
    let al_expected: Vec<&Spec> = al.specs[..40]
        .iter()
        .enumerate()
        .filter(|(i, s)| i % 2 == 0 && s.version == "1.0.0")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        al_rows.keys().cloned().collect::<Vec<_>>(),
        al_expected
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    for s in al_expected
        .iter()
        .filter(|s| s.online && s.behavior != Behavior::Ignore)
    {
        let want = if s.behavior == Behavior::Succeed {
            "succeeded"
        } else {
            "failed"
        };
        server
            .wait_show("ALFLEET", &s.name, |v| v["upgrade"]["state"] == want)
            .await;
    }
    for s in &al.specs {
        assert_eq!(
            asking.pushes(&s.name),
            0,
            "{}: nothing is pushed in requested mode",
            s.name
        );
    }
    // Cancel: devices still in flight (the ignoring ones) and the offline ones are canceled.
    let canceled = server
        .post(&format!("/campaigns/{al_campaign}/cancel"), json!({}))
        .await;
    assert_eq!(canceled["state"], "canceled");
    let al_rows = rows(&server, al_campaign).await;
    for s in &al_expected {
        let want = match (s.online, s.behavior) {
            (true, Behavior::Succeed) => "succeeded",
            (true, Behavior::FailInstall) => "failed",
            _ => "canceled",
        };
        assert_eq!(al_rows[&s.name]["state"], want, "{}", s.name);
    }

    // ---- EnOS: a CSV device file (with an unknown name), 10 a minute, abort above 20 % failures.
    let csv = std::iter::once("id,device_name".to_owned())
        .chain((0..60).map(|i| format!("{i},en-{i:03}")))
        .chain(["99,ghost".to_owned()])
        .collect::<Vec<_>>()
        .join("\n");
    let created = server
        .post("/campaigns", json!({
            "product": "ENFLEET", "version": "1.1.0", "device_file": csv, "skip_verification": true,
            "strategy": { "rate_per_minute": 10, "timeout_secs": 120, "abort": { "failure_percent": 20, "min_finished": 5 } },
        }))
        .await;
    assert!(
        created["targeting"]["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["device"] == "ghost" && s["reason"] == "unknown device")
    );
    let en_campaign = created["id"].as_i64().unwrap();
    let aborted = drive(&server, &clock, en_campaign, &["aborted", "finished"]).await;
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    assert!(aborted["reason"].as_str().unwrap().contains('%'));
    let en_rows = rows(&server, en_campaign).await;
    let mut never_released = 0;
    for (name, row) in &en_rows {
        let s = en.spec(name);
        match row["state"].as_str().unwrap() {
            "succeeded" => assert_eq!(s.behavior, Behavior::Succeed),
            "failed" => assert_eq!(
                (s.behavior, row["result_code"].clone()),
                (Behavior::FailVerify, json!(-3))
            ),
            "canceled" if row["attempts"] == 0 => {
                never_released += 1;
                assert_eq!(
                    asking.pushes(name),
                    0,
                    "{name} was never released, never pushed"
                );
            }
            "canceled" => {}
            // Newer than the target: joined skipped, with the reason, never pushed.
            "skipped" => {
                assert_eq!(s.version, "2.0.0", "{name}");
                assert_eq!(row["reason"], "newer_than_target", "{name}");
                assert_eq!(asking.pushes(name), 0, "{name} was skipped, never pushed");
            }
            other => panic!("{name} ended {other}"),
        }
    }
    assert!(
        never_released > 0,
        "the abort stopped the rollout before every device was released"
    );
    sims.stop().await;
    asking.stop().await;
}
