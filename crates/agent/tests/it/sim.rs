//! The fleet simulator against a real broker, with the test playing the OTA server: it checks
//! every device's credentials with the dialect's real verification, answers what the devices
//! send as Otter would, pushes offers, and asserts the exact reports that come back.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use otter_agent::sim::{Behavior, Faults, Fleet, Outcome, SimConfig, SimDevice, derive_secret};
use otter_blobs::{BlobInfo, Blobs};
use otter_broker::{Broker, BrokerConfig, BrokerEvent, Gate, Grant, Login, Refusal};
use otter_download::{DownloadState, UrlSigner, router, serve};
use otter_protocol::{
    Answer, Credentials, DeviceAddr, Dialect, FailureKind, Offer, Progress, UpMessage, Uplink,
    answer, downstream_topics, encode_push, failure_code, parse_login, parse_uplink,
    upstream_topics, verify,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const OLD: &str = "1.0.0";
const NEW: &str = "2.0.0";
const SEED: u64 = 99;
const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_millis(700);

/// Lets in the fleet's devices, each with its dialect's real authentication and topic grants.
struct FleetGate {
    /// Tencent client id (`{product}{device}`) or `product/device` → device.
    devices: HashMap<String, (Dialect, DeviceAddr, String)>,
}

impl FleetGate {
    fn new(devices: &[SimDevice]) -> Self {
        let devices = devices
            .iter()
            .map(|d| {
                let key = match d.dialect {
                    Dialect::Tencent => format!("{}{}", d.product, d.device),
                    _ => format!("{}/{}", d.product, d.device),
                };
                let addr = DeviceAddr::new(d.product.clone(), d.device.clone());
                (key, (d.dialect, addr, d.secret.clone()))
            })
            .collect();
        FleetGate { devices }
    }
}

impl Gate for FleetGate {
    type Identity = DeviceAddr;

    async fn authenticate(&self, login: Login) -> Result<Grant<DeviceAddr>, Refusal> {
        let creds = Credentials {
            client_id: login.client_id,
            username: login.username,
            password: login.password,
        };
        let key = match parse_login(&creds).map_err(|_| Refusal::BadCredentials)? {
            otter_protocol::Login::Tencent { client_id } => client_id,
            otter_protocol::Login::Keyed { product, device } => format!("{product}/{device}"),
        };
        let (dialect, dev, secret) = self.devices.get(&key).ok_or(Refusal::NotAuthorized)?;
        verify(*dialect, dev, secret, &creds).map_err(|_| Refusal::BadCredentials)?;
        Ok(Grant {
            identity: dev.clone(),
            publish_topics: upstream_topics(*dialect, dev),
            receive_topics: downstream_topics(*dialect, dev),
        })
    }
}

/// One message a device sent, as received and as parsed.
#[derive(Debug, Clone)]
struct Report {
    topic: String,
    payload: Bytes,
    uplink: Uplink,
}

/// The server side: a broker and the answers Otter would give.
struct Server {
    gate: Arc<FleetGate>,
    broker: Broker<DeviceAddr>,
    events: mpsc::Receiver<BrokerEvent<DeviceAddr>>,
    dialects: HashMap<DeviceAddr, Dialect>,
    /// What a job request is answered with, per device.
    jobs: HashMap<DeviceAddr, Offer>,
    next_push_id: u64,
}

impl Server {
    async fn start(devices: &[SimDevice]) -> Server {
        Self::start_on(devices, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    async fn start_on(devices: &[SimDevice], listen: SocketAddr) -> Server {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let gate = Arc::new(FleetGate::new(devices));
        let (broker, events) = start_broker(gate.clone(), listen).await;
        let dialects = devices.iter().map(|d| (addr(d), d.dialect)).collect();
        Server {
            gate,
            broker,
            events,
            dialects,
            jobs: HashMap::new(),
            next_push_id: 1000,
        }
    }

    fn broker_addr(&self) -> String {
        self.broker.local_addr().to_string()
    }

    /// Replaces the broker with a fresh one on the same address, dropping every connection.
    async fn restart_broker(&mut self) {
        let listen = self.broker.local_addr();
        self.broker.clone().shutdown().await;
        let (broker, events) = start_broker(self.gate.clone(), listen).await;
        self.broker = broker;
        self.events = events;
    }

    async fn push(&mut self, dev: &DeviceAddr, offer: &Offer) {
        self.next_push_id += 1;
        let dialect = self.dialects[dev];
        let out = encode_push(dialect, dev, offer, self.next_push_id);
        self.broker
            .publish(&out.topic, Bytes::from(out.payload), 1)
            .await
            .unwrap();
    }

    /// The next report from any device, answered as Otter would answer it.
    async fn next(&mut self, wait: Duration) -> Option<Report> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
            let Ok(Some(event)) = event else { return None };
            let BrokerEvent::Message {
                from,
                topic,
                payload,
            } = event
            else {
                continue;
            };
            let uplink = parse_uplink(&topic, &payload)
                .unwrap_or_else(|r| panic!("invalid report on {topic}: {r:?}"));
            assert_eq!(uplink.device, from, "a device speaks only for itself");
            let reply = match &uplink.message {
                UpMessage::FirmwareRequest { .. } => {
                    Answer::Offer(self.jobs.get(&uplink.device).cloned())
                }
                _ => Answer::Ack,
            };
            if let Some(out) = answer(&uplink, reply) {
                self.broker
                    .publish(&out.topic, Bytes::from(out.payload), 1)
                    .await
                    .unwrap();
            }
            return Some(Report {
                topic,
                payload,
                uplink,
            });
        }
    }

    /// Reports per device until `done` holds for the collection, then until quiet.
    async fn collect(
        &mut self,
        done: impl Fn(&HashMap<DeviceAddr, Vec<Report>>) -> bool,
    ) -> HashMap<DeviceAddr, Vec<Report>> {
        let mut seen: HashMap<DeviceAddr, Vec<Report>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&seen) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(r) = self.next(left).await else {
                panic!("timed out; got {:#?}", summary(&seen));
            };
            seen.entry(r.uplink.device.clone()).or_default().push(r);
        }
        while let Some(r) = self.next(QUIET).await {
            seen.entry(r.uplink.device.clone()).or_default().push(r);
        }
        seen
    }

    /// Waits until every one of `devices` reported `version`; returns those reports.
    async fn version_reports(
        &mut self,
        devices: &[SimDevice],
        version: impl Fn(&SimDevice) -> String,
    ) -> HashMap<DeviceAddr, Vec<Report>> {
        let want: HashMap<DeviceAddr, String> =
            devices.iter().map(|d| (addr(d), version(d))).collect();
        self.collect(|seen| {
            want.iter().all(|(dev, v)| {
                seen.get(dev)
                    .is_some_and(|rs| rs.iter().any(|r| r.uplink.message == version_report(v)))
            })
        })
        .await
    }
}

