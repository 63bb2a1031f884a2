//! `otter agent`: the device side. Settings from flags, environment (`OTTER_AGENT_*`) or a TOML
//! file (`--config`), in that order of precedence.

use anyhow::{Context, Result};
use clap::Args;
use otter_agent::{
    Agent, AgentConfig, BootSettings, DownloadSettings, InstallerKind, Restart, parse_public_key,
};
use otter_protocol::Dialect;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// TOML file with any of the settings below (snake_case keys, e.g. install_command).
    #[arg(long, env = "OTTER_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// MQTT broker address, host:port [default: 127.0.0.1:1883].
    #[arg(long, env = "OTTER_AGENT_BROKER")]
    broker: Option<String>,
    /// Wire dialect: tencent, aliyun or enos.
    #[arg(long, env = "OTTER_AGENT_DIALECT")]
    dialect: Option<Dialect>,
    /// Product id (product key).
    #[arg(long, env = "OTTER_AGENT_PRODUCT")]
    product: Option<String>,
    /// Device name (device key).
    #[arg(long, env = "OTTER_AGENT_DEVICE")]
    device: Option<String>,
    /// Device secret as the server issued it.
    #[arg(long, env = "OTTER_AGENT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Version running now, used until an install records a newer one in the state dir.
    #[arg(long = "current-version", env = "OTTER_AGENT_VERSION")]
    version: Option<String>,
    /// Firmware module [default: default].
    #[arg(long, env = "OTTER_AGENT_MODULE")]
    module: Option<String>,
    /// Folder for downloads and the installed version [default: ./otter-agent].
    #[arg(long, env = "OTTER_AGENT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Shell command that installs the image; gets OTTER_FIRMWARE_PATH, _VERSION, _MD5, _SHA256.
    #[arg(long, env = "OTTER_AGENT_INSTALL_COMMAND")]
    install_command: Option<String>,
    /// Installer, verification, download and trial-boot settings (boxed: they are many).
    #[command(flatten)]
    more: Box<UpgradeArgs>,
}

/// The settings of how upgrades are verified, downloaded, installed and confirmed.
#[derive(Args, Debug)]
struct UpgradeArgs {
    /// Installer: command, rauc, swupdate, ab-slots or none [default: command when
    /// --install-command is given, else none].
    #[arg(long, env = "OTTER_AGENT_INSTALLER")]
    installer: Option<String>,
    /// Program run by the rauc or swupdate installer [default: rauc / swupdate].
    #[arg(long, env = "OTTER_AGENT_INSTALLER_PROGRAM")]
    installer_program: Option<String>,
    /// Folder of the ab-slots installer (slot-a, slot-b, current).
    #[arg(long, env = "OTTER_AGENT_SLOTS_DIR")]
    slots_dir: Option<PathBuf>,
    /// Trusted ed25519 public key (a public PEM file, or hex / base64), repeatable; with any,
    /// offers must be signed, current and not downgrades (docs/signing.md).
    #[arg(
        long = "trusted-key",
        env = "OTTER_AGENT_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    trusted_keys: Vec<String>,
    /// Seconds without download data before the attempt is cut [default: 60].
    #[arg(long, env = "OTTER_AGENT_STALL_TIMEOUT_SECS")]
    stall_timeout_secs: Option<u64>,
    /// Download attempts in a row without progress before failing [default: 5].
    #[arg(long, env = "OTTER_AGENT_DOWNLOAD_RETRIES")]
    download_retries: Option<u32>,
    /// First pause between download attempts, in milliseconds [default: 1000].
    #[arg(long, env = "OTTER_AGENT_RETRY_BACKOFF_MS")]
    retry_backoff_ms: Option<u64>,
    /// Most download bytes per second [default: unlimited].
    #[arg(long, env = "OTTER_AGENT_MAX_DOWNLOAD_RATE")]
    max_download_rate: Option<u64>,
    /// Shell command that restarts the device into the new image (e.g. reboot); the agent
    /// stops after it. Without it (and without --reexec) the new image is confirmed in place.
    #[arg(long, env = "OTTER_AGENT_RESTART_COMMAND")]
    restart_command: Option<String>,
    /// Re-execute the agent to run the new image.
    #[arg(long, env = "OTTER_AGENT_REEXEC")]
    reexec: bool,
    /// Shell command that exits 0 when the new image is healthy.
    #[arg(long, env = "OTTER_AGENT_HEALTH_COMMAND")]
    health_command: Option<String>,
    /// Seconds the health check has to pass [default: 60].
    #[arg(long, env = "OTTER_AGENT_HEALTH_DEADLINE_SECS")]
    health_deadline_secs: Option<u64>,
    /// Agent starts allowed on trial before rolling back as a crash loop [default: 3].
    #[arg(long, env = "OTTER_AGENT_MAX_BOOTS")]
    max_boots: Option<u32>,
    /// Shell command printing health counters for the server's health gates (`crashes 2`
    /// per line, or a JSON object), increments since its previous run; run every
    /// --health-report-secs. docs/agent.md "Health reports".
    #[arg(long, env = "OTTER_AGENT_HEALTH_REPORT_COMMAND")]
    health_report_command: Option<String>,
    /// Seconds between health reports [default: 300].
    #[arg(long, env = "OTTER_AGENT_HEALTH_REPORT_SECS")]
    health_report_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    broker: Option<String>,
    dialect: Option<String>,
    product: Option<String>,
    device: Option<String>,
    secret: Option<String>,
    version: Option<String>,
    module: Option<String>,
    state_dir: Option<PathBuf>,
    install_command: Option<String>,
    installer: Option<String>,
    installer_program: Option<String>,
    slots_dir: Option<PathBuf>,
    trusted_keys: Option<Vec<String>>,
    stall_timeout_secs: Option<u64>,
    download_retries: Option<u32>,
    retry_backoff_ms: Option<u64>,
    max_download_rate: Option<u64>,
    restart_command: Option<String>,
    reexec: Option<bool>,
    health_command: Option<String>,
    health_deadline_secs: Option<u64>,
    max_boots: Option<u32>,
    health_report_command: Option<String>,
    health_report_secs: Option<u64>,
}

