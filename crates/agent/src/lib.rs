//! otter-agent: Otter's device agent as a library. It connects to the MQTT broker as one device
//! speaking one vendor dialect (`PROTOCOL.md` §1–3), reports its firmware version, and when a
//! new version is offered checks its signature, downloads it resumably, verifies it, installs
//! it through an [`Installer`], runs it on trial and rolls back if it is not healthy, reporting
//! every step the way the vendors' device SDKs do. `otter agent` on the command line runs it;
//! `docs/agent.md` describes the behaviour and the state on disk.

mod backoff;
mod boot;
mod download;
mod health;
mod install;
mod outbox;
mod report;
mod session;
pub mod sim;
mod state;
mod upgrade;
mod verify;

pub use health::HealthReports;
pub use install::{
    AbSlots, CommandInstaller, Image, InstallError, InstallFuture, Installer, RaucInstaller,
    RecordOnly, SwUpdateInstaller,
};
pub use verify::parse_public_key;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use otter_protocol::{DeviceAddr, Dialect};

/// How the agent runs: who the device is, where the broker is, and how to install firmware.
#[derive(Clone)]
pub struct AgentConfig {
    /// `host:port` of the MQTT broker (port 1883 when left out).
    pub broker: String,
    pub dialect: Dialect,
    /// Product id / product key.
    pub product: String,
    /// Device name / device key.
    pub device: String,
    /// Device secret as the server issued it.
    pub secret: String,
    /// Version running now, used while the state dir has none recorded.
    pub version: String,
    /// Firmware module (Aliyun); `"default"` normally.
    pub module: String,
    /// Downloads and the recorded current version live here (created if missing).
    pub state_dir: PathBuf,
    /// How images are installed.
    pub installer: InstallerKind,
    /// ed25519 public keys (raw 32 bytes) whose offer signatures are trusted. When any is set,
    /// unsigned, badly signed, expired, replayed (older than one accepted) and unpermitted
    /// downgrade offers are refused, and keys these keys announce are trusted too; when none
    /// is, signatures are not checked.
    pub trusted_keys: Vec<[u8; 32]>,
    pub download: DownloadSettings,
    pub boot: BootSettings,
    /// Counters for the server's health gates, from a command of the device's (none: no
    /// health reports, as with vendor SDKs).
    pub health_reports: Option<HealthReports>,
}

/// Which [`Installer`] the agent uses.
#[derive(Clone, Debug)]
pub enum InstallerKind {
    /// Install nothing; record the new version only.
    RecordOnly,
    /// `sh -c` this command, with `OTTER_FIRMWARE_PATH`, `_VERSION`, `_MD5` and `_SHA256` set;
    /// exit 0 means installed. It cannot roll back.
    Command(String),
    /// `rauc install` with this `rauc` program.
    Rauc(String),
    /// `swupdate -i` with this `swupdate` program.
    SwUpdate(String),
    /// Two slot files and a `current` symlink in this folder.
    AbSlots(PathBuf),
    /// An installer of the embedding program.
    Custom(Arc<dyn Installer>),
}

impl InstallerKind {
    fn build(&self) -> Arc<dyn Installer> {
        match self {
            InstallerKind::RecordOnly => Arc::new(RecordOnly),
            InstallerKind::Command(command) => Arc::new(CommandInstaller {
                command: command.clone(),
            }),
            InstallerKind::Rauc(program) => Arc::new(RaucInstaller {
                program: program.clone(),
            }),
            InstallerKind::SwUpdate(program) => Arc::new(SwUpdateInstaller {
                program: program.clone(),
            }),
            InstallerKind::AbSlots(dir) => Arc::new(AbSlots { dir: dir.clone() }),
            InstallerKind::Custom(installer) => installer.clone(),
        }
    }
}

/// How downloads behave on a weak network.
#[derive(Clone, Debug)]
pub struct DownloadSettings {
    /// A download receiving nothing for this long is cut (and retried, then reported as a
    /// timeout).
    pub stall_timeout: Duration,
    /// Attempts in a row without progress before the download is reported failed.
    pub retries: u32,
    /// First pause between attempts; doubles (with jitter) up to 30 s, reset by progress.
    pub retry_backoff: Duration,
    /// Most bytes per second to download (`None`: as fast as the network goes).
    pub max_rate: Option<u64>,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        DownloadSettings {
            stall_timeout: Duration::from_secs(60),
            retries: 5,
            retry_backoff: Duration::from_secs(1),
            max_rate: None,
        }
    }
}

