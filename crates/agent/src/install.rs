//! Installers: how a verified image becomes the firmware that runs. One trait, so the upgrade
//! flow and the trial-boot state machine (`boot.rs`) do not care whether the device uses an
//! operator's command, RAUC, SWUpdate or two plain slot files. An installer writes the image
//! where the running firmware is not disturbed (`install`), makes it the next one to run
//! (`switch`), and later keeps it (`commit`) or goes back (`rollback`).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};

use crate::state;

/// A verified image, as handed to an installer.
#[derive(Clone, Debug)]
pub struct Image {
    pub path: PathBuf,
    pub version: String,
    /// Lowercase hex digests of the file.
    pub md5: String,
    pub sha256: String,
}

/// What every installer step returns.
pub type InstallFuture<'a> = Pin<Box<dyn Future<Output = Result<(), InstallError>> + Send + 'a>>;

/// Why an installer step failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{0} failed ({1})")]
    Exit(String, ExitStatus),
    #[error("cannot write the slot: {0}")]
    Io(#[from] std::io::Error),
    #[error("this installer cannot roll back")]
    NoRollback,
}

/// One way of installing firmware. Steps are async and cancel-safe to drop (child processes
/// are killed when the future is dropped).
pub trait Installer: Send + Sync + fmt::Debug {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// Writes the image where the next boot can use it, leaving the running firmware intact.
    fn install<'a>(&'a self, image: &'a Image) -> InstallFuture<'a>;
    /// Makes the installed image the one that runs next (on trial until committed).
    fn switch(&self) -> InstallFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    /// The new image proved healthy: keep it.
    fn commit(&self) -> InstallFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    /// Makes the previous image the one that runs again.
    fn rollback(&self) -> InstallFuture<'_> {
        Box::pin(async { Err(InstallError::NoRollback) })
    }
    /// The slot running (or booting next) now, for installers that know; lets a restart tell
    /// whether a switch really happened.
    fn active_slot(&self) -> Option<String> {
        None
    }
}

/// Records the version without installing anything (no installer configured).
#[derive(Debug)]
pub struct RecordOnly;

impl Installer for RecordOnly {
    fn name(&self) -> &'static str {
        "record-only"
    }

    fn install<'a>(&'a self, image: &'a Image) -> InstallFuture<'a> {
        tracing::info!(version = %image.version, "no installer configured; recording the version only");
        Box::pin(async { Ok(()) })
    }
}

/// The operator's shell command (`sh -c`), with `OTTER_FIRMWARE_PATH`, `_VERSION`, `_MD5` and
/// `_SHA256` in its environment; exit 0 means installed.
#[derive(Debug)]
pub struct CommandInstaller {
    pub command: String,
}

impl Installer for CommandInstaller {
    fn name(&self) -> &'static str {
        "command"
    }

    fn install<'a>(&'a self, image: &'a Image) -> InstallFuture<'a> {
        Box::pin(async move {
            tracing::info!(version = %image.version, command = %self.command, "running install command");
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(&self.command);
            image_env(&mut cmd, image);
            run(cmd, "the install command").await
        })
    }
}

/// RAUC: `rauc install <file>` writes the other slot group and marks it active; after the
/// restart `rauc status mark-good` commits, `rauc status mark-active other` goes back.
#[derive(Debug)]
pub struct RaucInstaller {
    /// The `rauc` program (a path, or looked up in `PATH`).
    pub program: String,
}

impl Installer for RaucInstaller {
    fn name(&self) -> &'static str {
        "rauc"
    }

    fn install<'a>(&'a self, image: &'a Image) -> InstallFuture<'a> {
        let args = vec!["install".into(), image.path.display().to_string()];
        Box::pin(run_program(&self.program, args, Some(image)))
    }

    fn commit(&self) -> InstallFuture<'_> {
        let args = vec!["status".into(), "mark-good".into()];
        Box::pin(run_program(&self.program, args, None))
    }

    fn rollback(&self) -> InstallFuture<'_> {
        let args = vec!["status".into(), "mark-active".into(), "other".into()];
        Box::pin(run_program(&self.program, args, None))
    }
}

/// SWUpdate: `swupdate -i <file>`. Switching and falling back are the bootloader's business
/// (its `upgrade_available`/`bootcount` variables), so there is nothing to commit or roll back
/// from here: a rollback is refused and reported as a failed install.
#[derive(Debug)]
pub struct SwUpdateInstaller {
    /// The `swupdate` program.
    pub program: String,
}

impl Installer for SwUpdateInstaller {
    fn name(&self) -> &'static str {
        "swupdate"
    }

    fn install<'a>(&'a self, image: &'a Image) -> InstallFuture<'a> {
        let args = vec!["-i".into(), image.path.display().to_string()];
        Box::pin(run_program(&self.program, args, Some(image)))
    }
}

/// Two slot files `slot-a` and `slot-b` in a folder and a symlink `current` naming the one
/// that runs (`slot-a` when absent). Every change is atomic (write + fsync + rename; symlink
/// + rename), so a power cut always leaves `current` naming a complete slot.
#[derive(Debug)]
pub struct AbSlots {
    pub dir: PathBuf,
}

