//! otter-agent: a minimal device agent for Otter. It connects to the MQTT broker as one device
//! speaking one vendor dialect (`PROTOCOL.md` §1–3), reports its firmware version, and when a
//! new version is offered downloads it, verifies it, runs an install command and reports the
//! outcome, the way the vendors' device SDKs do. `otter agent` on the command line runs it.

mod download;
mod install;
mod report;
mod session;
pub mod sim;
mod state;
mod upgrade;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
    /// Run with `sh -c`, with `OTTER_FIRMWARE_PATH`, `OTTER_FIRMWARE_VERSION`,
    /// `OTTER_FIRMWARE_MD5` and `OTTER_FIRMWARE_SHA256` set; exit 0 means installed. `None`
    /// records the new version without installing anything.
    pub install_command: Option<String>,
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
            .field("install_command", &self.install_command)
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
        Ok(Agent {
            device: DeviceAddr::new(config.product.clone(), config.device.clone()),
            broker,
            current: Arc::new(Mutex::new(current)),
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

    /// Connects, reports, and serves upgrades until `shutdown` completes; reconnects with
    /// backoff whenever the connection is lost. An upgrade in progress at shutdown is abandoned.
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