async fn start_broker(
    gate: Arc<FleetGate>,
    listen: SocketAddr,
) -> (Broker<DeviceAddr>, mpsc::Receiver<BrokerEvent<DeviceAddr>>) {
    let (tx, events) = mpsc::channel(4096);
    let broker = Broker::start(BrokerConfig::new(listen), gate, tx)
        .await
        .unwrap();
    (broker, events)
}

fn summary(seen: &HashMap<DeviceAddr, Vec<Report>>) -> Vec<(String, Vec<UpMessage>)> {
    let mut s: Vec<_> = seen
        .iter()
        .map(|(d, rs)| {
            (
                d.to_string(),
                rs.iter().map(|r| r.uplink.message.clone()).collect(),
            )
        })
        .collect();
    s.sort_by(|a, b| a.0.cmp(&b.0));
    s
}

fn product(dialect: Dialect) -> String {
    format!("SIM-{dialect}")
}

fn device(i: usize, dialect: Dialect, behavior: Behavior, version: &str) -> SimDevice {
    let product = product(dialect);
    let device = format!("d{i:03}");
    SimDevice {
        secret: derive_secret(dialect, SEED, &product, &device),
        dialect,
        product,
        device,
        version: version.into(),
        behavior,
    }
}

fn addr(d: &SimDevice) -> DeviceAddr {
    DeviceAddr::new(d.product.clone(), d.device.clone())
}

