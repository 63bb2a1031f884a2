//! A fleet simulator: many simulated devices in one process, on one tokio runtime, each a
//! small task with its own MQTT connection speaking its vendor dialect exactly as the SDKs do
//! (through otter-protocol). It exists for tests that drive hundreds of devices through a real
//! server, and for demos and load (`otter simulate`). Devices report their version on every
//! connect, act on pushes according to a [`Behavior`], and reconnect forever when the broker
//! goes away.

mod cell;
mod chance;
mod device;
mod script;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use otter_protocol::{DeviceAddr, Dialect};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use cell::Cell;

/// How many devices may be in the middle of connecting at once (first connect and reconnects).
pub const CONNECT_CONCURRENCY: usize = 64;
/// How many devices may be downloading at once (the others wait their turn): a fleet of
/// thousands in one process, each connection a file, must stay under its open-file limit.
pub const DOWNLOAD_CONCURRENCY: usize = 256;
/// How long [`Fleet::stop`] waits for the devices to say goodbye before aborting them.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What a simulated device does with a firmware offer for a version it does not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behavior {
    /// Downloads 0/50/100 (Tencent: burning, done), switches version and reports it.
    Succeed,
    /// Reports downloading 0, then the dialect's download-failure code.
    FailDownload,
    /// Reports downloading 0/50/100, then the dialect's verification-failure code.
    FailVerify,
    /// Reports downloading 0/50/100 (Tencent: burning), then the dialect's install-failure code.
    FailInstall,
    /// Connects and reports its version, never acts on an offer (not even re-reporting).
    Ignore,
}

/// One device of the fleet.
#[derive(Clone, PartialEq, Eq)]
pub struct SimDevice {
    pub dialect: Dialect,
    /// Product id / product key.
    pub product: String,
    /// Device name / device key.
    pub device: String,
    /// Device secret as the server knows it (Tencent base64, others as issued).
    pub secret: String,
    /// The version it runs at start.
    pub version: String,
    pub behavior: Behavior,
}

impl fmt::Debug for SimDevice {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDevice")
            .field("dialect", &self.dialect)
            .field("product", &self.product)
            .field("device", &self.device)
            .field("version", &self.version)
            .field("behavior", &self.behavior)
            .finish_non_exhaustive()
    }
}

/// Random faults for demos, applied to [`Behavior::Succeed`] devices only, drawn per offer from
/// a per-device generator seeded by `seed` and the device's name (so runs are repeatable).
/// Rates are probabilities in `0.0..=1.0`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// The upgrade fails with a random download or install failure code.
    pub failure_rate: f64,
    /// The connection drops in the middle of the download; the upgrade is abandoned and the
    /// device reconnects and reports its old version.
    pub drop_connection_rate: f64,
    /// The image is "corrupt": the verification-failure code after downloading 100 %.
    pub corrupt_rate: f64,
    /// The download is slow: every progress step takes ten times `step_delay` (at least 1 s).
    pub slow_rate: f64,
    pub seed: u64,
}

/// A faulty release, for health gates to catch: what devices do once they install `version`.
/// Each device draws one sickness (seeded by the fleet's seed and its name), in this order of
/// shares: boot loop, never back, back on the old version, crashes; the rest are fine.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultyRelease {
    pub version: String,
    /// Share of devices that restart (drop the connection, reconnect, report) every `every`.
    pub boot_loop: f64,
    /// Share that say `done`, then never connect again.
    pub never_back: f64,
    /// Share that say `done`, then come back on the version they had.
    pub back_on_old: f64,
    /// Share that send a health report of one crash every `every`.
    pub crashes: f64,
    pub every: Duration,
}

/// What a device does on the faulty release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sickness {
    Fine,
    BootLoop,
    NeverBack,
    BackOnOld,
    Crashes,
}

/// How the fleet runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// `host:port` of the MQTT broker.
    pub broker: String,
    /// Really GET the offered URL (streamed, size and MD5 checked, nothing stored) before
    /// succeeding; `false` pretends the download worked.
    pub download: bool,
    /// Aliyun/EnOS: after each version report ask for the job (`firmware/get`, `getversion`).
    pub ask_for_job: bool,
    /// Pause after each progress step (zero for tests).
    pub step_delay: Duration,
    pub faults: Faults,
    /// A release that makes devices sick once installed (none: every release is fine).
    pub faulty: Option<FaultyRelease>,
}

impl SimConfig {
    /// A fleet on `broker` that pretends downloads, asks for nothing, has no delay and no faults.
    pub fn new(broker: impl Into<String>) -> Self {
        SimConfig {
            broker: broker.into(),
            download: false,
            ask_for_job: false,
            step_delay: Duration::ZERO,
            faults: Faults::default(),
            faulty: None,
        }
    }
}

