//! `otter`: one binary for the server, the admin CLI and the device agent.
//!
//! Kept thin: argument parsing and output here; the work happens in otter-server, otter-agent and
//! the server's HTTP API (which the admin commands call).

mod agent;
mod backup;
mod campaign;
mod client;
mod devices;
mod firmware;
mod operators;
mod products;
mod security;
mod serve;
mod sign;
mod simulate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "otter",
    version,
    about = "Otter: over-the-air firmware updates for MQTT device fleets"
)]
struct Cli {
    /// How log lines on stderr look: `text` for people (coloured only on a terminal) or `json`,
    /// one object per line, for log collectors.
    #[arg(long, global = true, env = "OTTER_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: embedded MQTT broker, HTTP API and downloads, SQLite and blob store.
    Serve(Box<serve::ServeArgs>),
    /// Manage products (device models and their dialect).
    #[command(subcommand)]
    Product(products::ProductCmd),
    /// Manage devices.
    #[command(subcommand)]
    Device(devices::DeviceCmd),
    /// Upload and list firmware.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCmd),
    /// Roll firmware out to a fleet: create, list, show, pause, resume, cancel, watch.
    #[command(subcommand)]
    Campaign(campaign::CampaignCmd),
    /// Upgrade one device to a firmware version (a campaign with one target).
    Upgrade(campaign::UpgradeArgs),
    /// Run the device agent: report the version, take updates, download, verify, install.
    Agent(agent::AgentArgs),
    /// Scoped API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(security::TokenCmd),
    /// Operator accounts for the console (name and password): create, list, disable.
    #[command(subcommand)]
    Operator(operators::OperatorCmd),
    /// The audit log of operator actions, newest first.
    Audit(security::AuditArgs),
    /// Replace the key of download links (old links keep working for a grace period).
    RotateDownloadKey(security::RotateDownloadKeyArgs),
    /// Copy a data folder (database snapshot, firmware blobs, keys) while `otter serve` runs.
    Backup(backup::BackupArgs),
    /// Run a fleet of simulated devices (all dialects) against a server, for demos and load.
    Simulate(simulate::SimulateArgs),
}

/// Logs to stderr, filtered by `OTTER_LOG` (tracing's `EnvFilter` syntax).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OTTER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,rmqtt=warn,rmqtt_net=warn,rmqtt_codec=warn,sqlx=warn",
        )
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only where a person reads them, never into files or journals.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Product(cmd) => products::run(cmd).await,
        Command::Device(cmd) => devices::run(cmd).await,
        Command::Firmware(cmd) => firmware::run(cmd).await,
        Command::Upgrade(args) => campaign::upgrade(args).await,
        Command::Campaign(cmd) => campaign::run(cmd).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Token(cmd) => security::token(cmd).await,
        Command::Operator(cmd) => operators::run(cmd).await,
        Command::Audit(args) => security::audit(args).await,
        Command::RotateDownloadKey(args) => security::rotate_download_key(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "otter", &mut missing);
        assert!(
            missing.is_empty(),
            "flags without help:\n{}",
            missing.join("\n")
        );
    }
}