/// How the agent restarts into a new image and decides whether to keep it.
#[derive(Clone, Debug)]
pub struct BootSettings {
    pub restart: Restart,
    /// `sh -c` command that exits 0 when the new firmware is healthy; re-run until it does or
    /// [`Self::health_deadline`] passes. `None`: healthy once the agent runs.
    pub health_command: Option<String>,
    pub health_deadline: Duration,
    /// Agent starts allowed on trial without confirming; one more is a crash loop.
    pub max_boots: u32,
}

impl Default for BootSettings {
    fn default() -> Self {
        BootSettings {
            restart: Restart::InPlace,
            health_command: None,
            health_deadline: Duration::from_secs(60),
            max_boots: 3,
        }
    }
}

/// How the device starts running a newly switched image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// No restart (the image is data, or the test plays the device): confirm at once.
    InPlace,
    /// Run this `sh -c` command (e.g. `reboot`); when it returns the agent stops, expecting to
    /// be started again by its supervisor.
    Command(String),
    /// Replace the agent process with a fresh one of the same executable and arguments.
    Reexec,
}

impl fmt::Debug for AgentConfig {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("broker", &self.broker)
            .field("dialect", &self.dialect)
            .field("product", &self.product)
            .field("device", &self.device)
            .field("version", &self.version)
            .field("module", &self.module)
            .field("state_dir", &self.state_dir)
            .field("installer", &self.installer)
            .field("trusted_keys", &self.trusted_keys.len())
            .field("download", &self.download)
            .field("boot", &self.boot)
            .finish_non_exhaustive()
    }
}

/// A configured device agent; [`Agent::run`] connects and serves upgrades.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    device: DeviceAddr,
    broker: (String, u16),
    /// The version the device runs; the upgrade task updates it after an install.
    current: Arc<Mutex<String>>,
    installer: Arc<dyn Installer>,
    /// Trusted keys (configured and announced) and the newest signature seen.
    trust: Arc<Mutex<verify::Trust>>,
}

impl Agent {
    /// Checks the configuration, creates the state dir and reads the recorded version.
    pub fn new(config: AgentConfig) -> anyhow::Result<Self> {
        for (what, value) in [("product", &config.product), ("device", &config.device)] {
            if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
                bail!("{what} {value:?} is empty or contains `/`, `+`, `#`");
            }
        }
        if config.version.trim().is_empty() {
            bail!("the current version is empty");
        }
        let broker = split_broker(&config.broker)?;
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;
        let current =
            state::load_version(&config.state_dir, config.version.trim()).with_context(|| {
                format!("cannot read the version in {}", config.state_dir.display())
            })?;
        let keys = verify::trusted_keys(&config.trusted_keys).map_err(anyhow::Error::msg)?;
        let stored = state::load_trust(&config.state_dir).with_context(|| {
            format!(
                "cannot read the trust state in {}",
                config.state_dir.display()
            )
        })?;
        let trust = verify::Trust::new(&config.product, keys, stored.announcements, stored.issued);
        Ok(Agent {
            device: DeviceAddr::new(config.product.clone(), config.device.clone()),
            broker,
            current: Arc::new(Mutex::new(current)),
            installer: config.installer.build(),
            trust: Arc::new(Mutex::new(trust)),
            config,
        })
    }

    /// The version the device runs: the last one installed, else the configured one.
    pub fn current_version(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_current(&self, version: &str) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = version.to_owned();
    }

    /// Resolves a trial boot left by a previous run (health check, commit or rollback), then
    /// connects, reports, and serves upgrades until `shutdown` completes, or until a restart
    /// into a new image is due; reconnects with backoff and jitter whenever the connection is
    /// lost. An upgrade in progress at shutdown is abandoned (its download resumes next time).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        session::run(self, shutdown).await
    }
}

/// `host:port`, `host` (port 1883) or `[v6]:port`.
fn split_broker(broker: &str) -> anyhow::Result<(String, u16)> {
    let broker = broker.trim();
    let (host, port) = match broker.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port
                .parse()
                .with_context(|| format!("bad port in broker address {broker:?}"))?;
            (host, port)
        }
        _ => (broker, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("broker address {broker:?} has no host");
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        let ok = |s: &str| split_broker(s).unwrap();
        assert_eq!(ok("127.0.0.1:1884"), ("127.0.0.1".into(), 1884));
        assert_eq!(ok("mqtt.example"), ("mqtt.example".into(), 1883));
        assert_eq!(ok("[::1]:1885"), ("::1".into(), 1885));
        assert_eq!(ok("::1"), ("::1".into(), 1883));
        assert!(split_broker("host:x").is_err());
        assert!(split_broker(":1883").is_err());
    }
}
