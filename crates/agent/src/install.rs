//! Runs the operator's install command for a verified image. The agent itself never writes
//! firmware anywhere: the command decides what installing means on this device.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

/// A verified image, as handed to the install command through its environment.
#[derive(Clone, Debug)]
pub(crate) struct Image<'a> {
    pub path: &'a Path,
    pub version: &'a str,
    pub md5: &'a str,
    pub sha256: &'a str,
}

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstallError {
    #[error("cannot start the install command: {0}")]
    Spawn(std::io::Error),
    #[error("the install command failed ({0})")]
    Exit(ExitStatus),
}

/// Runs `command` with `sh -c`; exit status 0 means installed. The child is killed if the
/// agent shuts down meanwhile (the future is dropped).
pub(crate) async fn run(command: &str, image: &Image<'_>) -> Result<(), InstallError> {
    tracing::info!(version = image.version, command, "running install command");
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("OTTER_FIRMWARE_PATH", image.path)
        .env("OTTER_FIRMWARE_VERSION", image.version)
        .env("OTTER_FIRMWARE_MD5", image.md5)
        .env("OTTER_FIRMWARE_SHA256", image.sha256)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(InstallError::Spawn)?;
    if status.success() {
        Ok(())
    } else {
        Err(InstallError::Exit(status))
    }
}