impl AbSlots {
    const CURRENT: &str = "current";

    fn slot_file(slot: &str) -> String {
        format!("slot-{slot}")
    }

    fn active(&self) -> String {
        match std::fs::read_link(self.dir.join(Self::CURRENT)) {
            Ok(target) if target.file_name() == Some("slot-b".as_ref()) => "b".into(),
            _ => "a".into(),
        }
    }

    fn other(slot: &str) -> &'static str {
        if slot == "a" { "b" } else { "a" }
    }

    /// Points `current` at `slot` atomically.
    fn point_to(&self, slot: &str) -> std::io::Result<()> {
        let tmp = self.dir.join("current.tmp");
        state::remove_if_exists(&tmp)?;
        std::os::unix::fs::symlink(Self::slot_file(slot), &tmp)?;
        std::fs::rename(&tmp, self.dir.join(Self::CURRENT))?;
        state::sync_dir(&self.dir);
        tracing::info!(dir = %self.dir.display(), slot, "switched the current slot");
        Ok(())
    }

    fn write_slot(&self, image: &Path, slot: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let dest = self.dir.join(Self::slot_file(slot));
        let tmp = self.dir.join(format!("{}.tmp", Self::slot_file(slot)));
        std::fs::copy(image, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        state::sync_dir(&self.dir);
        Ok(())
    }
}

impl Installer for AbSlots {
    fn name(&self) -> &'static str {
        "ab-slots"
    }

    fn install<'a>(&'a self, image: &'a Image) -> InstallFuture<'a> {
        Box::pin(async move {
            let slot = Self::other(&self.active());
            tracing::info!(version = %image.version, slot, "writing the inactive slot");
            let (src, this) = (
                image.path.clone(),
                AbSlots {
                    dir: self.dir.clone(),
                },
            );
            blocking(move || this.write_slot(&src, slot)).await
        })
    }

    fn switch(&self) -> InstallFuture<'_> {
        Box::pin(async move { Ok(self.point_to(Self::other(&self.active()))?) })
    }

    fn rollback(&self) -> InstallFuture<'_> {
        Box::pin(async move { Ok(self.point_to(Self::other(&self.active()))?) })
    }

    fn active_slot(&self) -> Option<String> {
        Some(self.active())
    }
}

async fn blocking(
    f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), InstallError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
        .map_err(InstallError::Io)
}

fn image_env(cmd: &mut tokio::process::Command, image: &Image) {
    cmd.env("OTTER_FIRMWARE_PATH", &image.path)
        .env("OTTER_FIRMWARE_VERSION", &image.version)
        .env("OTTER_FIRMWARE_MD5", &image.md5)
        .env("OTTER_FIRMWARE_SHA256", &image.sha256);
}

async fn run_program(
    program: &str,
    args: Vec<String>,
    image: Option<&Image>,
) -> Result<(), InstallError> {
    tracing::info!(program, ?args, "running installer");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&args);
    if let Some(image) = image {
        image_env(&mut cmd, image);
    }
    run(cmd, program).await
}

/// Runs a prepared command to completion; killed if the future is dropped.
pub(crate) async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<(), InstallError> {
    let status = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| InstallError::Spawn(what.to_owned(), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(InstallError::Exit(what.to_owned(), status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(dir: &Path, body: &[u8]) -> Image {
        let path = dir.join("img");
        std::fs::write(&path, body).unwrap();
        Image {
            path,
            version: "2".into(),
            md5: "m".into(),
            sha256: "s".into(),
        }
    }

    #[tokio::test]
    async fn ab_slots_install_switch_and_roll_back() {
        let dir = tempfile::tempdir().unwrap();
        let ab = AbSlots {
            dir: dir.path().join("slots"),
        };
        assert_eq!(ab.active_slot().as_deref(), Some("a"));
        ab.install(&image(dir.path(), b"new")).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("slots/slot-b")).unwrap(),
            b"new"
        );
        assert_eq!(
            ab.active_slot().as_deref(),
            Some("a"),
            "install does not switch"
        );
        ab.switch().await.unwrap();
        assert_eq!(ab.active_slot().as_deref(), Some("b"));
        assert_eq!(
            std::fs::read(dir.path().join("slots/current")).unwrap(),
            b"new"
        );
        ab.rollback().await.unwrap();
        assert_eq!(ab.active_slot().as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn rauc_and_swupdate_get_their_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let fake = dir.path().join("fake");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let program = fake.display().to_string();
        let img = image(dir.path(), b"x");
        let rauc = RaucInstaller {
            program: program.clone(),
        };
        rauc.install(&img).await.unwrap();
        rauc.commit().await.unwrap();
        rauc.rollback().await.unwrap();
        let sw = SwUpdateInstaller { program };
        sw.install(&img).await.unwrap();
        assert!(matches!(sw.rollback().await, Err(InstallError::NoRollback)));
        let p = img.path.display();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("install {p}\nstatus mark-good\nstatus mark-active other\n-i {p}\n")
        );
    }
}