/// How a device's last upgrade attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It now runs `to`.
    Upgraded { from: String, to: String },
    /// It reported failure `code` (the dialect's) for `version`.
    Failed { version: String, code: i32 },
    /// Its connection dropped during the download of `version` (fault injection).
    Dropped { version: String },
    /// It said `done` for `version` and never came back (a faulty release).
    Gone { version: String },
    /// It said `done` for `version` and came back on the version it had (a faulty release).
    Reverted { version: String },
}

/// One device as seen from outside, at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceStatus {
    pub dialect: Dialect,
    pub product: String,
    pub device: String,
    /// The version it runs now.
    pub version: String,
    /// Pushes received (`update_firmware`, `/ota/device/upgrade`, `ota.device.upgrade`).
    pub pushes: u32,
    /// Offers received in answers to its own job requests.
    pub offers: u32,
    pub connected: bool,
    /// Successful connects so far (CONNACK accepted); more than one means it reconnected.
    pub connects: u32,
    /// The version it is installing, if any.
    pub upgrading: Option<String>,
    pub last_outcome: Option<Outcome>,
    /// Why the last connection attempt failed or the connection was lost.
    pub last_error: Option<String>,
}

/// What every device task shares.
struct Shared {
    config: SimConfig,
    host: String,
    port: u16,
    /// Bounds the connects in flight.
    connect_slots: Semaphore,
    /// Only when `config.download`.
    http: Option<Http>,
}

/// The fleet's HTTP client and the slots that cap its downloads in flight.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

/// A running fleet. Dropping it stops the devices too (without waiting); [`Fleet::stop`]
/// waits for them.
pub struct Fleet {
    cells: Vec<Arc<Cell>>,
    /// Device name and `product/device` → index in `cells`.
    index: HashMap<String, usize>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("devices", &self.cells.len())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Starts every device and returns once each has made its first connection attempt
    /// (connected or not; at most [`CONNECT_CONCURRENCY`] attempts run at once). Devices that
    /// could not connect keep retrying in the background.
    pub async fn start(config: SimConfig, devices: Vec<SimDevice>) -> anyhow::Result<Fleet> {
        let (host, port) = crate::split_broker(&config.broker)?;
        check_faults(&config.faults)?;
        if let Some(f) = &config.faulty {
            check_faulty(f)?;
        }
        let index = index_devices(&devices)?;
        let http = if config.download {
            Some(Http {
                client: crate::download::client().context("cannot build the HTTP client")?,
                slots: Arc::new(Semaphore::new(DOWNLOAD_CONCURRENCY)),
            })
        } else {
            None
        };
        let shared = Arc::new(Shared {
            config,
            host,
            port,
            connect_slots: Semaphore::new(CONNECT_CONCURRENCY),
            http,
        });
        let (stop, stopped) = watch::channel(false);
        // Each device drops its sender after its first attempt; `recv` ends when all have.
        let (started, mut all_started) = mpsc::channel::<()>(1);
        let mut cells = Vec::with_capacity(devices.len());
        let mut tasks = Vec::with_capacity(devices.len());
        for d in devices {
            let cell = Arc::new(Cell::new(
                d.dialect,
                DeviceAddr::new(d.product, d.device),
                d.version,
            ));
            let spec = device::Spec {
                cell: cell.clone(),
                secret: d.secret,
                behavior: d.behavior,
            };
            tasks.push(tokio::spawn(device::run(
                spec,
                shared.clone(),
                stopped.clone(),
                started.clone(),
            )));
            cells.push(cell);
        }
        drop(started);
        let _ = all_started.recv().await;
        tracing::info!(devices = cells.len(), broker = %shared.config.broker, "fleet started");
        Ok(Fleet {
            cells,
            index,
            stop,
            tasks,
        })
    }

    /// Every device's status, in the order given to [`Fleet::start`].
    pub fn snapshot(&self) -> Vec<DeviceStatus> {
        self.cells.iter().map(|c| c.status()).collect()
    }

    /// One device's status, by device name or `product/device`.
    pub fn status(&self, device: &str) -> Option<DeviceStatus> {
        self.cell(device).map(|c| c.status())
    }

    /// Pushes received by a device (by name or `product/device`); 0 for an unknown device.
    pub fn pushes(&self, device: &str) -> u32 {
        self.cell(device).map_or(0, |c| c.pushes())
    }

    /// The version a device (by name or `product/device`) runs now.
    pub fn version(&self, device: &str) -> Option<String> {
        self.cell(device).map(|c| c.version())
    }

