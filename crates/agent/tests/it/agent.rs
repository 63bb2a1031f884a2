//! The agent against a real broker and a real download server, with the test playing the OTA
//! server by hand: it answers the agent's requests, pushes offers, and asserts the reports the
//! agent sends in each dialect, and what the install command saw.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use otter_agent::{Agent, AgentConfig, BootSettings, DownloadSettings, InstallerKind, Restart};
use otter_blobs::{BlobInfo, Blobs};
use otter_broker::{Broker, BrokerConfig, BrokerEvent, Gate, Grant, Login, Refusal};
use otter_download::{DownloadState, UrlSigner, router, serve};
use otter_faultproxy::{Faults, Proxy};
use otter_protocol::{
    Answer, Credentials, DeviceAddr, Dialect, FailureKind, Offer, OfferExt, Progress, UpMessage,
    Uplink, answer, downstream_topics, encode_push_ext, failure_code, generate_secret_format,
    key_id, parse_uplink, upstream_topics, verify,
};
use otter_protocol::{KeyAnnouncement, SignedRelease, announcement_message, key_base64};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const SIZE: usize = 300_000;
const OLD: &str = "1.0.0";
const NEW: &str = "2.0.0";
const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(800);

/// Lets in exactly one device, with its dialect's real authentication and topic grants.
struct OneDevice {
    dialect: Dialect,
    dev: DeviceAddr,
    secret: String,
}

impl Gate for OneDevice {
    type Identity = DeviceAddr;

    async fn authenticate(&self, login: Login) -> Result<Grant<DeviceAddr>, Refusal> {
        let creds = Credentials {
            client_id: login.client_id,
            username: login.username,
            password: login.password,
        };
        verify(self.dialect, &self.dev, &self.secret, &creds)
            .map_err(|_| Refusal::BadCredentials)?;
        Ok(Grant {
            identity: self.dev.clone(),
            publish_topics: upstream_topics(self.dialect, &self.dev),
            receive_topics: downstream_topics(self.dialect, &self.dev),
        })
    }
}

/// The server side: broker, download server, one firmware image, and the agent under test.
struct Rig {
    dialect: Dialect,
    dev: DeviceAddr,
    broker: Broker<DeviceAddr>,
    events: mpsc::Receiver<BrokerEvent<DeviceAddr>>,
    signer: Arc<UrlSigner>,
    image: BlobInfo,
    data: Vec<u8>,
    /// A second image: `data` with one byte flipped.
    corrupted: BlobInfo,
    /// Sits between the agent and the download server when started with faults.
    proxy: Option<Proxy>,
    /// What the agent is configured with (beyond the install command).
    settings: Settings,
    /// What the server answers to a job request.
    job: Option<Offer>,
    next_push_id: u64,
    state: tempfile::TempDir,
    _blobs: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    agent: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Agent settings a test may change.
#[derive(Clone, Default)]
struct Settings {
    installer: Option<InstallerKind>,
    trusted_keys: Vec<[u8; 32]>,
    download: DownloadSettings,
    boot: BootSettings,
}

impl Rig {
    async fn start(dialect: Dialect) -> Rig {
        Rig::start_with(dialect, default_data(SIZE), None).await
    }

    /// A rig serving `data`, downloads going through a fault proxy when `faults` is given.
    async fn start_with(dialect: Dialect, data: Vec<u8>, faults: Option<Faults>) -> Rig {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dev = DeviceAddr::new("PROD1", "dev-1");
        let blob_dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(blob_dir.path().to_str().unwrap()).unwrap();
        let image = blobs.ingest(&data[..]).await.unwrap();
        let mut bad = data.clone();
        if let Some(b) = bad.get_mut(data.len() / 2) {
            *b ^= 0xff;
        }
        let corrupted = blobs.ingest(&bad[..]).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let proxy = match faults {
            Some(faults) => Some(Proxy::start(http, faults).await.unwrap()),
            None => None,
        };
        let public = proxy.as_ref().map_or(http, Proxy::addr);
        let signer = Arc::new(UrlSigner::new(b"test key", &format!("http://{public}")));
        let app = router(DownloadState {
            blobs,
            signer: signer.clone(),
        });
        tokio::spawn(serve(listener, app, std::future::pending()));
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let (broker, events) = start_broker(dialect, &dev, listen).await;
        Rig {
            dialect,
            dev,
            broker,
            events,
            signer,
            image,
            data,
            corrupted,
            proxy,
            settings: Settings::default(),
            job: None,
            next_push_id: 100,
            state: tempfile::tempdir().unwrap(),
            _blobs: blob_dir,
            stop: None,
            agent: None,
        }
    }

    /// Replaces the broker with a fresh one on the same address, dropping every connection.
    async fn restart_broker(&mut self) {
        self.restart_broker_after(Duration::ZERO).await;
    }

    /// Stops the broker, waits `down`, and starts a fresh one on the same address.
    async fn restart_broker_after(&mut self, down: Duration) {
        let addr = self.broker.local_addr();
        self.broker.clone().shutdown().await;
        tokio::time::sleep(down).await;
        let (broker, events) = start_broker(self.dialect, &self.dev, addr).await;
        self.broker = broker;
        self.events = events;
    }