fn offer(version: &str) -> Offer {
    Offer {
        module: "default".into(),
        version: version.into(),
        url: "http://127.0.0.1:9/fw.bin".into(),
        size: 1000,
        md5: "0123456789abcdef0123456789abcdef".into(),
        sha256: String::new(),
    }
}

fn version_report(version: &str) -> UpMessage {
    UpMessage::VersionReport {
        module: "default".into(),
        version: version.into(),
    }
}

fn progress(progress: Progress) -> UpMessage {
    UpMessage::Progress {
        module: "default".into(),
        version: Some(NEW.into()),
        progress,
    }
}

fn downloading(percents: &[u8]) -> Vec<UpMessage> {
    percents
        .iter()
        .map(|&percent| progress(Progress::Downloading { percent }))
        .collect()
}

fn failed_code(m: &UpMessage) -> Option<i32> {
    match m {
        UpMessage::Progress {
            progress: Progress::Failed { code, .. },
            ..
        } => Some(*code),
        _ => None,
    }
}

/// The whole report sequence of a successful upgrade to [`NEW`] in `dialect`.
fn success_sequence(dialect: Dialect) -> Vec<UpMessage> {
    let mut s = downloading(&[0, 50, 100]);
    if dialect == Dialect::Tencent {
        s.push(progress(Progress::Burning));
        s.push(progress(Progress::Done));
    }
    s.push(version_report(NEW));
    s
}

/// The sequence of a failure of `kind`, with the dialect's code.
fn failure_sequence(dialect: Dialect, kind: FailureKind) -> Vec<UpMessage> {
    let mut s = match kind {
        FailureKind::DownloadFailed | FailureKind::NotFound => downloading(&[0]),
        _ => downloading(&[0, 50, 100]),
    };
    if kind == FailureKind::InstallFailed && dialect == Dialect::Tencent {
        s.push(progress(Progress::Burning));
    }
    let code = failure_code(dialect, kind);
    let message = match dialect {
        Dialect::Tencent => "time_out".to_owned(),
        _ => format!("{kind:?}"),
    };
    s.push(progress(Progress::Failed { code, message }));
    s
}

fn messages(reports: Option<&Vec<Report>>) -> Vec<UpMessage> {
    reports
        .map(|rs| rs.iter().map(|r| r.uplink.message.clone()).collect())
        .unwrap_or_default()
}

/// The exact JSON a vendor SDK sends for a version report.
fn assert_version_report_shape(d: &SimDevice, r: &Report) {
    let json: Value = serde_json::from_slice(&r.payload).unwrap();
    let (pk, dn, v) = (&d.product, &d.device, &d.version);
    match d.dialect {
        Dialect::Tencent => {
            assert_eq!(r.topic, format!("$ota/report/{pk}/{dn}"));
            assert_eq!(
                json,
                json!({"type": "report_version", "report": {"version": v}})
            );
        }
        Dialect::Aliyun => {
            assert_eq!(r.topic, format!("/ota/device/inform/{pk}/{dn}"));
            assert!(json["id"].is_string(), "{json}");
            assert_eq!(json, json!({"id": json["id"], "params": {"version": v}}));
        }
        Dialect::Enos => {
            assert_eq!(r.topic, format!("/sys/{pk}/{dn}/ota/device/inform"));
            assert!(json["id"].is_string(), "EnOS ids are strings: {json}");
            assert_eq!(
                json,
                json!({"id": json["id"], "version": "1.0", "method": "ota.device.inform",
                       "params": {"version": v}})
            );
        }
    }
}