fn resolve(a: AgentArgs) -> Result<AgentConfig> {
    let m = *a.more;
    let f: FileConfig = match &a.config {
        Some(path) => toml::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?,
        None => FileConfig::default(),
    };
    let file_dialect = f
        .dialect
        .map(|d| d.parse::<Dialect>())
        .transpose()
        .map_err(|_| anyhow::anyhow!("dialect must be tencent, aliyun or enos"))?;
    let need = |v: Option<String>, what: &str| {
        v.with_context(|| format!("--{what} is required (flag, environment or config file)"))
    };
    let install_command = a.install_command.or(f.install_command);
    let program = m.installer_program.or(f.installer_program);
    let installer = match m.installer.or(f.installer).as_deref() {
        None if install_command.is_none() => InstallerKind::RecordOnly,
        Some("none") => InstallerKind::RecordOnly,
        None | Some("command") => InstallerKind::Command(
            install_command.context("the command installer needs --install-command")?,
        ),
        Some("rauc") => InstallerKind::Rauc(program.unwrap_or_else(|| "rauc".into())),
        Some("swupdate") => InstallerKind::SwUpdate(program.unwrap_or_else(|| "swupdate".into())),
        Some("ab-slots") => InstallerKind::AbSlots(
            m.slots_dir
                .or(f.slots_dir)
                .context("the ab-slots installer needs --slots-dir")?,
        ),
        Some(other) => anyhow::bail!(
            "unknown installer {other:?}: expected command, rauc, swupdate, ab-slots or none"
        ),
    };
    let keys = if m.trusted_keys.is_empty() {
        f.trusted_keys.unwrap_or_default()
    } else {
        m.trusted_keys
    };
    let trusted_keys = keys
        .iter()
        .map(|k| {
            let text = match std::path::Path::new(k).is_file() {
                true => std::fs::read_to_string(k)?,
                false => k.clone(),
            };
            parse_public_key(&text).map_err(anyhow::Error::msg)
        })
        .collect::<Result<Vec<_>>>()?;
    let dd = DownloadSettings::default();
    let download = DownloadSettings {
        stall_timeout: secs(
            m.stall_timeout_secs.or(f.stall_timeout_secs),
            dd.stall_timeout,
        ),
        retries: m
            .download_retries
            .or(f.download_retries)
            .unwrap_or(dd.retries),
        retry_backoff: m
            .retry_backoff_ms
            .or(f.retry_backoff_ms)
            .map_or(dd.retry_backoff, Duration::from_millis),
        max_rate: m.max_download_rate.or(f.max_download_rate),
    };
    let bd = BootSettings::default();
    let restart = match (
        m.restart_command.or(f.restart_command),
        m.reexec || f.reexec == Some(true),
    ) {
        (Some(_), true) => anyhow::bail!("--restart-command and --reexec exclude each other"),
        (Some(command), false) => Restart::Command(command),
        (None, true) => Restart::Reexec,
        (None, false) => Restart::InPlace,
    };
    let boot = BootSettings {
        restart,
        health_command: m.health_command.or(f.health_command),
        health_deadline: secs(
            m.health_deadline_secs.or(f.health_deadline_secs),
            bd.health_deadline,
        ),
        max_boots: m.max_boots.or(f.max_boots).unwrap_or(bd.max_boots),
    };
    let every = secs(
        m.health_report_secs.or(f.health_report_secs),
        Duration::from_secs(300),
    )
    .max(Duration::from_secs(1));
    let health_reports = m
        .health_report_command
        .or(f.health_report_command)
        .map(|command| otter_agent::HealthReports {
            command,
            every,
            // Soon after start: right after an install is when a bad release shows.
            first: every.min(Duration::from_secs(10)),
        });
    Ok(AgentConfig {
        broker: a
            .broker
            .or(f.broker)
            .unwrap_or_else(|| "127.0.0.1:1883".into()),
        dialect: a
            .dialect
            .or(file_dialect)
            .context("--dialect is required (tencent, aliyun or enos)")?,
        product: need(a.product.or(f.product), "product")?,
        device: need(a.device.or(f.device), "device")?,
        secret: need(a.secret.or(f.secret), "secret")?,
        version: need(a.version.or(f.version), "current-version")?,
        module: a.module.or(f.module).unwrap_or_else(|| "default".into()),
        state_dir: a
            .state_dir
            .or(f.state_dir)
            .unwrap_or_else(|| PathBuf::from("otter-agent")),
        installer,
        trusted_keys,
        download,
        boot,
        health_reports,
    })
}

fn secs(value: Option<u64>, default: Duration) -> Duration {
    value.map_or(default, Duration::from_secs)
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let agent = Agent::new(resolve(args)?)?;
    agent.run(crate::shutdown_signal()).await
}