    fn marker(&self) -> PathBuf {
        self.state.path().join("installed.env")
    }

    fn installed_copy(&self) -> PathBuf {
        self.state.path().join("installed.bin")
    }

    /// The install command records its environment and a copy of the image, then exits `exit`.
    fn install_command(&self, exit: u8) -> String {
        self.slow_install_command(exit, 0)
    }

    /// [`Self::install_command`] taking `secs` seconds.
    fn slow_install_command(&self, exit: u8, secs: u8) -> String {
        format!(
            "sleep {secs} && printf '%s\\n' \"$OTTER_FIRMWARE_PATH\" \"$OTTER_FIRMWARE_VERSION\" \
             \"$OTTER_FIRMWARE_MD5\" \"$OTTER_FIRMWARE_SHA256\" > '{}' && \
             cp \"$OTTER_FIRMWARE_PATH\" '{}' && exit {exit}",
            self.marker().display(),
            self.installed_copy().display()
        )
    }

    fn config(&self, install_command: Option<String>) -> AgentConfig {
        AgentConfig {
            broker: self.broker.local_addr().to_string(),
            dialect: self.dialect,
            product: self.dev.product.clone(),
            device: self.dev.device.clone(),
            secret: generate_secret_format(self.dialect, &[7u8; 16]),
            version: OLD.into(),
            module: "default".into(),
            state_dir: self.state.path().join("agent"),
            installer: self.settings.installer.clone().unwrap_or_else(|| {
                install_command.map_or(InstallerKind::RecordOnly, InstallerKind::Command)
            }),
            trusted_keys: self.settings.trusted_keys.clone(),
            download: self.settings.download.clone(),
            boot: self.settings.boot.clone(),
            health_reports: None,
        }
    }

    /// Starts the agent and waits for its first version report (and job request).
    async fn run_agent(&mut self, install_exit: u8) {
        self.run_agent_with(self.install_command(install_exit))
            .await;
    }

    async fn run_agent_with(&mut self, install_command: String) {
        let agent = Agent::new(self.config(Some(install_command))).unwrap();
        assert_eq!(agent.current_version(), OLD);
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.agent = Some(tokio::spawn(agent.run(async {
            let _ = stopped.await;
        })));
        let first = self.next_uplink().await;
        assert_eq!(first.message, version_report(OLD), "first report");
        if self.dialect != Dialect::Tencent {
            let second = self.next_uplink().await;
            assert!(matches!(second.message, UpMessage::FirmwareRequest { .. }));
        }
    }

    /// Stops the agent and checks it returns cleanly.
    async fn stop_agent(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(agent) = self.agent.take() {
            let result = tokio::time::timeout(Duration::from_secs(5), agent).await;
            result.expect("agent stops").unwrap().unwrap();
        }
    }

    fn offer(&self, version: &str) -> Offer {
        Offer {
            module: "default".into(),
            version: version.into(),
            url: self.url(&self.image.sha256, later()),
            size: self.image.size,
            md5: self.image.md5.clone(),
            sha256: String::new(),
        }
    }

    fn url(&self, sha256: &str, expires: u64) -> String {
        self.signer
            .url(sha256, &self.dev.product, &self.dev.device, expires)
    }

    async fn push(&mut self, offer: &Offer) {
        self.push_ext(offer, &OfferExt::default()).await;
    }

    /// A push carrying Otter's extension fields.
    async fn push_ext(&mut self, offer: &Offer, ext: &OfferExt) {
        self.next_push_id += 1;
        let out = encode_push_ext(self.dialect, &self.dev, offer, ext, self.next_push_id);
        self.publish(&out.topic, out.payload).await;
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.broker
            .publish(topic, Bytes::from(payload), 1)
            .await
            .unwrap();
    }

    /// The agent's next report, answered as Otter would answer it.
    async fn next_uplink(&mut self) -> Uplink {
        self.try_next_uplink(WAIT)
            .await
            .expect("a report from the agent")
    }

    async fn try_next_uplink(&mut self, wait: Duration) -> Option<Uplink> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
            let Ok(Some(event)) = event else { return None };
            let BrokerEvent::Message { topic, payload, .. } = event else {
                continue;
            };
            let uplink = parse_uplink(&topic, &payload)
                .unwrap_or_else(|r| panic!("agent sent an invalid report on {topic}: {r:?}"));
            assert_eq!(uplink.device, self.dev);
            let reply = match &uplink.message {
                UpMessage::FirmwareRequest { .. } => Answer::Offer(self.job.clone()),
                _ => Answer::Ack,
            };
            if let Some(out) = answer(&uplink, reply) {
                self.publish(&out.topic, out.payload).await;
            }
            return Some(uplink);
        }
    }

    /// Reports up to and including the first one `last` accepts.
    async fn reports_until(&mut self, last: impl Fn(&UpMessage) -> bool) -> Vec<UpMessage> {
        let mut seen = vec![];
        loop {
            let message = self.next_uplink().await.message;
            let done = last(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    async fn assert_quiet(&mut self) {
        if let Some(u) = self.try_next_uplink(QUIET).await {
            panic!("unexpected report {u:?}");
        }
    }

    fn downloads_left(&self) -> usize {
        let dir = self.state.path().join("agent/downloads");
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }
}

async fn start_broker(
    dialect: Dialect,
    dev: &DeviceAddr,
    listen: SocketAddr,
) -> (Broker<DeviceAddr>, mpsc::Receiver<BrokerEvent<DeviceAddr>>) {
    let gate = OneDevice {
        dialect,
        dev: dev.clone(),
        secret: generate_secret_format(dialect, &[7u8; 16]),
    };
    let (tx, events) = mpsc::channel(256);
    let broker = Broker::start(BrokerConfig::new(listen), Arc::new(gate), tx)
        .await
        .unwrap();
    (broker, events)
}

fn default_data(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 253) as u8).collect()
}