/// 30 devices of mixed dialects and behaviours: exact version reports on connect, then one
/// push each, and each behaviour's exact answer.
#[tokio::test]
async fn mixed_fleet_reports_and_answers_pushes() {
    let behaviors = [
        Behavior::Succeed,
        Behavior::Succeed,
        Behavior::Succeed,
        Behavior::FailDownload,
        Behavior::FailVerify,
        Behavior::FailInstall,
        Behavior::Ignore,
        Behavior::Ignore,
        Behavior::Succeed, // already runs NEW
        Behavior::Succeed,
    ];
    let devices: Vec<SimDevice> = (0..30)
        .map(|i| {
            let dialect = Dialect::ALL[i % 3];
            let behavior = behaviors[i / 3];
            let version = if i / 3 == 8 { NEW } else { OLD };
            device(i, dialect, behavior, version)
        })
        .collect();
    let mut server = Server::start(&devices).await;
    let fleet = Fleet::start(SimConfig::new(server.broker_addr()), devices.clone())
        .await
        .unwrap();
    assert_eq!(fleet.len(), 30);

    let reports = server
        .version_reports(&devices, |d| d.version.clone())
        .await;
    for d in &devices {
        let rs = &reports[&addr(d)];
        assert_eq!(rs.len(), 1, "{}: one report on connect: {rs:?}", d.device);
        assert_version_report_shape(d, &rs[0]);
    }
    assert!(fleet.wait_connected(WAIT).await);

    for d in &devices {
        server.push(&addr(d), &offer(NEW)).await;
    }
    let expected: HashMap<DeviceAddr, Vec<UpMessage>> = devices
        .iter()
        .map(|d| {
            let seq = match (d.behavior, d.version.as_str()) {
                (Behavior::Ignore, _) => vec![],
                (_, NEW) => vec![version_report(NEW)],
                (Behavior::Succeed, _) => success_sequence(d.dialect),
                (Behavior::FailDownload, _) => {
                    failure_sequence(d.dialect, FailureKind::DownloadFailed)
                }
                (Behavior::FailVerify, _) => {
                    failure_sequence(d.dialect, FailureKind::DigestMismatch)
                }
                (Behavior::FailInstall, _) => {
                    failure_sequence(d.dialect, FailureKind::InstallFailed)
                }
            };
            (addr(d), seq)
        })
        .collect();
    let seen = server
        .collect(|seen| {
            expected
                .iter()
                .all(|(dev, seq)| messages(seen.get(dev)).len() >= seq.len())
        })
        .await;
    for d in &devices {
        let dev = addr(d);
        assert_eq!(messages(seen.get(&dev)), expected[&dev], "{}", d.device);
        assert_eq!(fleet.pushes(&d.device), 1, "{}", d.device);
        let upgraded = d.behavior == Behavior::Succeed;
        let version = if upgraded { NEW } else { d.version.as_str() };
        assert_eq!(fleet.version(&d.device).as_deref(), Some(version));
    }
    // Spot checks of the codes themselves, per dialect.
    let code_of = |i: usize| {
        messages(seen.get(&addr(&devices[i])))
            .last()
            .and_then(failed_code)
    };
    assert_eq!(
        [code_of(9), code_of(10), code_of(11)],
        [Some(-1), Some(-2), Some(-2)]
    );
    assert_eq!(
        [code_of(12), code_of(13), code_of(14)],
        [Some(-4), Some(-3), Some(-3)]
    );
    assert_eq!(
        [code_of(15), code_of(16), code_of(17)],
        [Some(-5), Some(-4), Some(-4)]
    );

    let snapshot = fleet.snapshot();
    assert_eq!(snapshot.len(), 30);
    let s0 = &snapshot[0];
    assert_eq!(
        s0.last_outcome,
        Some(Outcome::Upgraded {
            from: OLD.into(),
            to: NEW.into()
        })
    );
    assert!(s0.connected && s0.connects == 1 && s0.upgrading.is_none());
    assert_eq!(
        snapshot[12].last_outcome,
        Some(Outcome::Failed {
            version: NEW.into(),
            code: -4
        })
    );
    assert_eq!(snapshot[18].last_outcome, None, "Ignore never acts");
    assert_eq!(
        fleet.status("SIM-enos/d029").map(|s| s.version),
        Some(NEW.into())
    );
    fleet.stop().await;
}

/// Every device comes back and re-reports after the broker restarts on the same port, and
/// the new connections work.
#[tokio::test]
async fn devices_reconnect_and_report_after_broker_restart() {
    let devices: Vec<SimDevice> = (0..12)
        .map(|i| device(i, Dialect::ALL[i % 3], Behavior::Succeed, OLD))
        .collect();
    let mut server = Server::start(&devices).await;
    let fleet = Fleet::start(SimConfig::new(server.broker_addr()), devices.clone())
        .await
        .unwrap();
    server.version_reports(&devices, |_| OLD.into()).await;

    server.restart_broker().await;
    let again = server.version_reports(&devices, |_| OLD.into()).await;
    for d in &devices {
        assert_version_report_shape(d, &again[&addr(d)][0]);
    }
    assert!(fleet.wait_connected(WAIT).await);
    assert!(fleet.snapshot().iter().all(|s| s.connects >= 2));

    let first = &devices[1];
    server.push(&addr(first), &offer(NEW)).await;
    let seen = server
        .collect(|seen| messages(seen.get(&addr(first))).len() >= 4)
        .await;
    assert_eq!(
        messages(seen.get(&addr(first))),
        success_sequence(first.dialect)
    );
    fleet.stop().await;
}

