//! `otter agent`: the device side. Settings from flags, environment (`OTTER_AGENT_*`) or a TOML
//! file (`--config`), in that order of precedence.

use anyhow::{Context, Result};
use clap::Args;
use otter_agent::{Agent, AgentConfig};
use otter_protocol::Dialect;
use serde::Deserialize;
use std::path::PathBuf;

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
}

fn resolve(a: AgentArgs) -> Result<AgentConfig> {
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
        install_command: a.install_command.or(f.install_command),
    })
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let agent = Agent::new(resolve(args)?)?;
    agent.run(crate::shutdown_signal()).await
}