fn later() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

fn version_report(version: &str) -> UpMessage {
    UpMessage::VersionReport {
        module: "default".into(),
        version: version.into(),
    }
}

fn is_version(version: &'static str) -> impl Fn(&UpMessage) -> bool {
    move |m| *m == version_report(version)
}

fn is_failure(m: &UpMessage) -> bool {
    matches!(
        m,
        UpMessage::Progress {
            progress: Progress::Failed { .. },
            ..
        }
    )
}

fn progress_of(m: &UpMessage) -> Option<&Progress> {
    match m {
        UpMessage::Progress {
            progress, version, ..
        } => {
            assert_eq!(version.as_deref(), Some(NEW), "progress names the target");
            Some(progress)
        }
        _ => None,
    }
}

/// Downloading 0 → 100 in non-decreasing steps, then the dialect's closing states and the new
/// version.
fn assert_successful_sequence(dialect: Dialect, reports: &[UpMessage]) {
    let percents: Vec<u8> = reports
        .iter()
        .filter_map(progress_of)
        .filter_map(|p| match p {
            Progress::Downloading { percent } => Some(*percent),
            _ => None,
        })
        .collect();
    assert_eq!(percents.first(), Some(&0), "{reports:?}");
    assert_eq!(percents.last(), Some(&100), "{reports:?}");
    assert!(percents.windows(2).all(|w| w[0] < w[1]), "{percents:?}");
    let n = percents.len();
    let after: Vec<&UpMessage> = reports.iter().skip(n).collect();
    let expected_tail: Vec<UpMessage> = match dialect {
        Dialect::Tencent => vec![
            progress(Progress::Burning),
            progress(Progress::Done),
            version_report(NEW),
        ],
        Dialect::Aliyun | Dialect::Enos => vec![version_report(NEW)],
    };
    assert_eq!(
        after,
        expected_tail.iter().collect::<Vec<_>>(),
        "{reports:?}"
    );
}

fn progress(progress: Progress) -> UpMessage {
    UpMessage::Progress {
        module: "default".into(),
        version: Some(NEW.into()),
        progress,
    }
}