/// Devices started before the broker exists come up once it does.
#[tokio::test]
async fn devices_wait_for_a_broker_that_is_not_up_yet() {
    let devices: Vec<SimDevice> = (0..3)
        .map(|i| device(i, Dialect::ALL[i], Behavior::Succeed, OLD))
        .collect();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = probe.local_addr().unwrap();
    drop(probe);
    let fleet = Fleet::start(SimConfig::new(listen.to_string()), devices.clone())
        .await
        .unwrap();
    assert_eq!(fleet.connected(), 0);
    assert!(fleet.snapshot().iter().all(|s| s.last_error.is_some()));

    let mut server = Server::start_on(&devices, listen).await;
    server.version_reports(&devices, |_| OLD.into()).await;
    assert!(fleet.wait_connected(WAIT).await);
    fleet.stop().await;
}

/// With `ask_for_job`, Aliyun and EnOS devices ask after their version report and take the
/// offer in the answer; Tencent devices never ask.
#[tokio::test]
async fn requested_jobs_are_taken() {
    let devices: Vec<SimDevice> = (0..3)
        .map(|i| device(i, Dialect::ALL[i], Behavior::Succeed, OLD))
        .collect();
    let mut server = Server::start(&devices).await;
    for d in &devices {
        server.jobs.insert(addr(d), offer(NEW));
    }
    let mut config = SimConfig::new(server.broker_addr());
    config.ask_for_job = true;
    let fleet = Fleet::start(config, devices.clone()).await.unwrap();
    let askers = &devices[1..];
    let seen = server.version_reports(askers, |_| NEW.into()).await;
    for d in askers {
        let mut expected = vec![
            version_report(OLD),
            UpMessage::FirmwareRequest {
                module: "default".into(),
            },
        ];
        expected.extend(success_sequence(d.dialect));
        assert_eq!(messages(seen.get(&addr(d))), expected, "{}", d.device);
        let status = fleet.status(&d.device).unwrap();
        assert_eq!((status.pushes, status.offers), (0, 1));
    }
    assert_eq!(
        messages(seen.get(&addr(&devices[0]))),
        [version_report(OLD)]
    );
    fleet.stop().await;
}

/// A push repeated while the device is busy with it is counted and ignored; once it runs the
/// version, a push of it is answered with the version.
#[tokio::test]
async fn repeated_push_while_busy_is_ignored() {
    let devices = vec![device(0, Dialect::Tencent, Behavior::Succeed, OLD)];
    let dev = addr(&devices[0]);
    let mut server = Server::start(&devices).await;
    let mut config = SimConfig::new(server.broker_addr());
    config.step_delay = Duration::from_millis(150);
    let fleet = Fleet::start(config, devices.clone()).await.unwrap();
    server.version_reports(&devices, |_| OLD.into()).await;

    server.push(&dev, &offer(NEW)).await;
    server.push(&dev, &offer(NEW)).await;
    let seen = server
        .collect(|seen| messages(seen.get(&dev)).len() >= 6)
        .await;
    assert_eq!(messages(seen.get(&dev)), success_sequence(Dialect::Tencent));
    assert_eq!(fleet.pushes("d000"), 2);
    assert_eq!(fleet.version("d000").as_deref(), Some(NEW));

    server.push(&dev, &offer(NEW)).await;
    let seen = server.collect(|seen| seen.contains_key(&dev)).await;
    assert_eq!(messages(seen.get(&dev)), [version_report(NEW)]);
    fleet.stop().await;
}