    /// How many devices are connected right now.
    pub fn connected(&self) -> usize {
        self.cells.iter().filter(|c| c.is_connected()).count()
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the fleet has no device.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Waits until every device is connected; `false` if `timeout` passed first.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.connected() == self.cells.len() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every device: upgrades in progress are abandoned, connections closed with a
    /// DISCONNECT where possible.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        tracing::info!(devices = self.cells.len(), "fleet stopped");
    }

    fn cell(&self, device: &str) -> Option<&Arc<Cell>> {
        self.index.get(device).and_then(|&i| self.cells.get(i))
    }
}

/// Checks names and maps each device's name and `product/device` to its position. A device
/// name used in several products finds the first of them; `product/device` finds each.
fn index_devices(devices: &[SimDevice]) -> anyhow::Result<HashMap<String, usize>> {
    let mut index = HashMap::with_capacity(devices.len() * 2);
    for (i, d) in devices.iter().enumerate() {
        for (what, value) in [("product", &d.product), ("device", &d.device)] {
            if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
                bail!("{what} {value:?} is empty or contains `/`, `+`, `#`");
            }
        }
        if d.version.trim().is_empty() {
            bail!("device {} has an empty version", d.device);
        }
        if index
            .insert(format!("{}/{}", d.product, d.device), i)
            .is_some()
        {
            bail!("device {}/{} is listed twice", d.product, d.device);
        }
        index.entry(d.device.clone()).or_insert(i);
    }
    Ok(index)
}

fn check_faults(f: &Faults) -> anyhow::Result<()> {
    for (what, rate) in [
        ("failure rate", f.failure_rate),
        ("drop-connection rate", f.drop_connection_rate),
        ("corrupt rate", f.corrupt_rate),
        ("slow rate", f.slow_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("the {what} {rate} is not between 0 and 1");
        }
    }
    Ok(())
}

fn check_faulty(f: &FaultyRelease) -> anyhow::Result<()> {
    let shares = [f.boot_loop, f.never_back, f.back_on_old, f.crashes];
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || shares.iter().sum::<f64>() > 1.0 {
        bail!("the faulty release's shares must each be between 0 and 1, and add up to 1 at most");
    }
    Ok(())
}

/// A device secret derived from `seed`, `product` and `device`, in the dialect's format
/// (Tencent base64 of 16 bytes, others 32 hex characters), so a rerun with the same seed
/// registers and uses the same secrets.
pub fn derive_secret(dialect: Dialect, seed: u64, product: &str, device: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"otter-sim\0")
        .chain_update(seed.to_be_bytes())
        .chain_update(product.as_bytes())
        .chain_update(b"\0")
        .chain_update(device.as_bytes())
        .finalize();
    let bytes = digest.get(..16).unwrap_or(&digest[..]);
    otter_protocol::generate_secret_format(dialect, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_deterministic_and_in_format() {
        let a = derive_secret(Dialect::Aliyun, 7, "P", "d1");
        assert_eq!(a, derive_secret(Dialect::Aliyun, 7, "P", "d1"));
        assert_ne!(a, derive_secret(Dialect::Aliyun, 8, "P", "d1"));
        assert_ne!(a, derive_secret(Dialect::Aliyun, 7, "P", "d2"));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        let t = derive_secret(Dialect::Tencent, 7, "P", "d1");
        assert_eq!(t.len(), 24, "base64 of 16 bytes: {t}");
    }

    fn dev(product: &str, device: &str) -> SimDevice {
        SimDevice {
            dialect: Dialect::Enos,
            product: product.into(),
            device: device.into(),
            secret: "s".into(),
            version: "1".into(),
            behavior: Behavior::Succeed,
        }
    }

    #[test]
    fn index_refuses_bad_and_duplicate_names() {
        assert!(index_devices(&[dev("P", "a/b")]).is_err());
        assert!(index_devices(&[dev("", "a")]).is_err());
        assert!(index_devices(&[dev("P", "a"), dev("P", "a")]).is_err());
        let index = index_devices(&[dev("P", "a"), dev("Q", "a")]).unwrap();
        assert_eq!(index.get("a"), Some(&0));
        assert_eq!(index.get("Q/a"), Some(&1));
    }

    #[test]
    fn rates_must_be_probabilities() {
        let mut f = Faults::default();
        assert!(check_faults(&f).is_ok());
        f.corrupt_rate = 1.5;
        assert!(check_faults(&f).is_err());
        f.corrupt_rate = f64::NAN;
        assert!(check_faults(&f).is_err());
    }
}