fn failure_code_of(m: &UpMessage) -> i32 {
    match progress_of(m) {
        Some(Progress::Failed { code, .. }) => *code,
        other => panic!("not a failure: {other:?}"),
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Push → download → install → the new version, and what the install command was given.
async fn pushed_upgrade_installs(dialect: Dialect) {
    let mut rig = Rig::start(dialect).await;
    rig.run_agent(0).await;
    // Junk on the push topic must not disturb the agent.
    let push_topic = downstream_topics(dialect, &rig.dev)[0].clone();
    rig.publish(&push_topic, b"{not json".to_vec()).await;
    rig.publish(&push_topic, b"{\"type\":\"update_firmware\"}".to_vec())
        .await;
    rig.publish(&push_topic, b"[1,2,3]".to_vec()).await;

    let offer = rig.offer(NEW);
    rig.push(&offer).await;
    let reports = rig.reports_until(is_version(NEW)).await;
    assert_successful_sequence(dialect, &reports);

    let env = read_lines(&rig.marker());
    let sha256 = rig.image.sha256.clone();
    assert_eq!(env[1..], [NEW.to_owned(), rig.image.md5.clone(), sha256]);
    assert!(env[0].starts_with(rig.state.path().join("agent").to_str().unwrap()));
    assert_eq!(std::fs::read(rig.installed_copy()).unwrap(), rig.data);
    assert_eq!(
        rig.downloads_left(),
        0,
        "the image is removed after install"
    );

    // The same push again: the device already runs it, so it just reports the version.
    rig.push(&offer).await;
    assert_eq!(rig.next_uplink().await.message, version_report(NEW));
    rig.assert_quiet().await;
    rig.stop_agent().await;

    // The new version survives a restart.
    let again = Agent::new(rig.config(None)).unwrap();
    assert_eq!(again.current_version(), NEW);
}

#[tokio::test]
async fn tencent_pushed_upgrade_installs() {
    pushed_upgrade_installs(Dialect::Tencent).await;
}

#[tokio::test]
async fn aliyun_pushed_upgrade_installs() {
    pushed_upgrade_installs(Dialect::Aliyun).await;
}

#[tokio::test]
async fn enos_pushed_upgrade_installs() {
    pushed_upgrade_installs(Dialect::Enos).await;
}

/// The job comes in the answer to the agent's own request, not as a push.
async fn requested_job_installs(dialect: Dialect) {
    let mut rig = Rig::start(dialect).await;
    rig.job = Some(rig.offer(NEW));
    let agent = Agent::new(rig.config(Some(rig.install_command(0)))).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    rig.stop = Some(stop);
    rig.agent = Some(tokio::spawn(agent.run(async {
        let _ = stopped.await;
    })));
    let reports = rig.reports_until(is_version(NEW)).await;
    assert_eq!(reports[0], version_report(OLD));
    assert!(matches!(reports[1], UpMessage::FirmwareRequest { .. }));
    assert_successful_sequence(dialect, &reports[2..]);
    assert_eq!(read_lines(&rig.marker())[1], NEW);
    rig.stop_agent().await;
}

#[tokio::test]
async fn aliyun_requested_job_installs() {
    requested_job_installs(Dialect::Aliyun).await;
}

#[tokio::test]
async fn enos_requested_job_installs() {
    requested_job_installs(Dialect::Enos).await;
}

/// An image whose MD5 differs from the offer is reported with the dialect's code and never
/// installed; the agent keeps its version and keeps serving.
async fn corrupted_image_is_refused(dialect: Dialect) {
    let mut rig = Rig::start(dialect).await;
    rig.run_agent(0).await;
    let mut offer = rig.offer(NEW);
    offer.md5 = "0".repeat(32);
    rig.push(&offer).await;
    let reports = rig.reports_until(is_failure).await;
    let last = reports.last().unwrap();
    assert_eq!(
        failure_code_of(last),
        failure_code(dialect, FailureKind::DigestMismatch)
    );
    rig.assert_quiet().await;
    assert!(!rig.marker().exists(), "nothing was installed");
    assert_eq!(rig.downloads_left(), 0, "the bad image was deleted");

    // Still alive and still on the old version.
    rig.push(&rig.offer(OLD)).await;
    assert_eq!(rig.next_uplink().await.message, version_report(OLD));
    rig.stop_agent().await;
}

#[tokio::test]
async fn tencent_corrupted_image_is_refused() {
    corrupted_image_is_refused(Dialect::Tencent).await;
}

#[tokio::test]
async fn aliyun_corrupted_image_is_refused() {
    corrupted_image_is_refused(Dialect::Aliyun).await;
}

#[tokio::test]
async fn enos_corrupted_image_is_refused() {
    corrupted_image_is_refused(Dialect::Enos).await;
}

/// HTTP refusals map to Tencent's codes: 404 → -2, 403 → -3; a wrong size is a digest failure.
#[tokio::test]
async fn tencent_download_failures_have_their_codes() {
    let mut rig = Rig::start(Dialect::Tencent).await;
    rig.run_agent(0).await;
    let cases = [
        (rig.url(&"0".repeat(64), later()), rig.image.size, -2),
        (rig.url(&rig.image.sha256, 1), rig.image.size, -3),
        (rig.url(&rig.image.sha256, later()), rig.image.size - 1, -4),
        (rig.url(&rig.image.sha256, later()), rig.image.size + 1, -4),
    ];
    for (url, size, code) in cases {
        let offer = Offer {
            url,
            size,
            ..rig.offer(NEW)
        };
        rig.push(&offer).await;
        let reports = rig.reports_until(is_failure).await;
        assert_eq!(
            failure_code_of(reports.last().unwrap()),
            code,
            "{reports:?}"
        );
    }
    assert!(!rig.marker().exists());
    assert_eq!(rig.downloads_left(), 0);
    rig.stop_agent().await;
}

/// A failing install command is reported as a flashing failure and the version is unchanged.
#[tokio::test]
async fn aliyun_failed_install_is_reported() {
    let mut rig = Rig::start(Dialect::Aliyun).await;
    rig.run_agent(3).await;
    rig.push(&rig.offer(NEW)).await;
    let reports = rig.reports_until(is_failure).await;
    assert_eq!(
        failure_code_of(reports.last().unwrap()),
        failure_code(Dialect::Aliyun, FailureKind::InstallFailed)
    );
    assert_eq!(read_lines(&rig.marker())[1], NEW, "the command did run");
    rig.assert_quiet().await;
    rig.stop_agent().await;
    assert_eq!(Agent::new(rig.config(None)).unwrap().current_version(), OLD);
}

/// A second push while an upgrade is in progress is ignored: one download, one install.
#[tokio::test]
async fn enos_second_push_during_upgrade_is_ignored() {
    let mut rig = Rig::start(Dialect::Enos).await;
    rig.run_agent_with(rig.slow_install_command(0, 1)).await;
    let offer = rig.offer(NEW);
    rig.push(&offer).await;
    let first = rig.next_uplink().await.message;
    assert_eq!(first, progress(Progress::Downloading { percent: 0 }));
    rig.push(&offer).await;
    let mut reports = vec![first];
    reports.extend(rig.reports_until(is_version(NEW)).await);
    assert_successful_sequence(Dialect::Enos, &reports);
    rig.assert_quiet().await;
    rig.stop_agent().await;
}

/// A wrong secret is refused by the broker; the agent keeps retrying and stops on request.
#[tokio::test]
async fn refused_agent_retries_until_shutdown() {
    let mut rig = Rig::start(Dialect::Aliyun).await;
    let mut config = rig.config(None);
    config.secret = "ffffffffffffffffffffffffffffffff".into();
    let agent = Agent::new(config).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    rig.assert_quiet().await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("agent stops while backing off")
        .unwrap()
        .unwrap();
}

/// After the connection is lost the agent reconnects, reports its version again and still
/// receives pushes.
#[tokio::test]
async fn tencent_reconnects_and_reports_again() {
    let mut rig = Rig::start(Dialect::Tencent).await;
    rig.run_agent(0).await;
    rig.restart_broker().await;
    assert_eq!(rig.next_uplink().await.message, version_report(OLD));
    rig.push(&rig.offer(NEW)).await;
    let reports = rig.reports_until(is_version(NEW)).await;
    assert_successful_sequence(Dialect::Tencent, &reports);
    rig.stop_agent().await;
}

// ---- Weak networks, verification and trial boots (issue 4) ----

/// Quick retries so cut downloads do not make the tests slow.
fn quick_download() -> DownloadSettings {
    DownloadSettings {
        retry_backoff: Duration::from_millis(20),
        ..DownloadSettings::default()
    }
}

/// A download cut 20 times at random offsets completes, verifies and installs, and the agent
/// fetched hardly more than the image (every attempt resumes with a Range request).
#[tokio::test]
async fn download_cut_20_times_resumes_and_verifies() {
    const BIG: usize = 2_000_000;
    let faults = Faults {
        cut_random: Some((42, 20_000, 150_000)),
        max_cuts: Some(20),
        ..Faults::default()
    };
    let mut rig = Rig::start_with(Dialect::Tencent, default_data(BIG), Some(faults)).await;
    rig.settings.download = quick_download();
    rig.run_agent(0).await;
    rig.push(&rig.offer(NEW)).await;
    let reports = rig.reports_until(is_version(NEW)).await;
    assert!(!reports.iter().any(is_failure), "{reports:?}");
    let stats = rig.proxy.as_ref().unwrap().stats();
    assert_eq!(stats.cuts, 20, "{stats:?}");
    assert!(stats.connections >= 21, "{stats:?}");
    assert!(
        stats.bytes_down as f64 <= 1.1 * BIG as f64,
        "fetched {} bytes for a {BIG}-byte image",
        stats.bytes_down
    );
    assert_eq!(std::fs::read(rig.installed_copy()).unwrap(), rig.data);
    assert_eq!(rig.downloads_left(), 0);
    rig.stop_agent().await;
}

/// A download that receives nothing is cut after the stall timeout, retried, then reported as
/// a download timeout (Tencent -1); a re-push once the network is back completes it.
#[tokio::test]
async fn stalled_download_times_out_then_a_repush_completes() {
    let faults = Faults {
        bandwidth: Some(0),
        ..Faults::default()
    };
    let mut rig = Rig::start_with(Dialect::Tencent, default_data(SIZE), Some(faults)).await;
    rig.settings.download = DownloadSettings {
        stall_timeout: Duration::from_millis(300),
        retries: 1,
        ..quick_download()
    };
    rig.run_agent(0).await;
    let offer = rig.offer(NEW);
    rig.push(&offer).await;
    let reports = rig.reports_until(is_failure).await;
    assert_eq!(failure_code_of(reports.last().unwrap()), -1, "{reports:?}");
    assert!(!rig.marker().exists());

    rig.proxy.as_ref().unwrap().set_faults(Faults::default());
    rig.push(&offer).await;
    rig.reports_until(is_version(NEW)).await;
    assert_eq!(std::fs::read(rig.installed_copy()).unwrap(), rig.data);
    rig.stop_agent().await;
}

/// Served bytes that do not match the offer's digests (a corrupted image) are reported with the
/// dialect's verification code and never installed.
async fn corrupted_download_is_refused(dialect: Dialect) {
    let mut rig = Rig::start(dialect).await;
    rig.run_agent(0).await;
    let offer = Offer {
        url: rig.url(&rig.corrupted.sha256, later()),
        ..rig.offer(NEW)
    };
    rig.push_ext(
        &offer,
        &OfferExt {
            sha256: Some(rig.image.sha256.clone()),
            ..OfferExt::default()
        },
    )
    .await;
    let reports = rig.reports_until(is_failure).await;
    assert_eq!(
        failure_code_of(reports.last().unwrap()),
        failure_code(dialect, FailureKind::DigestMismatch)
    );
    assert!(!rig.marker().exists(), "nothing was installed");
    assert_eq!(rig.downloads_left(), 0, "the bad image was deleted");
    rig.stop_agent().await;
}

#[tokio::test]
async fn tencent_corrupted_download_is_refused() {
    corrupted_download_is_refused(Dialect::Tencent).await;
}

#[tokio::test]
async fn enos_corrupted_download_is_refused() {
    corrupted_download_is_refused(Dialect::Enos).await;
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The signature extension of an offer of `version` of `rig`'s image, signed by `key` over
/// `product`, issued at `issued`, valid until `expires`.
fn sign_release(
    rig: &Rig,
    key: &SigningKey,
    product: &str,
    version: &str,
    (issued, expires, downgrade): (u64, u64, bool),
) -> OfferExt {
    let release = SignedRelease {
        product: product.into(),
        module: "default".into(),
        version: version.into(),
        size: rig.image.size,
        sha256: rig.image.sha256.clone(),
        issued,
        expires,
        downgrade,
    };
    let msg = release.message().unwrap();
    OfferExt {
        sha256: Some(rig.image.sha256.clone()),
        sig: Some(B64.encode(key.sign(msg.as_bytes()).to_bytes())),
        key: Some(key_id(&key.verifying_key().to_bytes())),
        issued: Some(issued),
        expires: Some(expires),
        downgrade,
        rotation: vec![],
    }
}

/// [`sign_release`] issued now, valid for an hour, no downgrade.
fn signed_ext(rig: &Rig, key: &SigningKey, product: &str, version: &str) -> OfferExt {
    sign_release(rig, key, product, version, (now(), later(), false))
}

/// `old` announces `new` as a key of `product`.
fn announce(old: &SigningKey, new: &SigningKey, product: &str) -> KeyAnnouncement {
    let pk = new.verifying_key().to_bytes();
    let msg = announcement_message(product, &pk).unwrap();
    KeyAnnouncement {
        key: key_base64(&pk),
        signed_by: key_id(&old.verifying_key().to_bytes()),
        sig: B64.encode(old.sign(msg.as_bytes()).to_bytes()),
    }
}

/// The code of a failure report, whatever version it names.
fn any_failure_code(m: &UpMessage) -> i32 {
    match m {
        UpMessage::Progress {
            progress: Progress::Failed { code, .. },
            ..
        } => *code,
        other => panic!("not a failure: {other:?}"),
    }
}

impl Rig {
    /// Pushes an offer that must be refused before any download: one failure report with the
    /// verification code, no download, the installed version unchanged.
    async fn assert_refused(&mut self, version: &str, ext: &OfferExt) {
        let installed = self.marker().exists().then(|| read_lines(&self.marker()));
        let before = self.downloads_left();
        self.push_ext(&self.offer(version), ext).await;
        let reports = self.reports_until(is_failure).await;
        assert_eq!(reports.len(), 1, "refused before downloading: {reports:?}");
        let code = failure_code(self.dialect, FailureKind::DigestMismatch);
        assert_eq!(any_failure_code(&reports[0]), code, "{ext:?}");
        assert_eq!(self.downloads_left(), before);
        let now_installed = self.marker().exists().then(|| read_lines(&self.marker()));
        assert_eq!(installed, now_installed, "nothing was installed");
    }

    fn installed_version(&self) -> String {
        read_lines(&self.marker())[1].clone()
    }
}

/// Expired, replayed (signed before a signature already accepted) and downgrade offers are
/// refused with the verification code before any download; a downgrade the signer allowed
/// installs.
async fn stale_and_downgrade_offers_are_refused(dialect: Dialect) {
    let key = SigningKey::from_bytes(&[21u8; 32]);
    let mut rig = Rig::start(dialect).await;
    rig.settings.trusted_keys = vec![key.verifying_key().to_bytes()];
    rig.run_agent(0).await;
    let p = rig.dev.product.clone();
    let t = now();
    let expired = sign_release(&rig, &key, &p, NEW, (t - 100, t - 10, false));
    rig.assert_refused(NEW, &expired).await;
    assert!(!rig.marker().exists());
    let good = sign_release(&rig, &key, &p, NEW, (t, t + 3600, false));
    rig.push_ext(&rig.offer(NEW), &good).await;
    rig.reports_until(is_version(NEW)).await;
    assert_eq!(rig.installed_version(), NEW);
    let trust = std::fs::read_to_string(rig.state.path().join("agent/trust.json")).unwrap();
    assert!(trust.contains(&t.to_string()), "{trust}");
    // A genuine, unexpired signature made before the one accepted: a replay.
    let replay = sign_release(&rig, &key, &p, "3.0.0", (t - 50, t + 3600, false));
    rig.assert_refused("3.0.0", &replay).await;
    // Back to the old version without the signer's permission.
    let down = sign_release(&rig, &key, &p, OLD, (t + 10, t + 3600, false));
    rig.assert_refused(OLD, &down).await;
    assert_eq!(rig.installed_version(), NEW);
    let allowed = sign_release(&rig, &key, &p, OLD, (t + 20, t + 3600, true));
    rig.push_ext(&rig.offer(OLD), &allowed).await;
    rig.reports_until(is_version(OLD)).await;
    assert_eq!(rig.installed_version(), OLD);
    rig.stop_agent().await;
}

#[tokio::test]
async fn tencent_stale_and_downgrade_offers_are_refused() {
    stale_and_downgrade_offers_are_refused(Dialect::Tencent).await;
}

#[tokio::test]
async fn aliyun_stale_and_downgrade_offers_are_refused() {
    stale_and_downgrade_offers_are_refused(Dialect::Aliyun).await;
}

/// An agent trusting only the old key accepts firmware signed by a new key once the offer
/// carries the old key's announcement of it, remembers it, and refuses forged announcements.
async fn rotated_key_is_learned_from_the_offer(dialect: Dialect) {
    let old = SigningKey::from_bytes(&[31u8; 32]);
    let new = SigningKey::from_bytes(&[32u8; 32]);
    let mallory = SigningKey::from_bytes(&[33u8; 32]);
    let mut rig = Rig::start(dialect).await;
    rig.settings.trusted_keys = vec![old.verifying_key().to_bytes()];
    rig.run_agent(0).await;
    let p = rig.dev.product.clone();
    let by_new = signed_ext(&rig, &new, &p, NEW);
    rig.assert_refused(NEW, &by_new).await;
    // Announced by a key the device does not trust.
    let self_signed = OfferExt {
        rotation: vec![announce(&mallory, &new, &p)],
        ..by_new.clone()
    };
    rig.assert_refused(NEW, &self_signed).await;
    // The old key's signature over another key.
    let mut forged = announce(&old, &mallory, &p);
    forged.key = announce(&old, &new, &p).key;
    let forged = OfferExt {
        rotation: vec![forged],
        ..by_new.clone()
    };
    rig.assert_refused(NEW, &forged).await;
    // Announced for another product.
    let elsewhere = OfferExt {
        rotation: vec![announce(&old, &new, "OTHER")],
        ..by_new.clone()
    };
    rig.assert_refused(NEW, &elsewhere).await;
    assert!(!rig.marker().exists());
    let rotated = OfferExt {
        rotation: vec![announce(&old, &new, &p)],
        ..by_new
    };
    rig.push_ext(&rig.offer(NEW), &rotated).await;
    rig.reports_until(is_version(NEW)).await;
    // Learned for good: the next release needs no announcement.
    let next = signed_ext(&rig, &new, &p, "3.0.0");
    rig.push_ext(&rig.offer("3.0.0"), &next).await;
    rig.reports_until(is_version("3.0.0")).await;
    assert_eq!(rig.installed_version(), "3.0.0");
    let trust = std::fs::read_to_string(rig.state.path().join("agent/trust.json")).unwrap();
    assert!(
        trust.contains(&key_id(&old.verifying_key().to_bytes())),
        "{trust}"
    );
    rig.stop_agent().await;
}

#[tokio::test]
async fn tencent_rotated_key_is_learned_from_the_offer() {
    rotated_key_is_learned_from_the_offer(Dialect::Tencent).await;
}

#[tokio::test]
async fn enos_rotated_key_is_learned_from_the_offer() {
    rotated_key_is_learned_from_the_offer(Dialect::Enos).await;
}

/// With a trusted key configured, unsigned and badly signed offers are refused with the
/// verification code before anything is downloaded or installed; a good signature installs.
async fn signatures_are_enforced(dialect: Dialect) {
    let ours = SigningKey::from_bytes(&[11u8; 32]);
    let theirs = SigningKey::from_bytes(&[12u8; 32]);
    let mut rig = Rig::start(dialect).await;
    rig.settings.trusted_keys = vec![ours.verifying_key().to_bytes()];
    rig.run_agent(0).await;
    let offer = rig.offer(NEW);
    let product = rig.dev.product.clone();
    let forged = OfferExt {
        key: None,
        ..signed_ext(&rig, &theirs, &product, NEW)
    };
    let other_product = signed_ext(&rig, &ours, "OTHER", NEW);
    let code = failure_code(dialect, FailureKind::DigestMismatch);
    for ext in [OfferExt::default(), forged, other_product] {
        let before = rig.proxy_free_downloads();
        rig.push_ext(&offer, &ext).await;
        let reports = rig.reports_until(is_failure).await;
        assert_eq!(reports.len(), 1, "refused before downloading: {reports:?}");
        assert_eq!(failure_code_of(&reports[0]), code, "{ext:?}");
        assert_eq!(rig.proxy_free_downloads(), before);
        assert!(!rig.marker().exists(), "nothing was installed");
    }
    let good = signed_ext(&rig, &ours, &product, NEW);
    rig.push_ext(&offer, &good).await;
    let reports = rig.reports_until(is_version(NEW)).await;
    assert_successful_sequence(dialect, &reports);
    rig.stop_agent().await;
}

impl Rig {
    /// Files in the downloads folder (a refused offer never creates one).
    fn proxy_free_downloads(&self) -> usize {
        self.downloads_left()
    }

    /// A/B slots in the state folder, slot A holding `old` and current.
    fn ab_slots(&self, old: &[u8]) -> PathBuf {
        let dir = self.state.path().join("slots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("slot-a"), old).unwrap();
        std::os::unix::fs::symlink("slot-a", dir.join("current")).unwrap();
        dir
    }
}

#[tokio::test]
async fn tencent_signatures_are_enforced() {
    signatures_are_enforced(Dialect::Tencent).await;
}

#[tokio::test]
async fn aliyun_signatures_are_enforced() {
    signatures_are_enforced(Dialect::Aliyun).await;
}

#[tokio::test]
async fn enos_signatures_are_enforced() {
    signatures_are_enforced(Dialect::Enos).await;
}

/// Firmware images for the A/B tests: shell scripts whose exit status is their health.
const HEALTHY: &[u8] = b"#!/bin/sh\nexit 0\n";
const BROKEN: &[u8] = b"#!/bin/sh\nexit 1\n";

/// A/B slots whose health check runs the current slot: `new` decides whether it stays.
async fn ab_rig(dialect: Dialect, new: &[u8]) -> (Rig, PathBuf) {
    let mut rig = Rig::start_with(dialect, new.to_vec(), None).await;
    let slots = rig.ab_slots(HEALTHY);
    rig.settings.installer = Some(InstallerKind::AbSlots(slots.clone()));
    rig.settings.boot = BootSettings {
        health_command: Some(format!("sh '{}'", slots.join("current").display())),
        health_deadline: Duration::from_secs(2),
        ..BootSettings::default()
    };
    (rig, slots)
}

fn current_slot(slots: &Path) -> PathBuf {
    std::fs::read_link(slots.join("current")).unwrap()
}

/// An image that fails its health check is rolled back: the old slot is current again, and
/// the failure code then the old version are reported; the old version survives a restart.
async fn unhealthy_image_is_rolled_back(dialect: Dialect) {
    let (mut rig, slots) = ab_rig(dialect, BROKEN).await;
    rig.run_agent(0).await;
    rig.push(&rig.offer(NEW)).await;
    let reports = rig.reports_until(is_failure).await;
    assert_eq!(
        failure_code_of(reports.last().unwrap()),
        failure_code(dialect, FailureKind::InstallFailed),
        "{reports:?}"
    );
    assert_eq!(rig.next_uplink().await.message, version_report(OLD));
    assert_eq!(current_slot(&slots), PathBuf::from("slot-a"));
    assert_eq!(std::fs::read(slots.join("slot-b")).unwrap(), BROKEN);
    let old_runs = std::process::Command::new("sh")
        .arg(slots.join("current"))
        .status()
        .unwrap();
    assert!(old_runs.success(), "the old image runs");
    rig.assert_quiet().await;
    rig.stop_agent().await;
    assert_eq!(Agent::new(rig.config(None)).unwrap().current_version(), OLD);
    assert!(!rig.state.path().join("agent/boot.json").exists());
}

#[tokio::test]
async fn tencent_unhealthy_image_is_rolled_back() {
    unhealthy_image_is_rolled_back(Dialect::Tencent).await;
}

#[tokio::test]
async fn aliyun_unhealthy_image_is_rolled_back() {
    unhealthy_image_is_rolled_back(Dialect::Aliyun).await;
}

/// A healthy image stays: slot B is current and the new version is reported.
#[tokio::test]
async fn enos_healthy_image_is_committed() {
    let (mut rig, slots) = ab_rig(Dialect::Enos, HEALTHY).await;
    rig.run_agent(0).await;
    rig.push(&rig.offer(NEW)).await;
    let reports = rig.reports_until(is_version(NEW)).await;
    assert!(!reports.iter().any(is_failure), "{reports:?}");
    assert_eq!(current_slot(&slots), PathBuf::from("slot-b"));
    rig.stop_agent().await;
    assert_eq!(Agent::new(rig.config(None)).unwrap().current_version(), NEW);
}

/// With a restart hook, the agent stops after switching; started again it runs the health
/// check, confirms, and reports the new version.
#[tokio::test]
async fn tencent_restart_hook_then_confirm_on_next_start() {
    let (mut rig, slots) = ab_rig(Dialect::Tencent, HEALTHY).await;
    let restarted = rig.state.path().join("restarted");
    rig.settings.boot.restart = Restart::Command(format!("touch '{}'", restarted.display()));
    rig.run_agent(0).await;
    rig.push(&rig.offer(NEW)).await;
    rig.reports_until(|m| progress_of(m) == Some(&Progress::Burning))
        .await;
    let agent = rig.agent.take().unwrap();
    tokio::time::timeout(WAIT, agent)
        .await
        .expect("the agent stops for the restart")
        .unwrap()
        .unwrap();
    assert!(restarted.exists());
    assert_eq!(current_slot(&slots), PathBuf::from("slot-b"));

    // The "device" comes back: the trial is confirmed before connecting, then reported.
    let agent = Agent::new(rig.config(None)).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    rig.stop = Some(stop);
    rig.agent = Some(tokio::spawn(agent.run(async {
        let _ = stopped.await;
    })));
    let mut reports = rig.reports_until(is_version(NEW)).await;
    // `burning` may come again if the restart beat its acknowledgement (at least once).
    reports.retain(|m| progress_of(m) != Some(&Progress::Burning));
    assert_eq!(reports, [progress(Progress::Done), version_report(NEW)]);
    rig.stop_agent().await;
}

/// Results produced while the broker is away are sent once the agent is back.
#[tokio::test]
async fn tencent_results_made_offline_are_sent_on_reconnect() {
    let mut rig = Rig::start(Dialect::Tencent).await;
    rig.run_agent_with(rig.slow_install_command(0, 2)).await;
    rig.push(&rig.offer(NEW)).await;
    rig.reports_until(|m| progress_of(m) == Some(&Progress::Burning))
        .await;
    // The install finishes while the broker is down.
    rig.restart_broker_after(Duration::from_secs(3)).await;
    let reports = rig.reports_until(|m| *m == version_report(NEW)).await;
    assert!(reports.contains(&progress(Progress::Done)), "{reports:?}");
    assert!(rig.marker().exists());
    rig.stop_agent().await;
}