/// Injected connection drops abandon the upgrade mid-download; the device reconnects and
/// reports its old version again (the server would re-push).
#[tokio::test]
async fn injected_drop_reconnects_with_the_old_version() {
    let devices = vec![device(0, Dialect::Aliyun, Behavior::Succeed, OLD)];
    let dev = addr(&devices[0]);
    let mut server = Server::start(&devices).await;
    let mut config = SimConfig::new(server.broker_addr());
    config.faults = Faults {
        drop_connection_rate: 1.0,
        seed: 5,
        ..Faults::default()
    };
    let fleet = Fleet::start(config, devices.clone()).await.unwrap();
    server.version_reports(&devices, |_| OLD.into()).await;

    server.push(&dev, &offer(NEW)).await;
    let seen = server
        .collect(|seen| messages(seen.get(&dev)).len() >= 3)
        .await;
    let mut expected = downloading(&[0, 50]);
    expected.push(version_report(OLD));
    assert_eq!(messages(seen.get(&dev)), expected);
    let status = fleet.status("d000").unwrap();
    assert_eq!(
        status.last_outcome,
        Some(Outcome::Dropped {
            version: NEW.into()
        })
    );
    assert_eq!(status.connects, 2);
    assert_eq!(status.version, OLD);
    fleet.stop().await;
}

/// With `download`, the image is really fetched and checked: a good one upgrades, a wrong
/// MD5 is the dialect's verification code, a missing file its download code.
#[tokio::test]
async fn real_downloads_are_checked() {
    let blob_dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(blob_dir.path().to_str().unwrap()).unwrap();
    let data: Vec<u8> = (0..200_000).map(|i| (i * 13 % 251) as u8).collect();
    let image: BlobInfo = blobs.ingest(&data[..]).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let signer = Arc::new(UrlSigner::new(b"test key", &format!("http://{http}")));
    let app = router(DownloadState {
        blobs,
        signer: signer.clone(),
    });
    tokio::spawn(serve(listener, app, std::future::pending()));

    let devices: Vec<SimDevice> = (0..9)
        .map(|i| device(i, Dialect::ALL[i % 3], Behavior::Succeed, OLD))
        .collect();
    let mut server = Server::start(&devices).await;
    let mut config = SimConfig::new(server.broker_addr());
    config.download = true;
    let fleet = Fleet::start(config, devices.clone()).await.unwrap();
    server.version_reports(&devices, |_| OLD.into()).await;

    let expires = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut expected = HashMap::new();
    for (i, d) in devices.iter().enumerate() {
        let dev = addr(d);
        let sha256 = if i / 3 == 2 {
            "0".repeat(64)
        } else {
            image.sha256.clone()
        };
        let o = Offer {
            module: "default".into(),
            version: NEW.into(),
            url: signer.url(&sha256, &d.product, &d.device, expires),
            size: image.size,
            md5: if i / 3 == 1 {
                "f".repeat(32)
            } else {
                image.md5.clone()
            },
            sha256: String::new(),
        };
        let seq = match i / 3 {
            0 => success_sequence(d.dialect),
            1 => failure_sequence(d.dialect, FailureKind::DigestMismatch),
            _ => failure_sequence(d.dialect, FailureKind::NotFound),
        };
        expected.insert(dev.clone(), seq);
        server.push(&dev, &o).await;
    }
    let seen = server
        .collect(|seen| {
            expected
                .iter()
                .all(|(dev, seq)| messages(seen.get(dev)).len() >= seq.len())
        })
        .await;
    let mut failed = HashSet::new();
    for d in &devices {
        let dev = addr(d);
        let got = messages(seen.get(&dev));
        // Failure messages name the cause; compare codes, not text.
        let strip = |ms: &[UpMessage]| -> Vec<Option<i32>> { ms.iter().map(failed_code).collect() };
        assert_eq!(strip(&got), strip(&expected[&dev]), "{}", d.device);
        assert_eq!(got.len(), expected[&dev].len(), "{}: {got:?}", d.device);
        if got.last().and_then(failed_code).is_some() {
            failed.insert(d.device.clone());
        }
    }
    assert_eq!(failed.len(), 6);
    assert_eq!(fleet.version("d000").as_deref(), Some(NEW));
    assert_eq!(fleet.version("d003").as_deref(), Some(OLD));
    fleet.stop().await;
}
