//! `otter serve` killed with SIGKILL at several points of a rollout and restarted on the same data
//! dir ends exactly where an uninterrupted run ends, with the rate limit held across restarts.
//! The uninterrupted run is followed with `otter campaign watch --json`.

use otter_agent::sim::{Behavior, Fleet, SimConfig, SimDevice};
use otter_protocol::Dialect;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::OTTER;
use otter_testkit::free_addr;

const TOKEN: &str = "crash-test-token";
const DEVICES: usize = 20;
const RATE: usize = 10;

struct Server {
    child: Child,
    mqtt: String,
    http: String,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(dir: &Path, mqtt: &str, http: &str) -> Self {
        let child = Command::new(OTTER)
            .args([
                "serve",
                "--mqtt-listen",
                mqtt,
                "--http-listen",
                http,
                "--data-dir",
            ])
            .arg(dir)
            .env("OTTER_TOKEN", TOKEN)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server {
            child,
            mqtt: mqtt.into(),
            http: format!("http://{http}"),
            dir: dir.into(),
        }
    }

    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        *self = Server::start(
            &self.dir.clone(),
            &self.mqtt.clone(),
            self.http.trim_start_matches("http://"),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn api(
    server: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut req = reqwest::Client::new()
        .request(method, format!("{server}/api/v1{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.ok()?;
    Some((
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    ))
}

/// Retries while the server is (re)starting.
async fn call(server: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    for _ in 0..200 {
        if let Some((status, v)) = api(server, method.clone(), path, body.clone()).await {
            assert!(status < 300, "{path}: {status} {v}");
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server never answered {path}");
}

fn behavior(i: usize) -> Behavior {
    if i % 7 == 3 {
        Behavior::FailInstall
    } else {
        Behavior::Succeed
    }
}

/// Creates Tencent product `product` with `n` devices named `{prefix}00…` on 1.0.0, each with
/// `behavior(i)`; returns them as simulated devices.
async fn register(
    http: &str,
    product: &str,
    prefix: &str,
    n: usize,
    behavior: impl Fn(usize) -> Behavior,
) -> Vec<SimDevice> {
    call(
        http,
        reqwest::Method::POST,
        "/products",
        Some(json!({ "id": product, "dialect": "tencent" })),
    )
    .await;
    let mut devices = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i:02}");
        let created = call(
            http,
            reqwest::Method::POST,
            &format!("/products/{product}/devices"),
            Some(json!({ "name": name })),
        )
        .await;
        devices.push(SimDevice {
            dialect: Dialect::Tencent,
            product: product.into(),
            device: name,
            secret: created["secret"].as_str().unwrap().to_owned(),
            version: "1.0.0".into(),
            behavior: behavior(i),
        });
    }
    devices
}

/// Runs the rollout, killing the server at each of `kills` (since campaign start); returns each
/// device's final state and version, and the campaign's release times.
async fn rollout(
    kills: &[Duration],
    watch: bool,
) -> (
    BTreeMap<String, (String, String)>,
    Vec<i64>,
    Option<Vec<Value>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &free_addr(), &free_addr());
    let http = server.http.clone();
    let devices = register(&http, "CRASH", "d", DEVICES, behavior).await;
    let upload = reqwest::Client::new()
        .post(format!(
            "{http}/api/v1/products/CRASH/firmware?version=1.1.0"
        ))
        .bearer_auth(TOKEN)
        .body(vec![42u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status().as_u16(), 201);
    let config = SimConfig {
        step_delay: Duration::from_millis(300),
        ..SimConfig::new(server.mqtt.clone())
    };
    let fleet = Fleet::start(config, devices).await.unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);

    let names: Vec<String> = (0..DEVICES).map(|i| format!("d{i:02}")).collect();
    let body = json!({ "product": "CRASH", "version": "1.1.0", "skip_verification": true, "selection": { "devices": names }, "strategy": { "rate_per_minute": RATE } });
    let id = call(&http, reqwest::Method::POST, "/campaigns", Some(body)).await["id"]
        .as_i64()
        .unwrap();
    let watcher = watch.then(|| {
        Command::new(OTTER)
            .args([
                "campaign",
                "watch",
                &id.to_string(),
                "--json",
                "--interval-ms",
                "200",
                "--server",
                &http,
            ])
            .env("OTTER_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    let started = Instant::now();
    for kill in kills {
        tokio::time::sleep(kill.saturating_sub(started.elapsed())).await;
        server.kill_and_restart();
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let c = call(
            &http,
            reqwest::Method::GET,
            &format!("/campaigns/{id}"),
            None,
        )
        .await;
        if c["state"] == "finished" {
            break;
        }
        assert!(Instant::now() < deadline, "campaign never finished: {c}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rows = call(
        &http,
        reqwest::Method::GET,
        &format!("/campaigns/{id}/devices?limit=1000"),
        None,
    )
    .await;
    let mut finals = BTreeMap::new();
    let mut releases = Vec::new();
    for row in rows.as_array().unwrap() {
        let name = row["device"].as_str().unwrap().to_owned();
        finals.insert(
            name.clone(),
            (
                row["state"].as_str().unwrap().to_owned(),
                fleet.version(&name).unwrap(),
            ),
        );
        releases.push(row["released_at"].as_i64().unwrap());
        assert_eq!(row["attempts"], 1, "{name} was released once");
    }
    releases.sort();
    let events = watcher.map(|w| {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
            .collect()
    });
    fleet.stop().await;
    (finals, releases, events)
}

fn assert_rate(releases: &[i64]) {
    for (i, start) in releases.iter().enumerate() {
        let in_window = releases[i..]
            .iter()
            .take_while(|t| **t < start + 60_000)
            .count();
        assert!(
            in_window <= RATE,
            "{in_window} releases within 60 s of {start}: {releases:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_rollout_changes_nothing_in_the_end() {
    // Kill points: right after the start, mid-first-batch, idle between batches, and just as the
    // rate lets the second batch go.
    let kill_points = [700, 3_000, 30_000, 61_500].map(Duration::from_millis);
    let (calm, kills) = tokio::join!(rollout(&[], true), rollout(&kill_points, false));
    let (calm_finals, calm_releases, events) = calm;
    let (killed_finals, killed_releases, _) = kills;
    assert_eq!(calm_finals.len(), DEVICES);
    for (name, (state, version)) in &calm_finals {
        let i: usize = name[1..].parse().unwrap();
        let want = if behavior(i) == Behavior::Succeed {
            ("succeeded", "1.1.0")
        } else {
            ("failed", "1.0.0")
        };
        assert_eq!((state.as_str(), version.as_str()), want, "{name}");
    }
    assert_eq!(
        killed_finals, calm_finals,
        "the killed run ends exactly like the calm one"
    );
    assert_rate(&calm_releases);
    assert_rate(&killed_releases);
    assert!(
        killed_releases.last().unwrap() - killed_releases[0] >= 60_000,
        "the second half waited for the rate across restarts"
    );

    // `otter campaign watch --json`: one event per change, ending with the finished counts.
    let events = events.unwrap();
    assert!(events.len() >= 2, "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last["state"], "finished");
    let succeeded = calm_finals
        .values()
        .filter(|(s, _)| s == "succeeded")
        .count();
    assert_eq!(last["counts"]["succeeded"], succeeded);
    assert_eq!(last["total"], DEVICES);
    assert!(
        events
            .iter()
            .any(|e| e["counts"]["queued"].as_u64().unwrap_or(0) > 0),
        "watched the rollout in progress"
    );
}

/// SIGKILL during a health gate's bake: the restarted server continues that bake from its
/// stored start (not a new one) and reaches the verdict an uninterrupted bake reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_bake_keeps_its_start_and_its_verdict() {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &free_addr(), &free_addr());
    let http = server.http.clone();
    let devices = register(&http, "BAKE", "b", N, |_| Behavior::Succeed).await;
    let upload = reqwest::Client::new()
        .post(format!(
            "{http}/api/v1/products/BAKE/firmware?version=1.1.0"
        ))
        .bearer_auth(TOKEN)
        .body(vec![7u8; 16 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status().as_u16(), 201);
    let fleet = Fleet::start(SimConfig::new(server.mqtt.clone()), devices)
        .await
        .unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let names: Vec<String> = (0..N).map(|i| format!("b{i:02}")).collect();
    let health =
        json!({ "bake_secs": 8, "rules": ["came_back>=50%", "churn<=20x"], "min_devices": 5 });
    let body = json!({ "product": "BAKE", "version": "1.1.0", "skip_verification": true,
        "selection": { "devices": names }, "strategy": { "waves": [50, 100], "health": health } });
    let id = call(&http, reqwest::Method::POST, "/campaigns", Some(body)).await["id"]
        .as_i64()
        .unwrap();
    let campaign = async |http: &str| {
        call(
            http,
            reqwest::Method::GET,
            &format!("/campaigns/{id}"),
            None,
        )
        .await
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let c = campaign(&http).await;
        if c["bakes"].as_array().is_some_and(|b| !b.is_empty()) {
            break c["bakes"][0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the first wave never started baking: {c}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        before["verdict"].is_null(),
        "killed during the bake: {before}"
    );
    server.kill_and_restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let c = campaign(&http).await;
        if c["state"] == "finished" {
            break c;
        }
        assert!(Instant::now() < deadline, "campaign never finished: {c}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let bakes = done["bakes"].as_array().unwrap();
    assert_eq!(bakes.len(), 2, "{done}");
    assert_eq!(
        bakes[0]["started_at"], before["started_at"],
        "the bake went on from its stored start"
    );
    assert!(
        bakes[0]["judged_at"].as_i64().unwrap() >= before["started_at"].as_i64().unwrap() + 8_000
    );
    for bake in bakes {
        assert_eq!(bake["verdict"], "healthy", "{done}");
    }
    assert_eq!(done["counts"]["succeeded"], N);
    fleet.stop().await;
}
