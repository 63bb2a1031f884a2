//! The trial-boot state machine: after an install, the new firmware runs on trial until a
//! health check confirms it; a failed check, or the agent starting too many times without
//! confirming (a crash loop), rolls back to the previous image. The phase is persisted before
//! every step that changes what boots, so a power cut at any point is resolved at the next
//! start (`docs/agent.md` draws the machine).

use std::path::{Path, PathBuf};
use std::time::Duration;

use otter_protocol::{Dialect, FailureKind, failure_code};
use serde::{Deserialize, Serialize};

use crate::BootSettings;
use crate::install::{self, Installer};
use crate::outbox::Report;
use crate::state;

/// Pause between two runs of a failing health check.
const HEALTH_RETRY: Duration = Duration::from_millis(500);

/// Where the trial state lives in the state dir.
fn path(dir: &Path) -> PathBuf {
    dir.join("boot.json")
}

/// What is persisted between an install and its confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// Installed; the switch to the new image may or may not have happened.
    Switching,
    /// The new image is the one that boots; not yet confirmed.
    Trial,
    /// Going back to the previous image.
    RollingBack,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrialState {
    pub phase: Phase,
    /// The version confirmed before the upgrade, and the one on trial.
    pub from: String,
    pub to: String,
    /// The installer's active slot before the switch, when it knows slots.
    pub slot_before: Option<String>,
    /// Agent starts while on trial.
    pub boots: u32,
}

pub(crate) fn load(dir: &Path) -> Option<TrialState> {
    let bytes = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice(&bytes)
        .inspect_err(
            |err| tracing::error!(error = %err, "unreadable trial-boot state; ignoring it"),
        )
        .ok()
}

fn store(dir: &Path, trial: &TrialState) -> std::io::Result<()> {
    let json = serde_json::to_vec(trial).map_err(std::io::Error::other)?;
    state::write_atomic(&path(dir), &json)
}

fn clear(dir: &Path) {
    if let Err(err) = state::remove_if_exists(&path(dir)) {
        tracing::error!(error = %err, "cannot clear the trial-boot state");
    }
    state::sync_dir(dir);
}

/// What the trial-boot steps need.
pub(crate) struct Ctx<'a> {
    pub dir: &'a Path,
    pub dialect: Dialect,
    pub installer: &'a dyn Installer,
    pub settings: &'a BootSettings,
}

/// How a trial ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Confirmed: `to` is the version now.
    Committed(String),
    /// Rolled back (or never switched): `from` is the version now.
    RolledBack(String),
}

impl Ctx<'_> {
    /// Installed image → it boots next, on trial. Persists `Switching` first, then `Trial`.
    pub(crate) async fn switch(&self, from: &str, to: &str) -> Result<(), String> {
        let mut trial = TrialState {
            phase: Phase::Switching,
            from: from.to_owned(),
            to: to.to_owned(),
            slot_before: self.installer.active_slot(),
            boots: 0,
        };
        store(self.dir, &trial).map_err(|e| format!("cannot persist the trial state: {e}"))?;
        if let Err(err) = self.installer.switch().await {
            clear(self.dir);
            return Err(format!("cannot switch to the new image: {err}"));
        }
        trial.phase = Phase::Trial;
        store(self.dir, &trial).map_err(|e| format!("cannot persist the trial state: {e}"))
    }

    /// Resolves a persisted trial at start-up; `None` when there is none. Counts the start
    /// first, so a crash during the check still counts towards the crash-loop limit.
    pub(crate) async fn on_start(&self, reports: &mut Vec<Report>) -> Option<Verdict> {
        let mut trial = load(self.dir)?;
        tracing::info!(?trial, "resuming a trial boot");
        let switched = match (&trial.slot_before, self.installer.active_slot()) {
            (Some(before), Some(now)) => *before != now,
            _ => true,
        };
        match trial.phase {
            Phase::RollingBack => {
                return Some(self.finish_rollback(&trial, "rolled back".into(), reports));
            }
            Phase::Switching | Phase::Trial if !switched => {
                let why = "the switch to the new image did not happen (interrupted)".to_owned();
                return Some(self.finish_rollback(&trial, why, reports));
            }
            Phase::Switching | Phase::Trial => {}
        }
        trial.phase = Phase::Trial;
        trial.boots += 1;
        if let Err(err) = store(self.dir, &trial) {
            tracing::error!(error = %err, "cannot count this boot");
        }
        if trial.boots > self.settings.max_boots {
            let why = format!(
                "started {} times without confirming the new image (crash loop)",
                trial.boots
            );
            return Some(self.rollback(&trial, why, reports).await);
        }
        Some(self.confirm(&trial, reports).await)
    }

    /// Runs the health check; commits or rolls back.
    pub(crate) async fn confirm(&self, trial: &TrialState, reports: &mut Vec<Report>) -> Verdict {
        if let Err(why) = self.healthy(trial).await {
            return self.rollback(trial, why, reports).await;
        }
        if let Err(err) = self.installer.commit().await {
            let why = format!("cannot commit the new image: {err}");
            return self.rollback(trial, why, reports).await;
        }
        if let Err(err) = state::store_version(self.dir, &trial.to) {
            tracing::error!(error = %err, "cannot record the confirmed version");
        }
        clear(self.dir);
        tracing::info!(version = %trial.to, "new image confirmed");
        reports.push(Report::Done {
            version: trial.to.clone(),
        });
        reports.push(Report::Version {
            version: trial.to.clone(),
        });
        Verdict::Committed(trial.to.clone())
    }

    /// Goes back to the previous image, persisting `RollingBack` first.
    pub(crate) async fn rollback(
        &self,
        trial: &TrialState,
        why: String,
        reports: &mut Vec<Report>,
    ) -> Verdict {
        tracing::warn!(from = %trial.to, to = %trial.from, %why, "rolling back");
        let mut rolling = trial.clone();
        rolling.phase = Phase::RollingBack;
        if let Err(err) = store(self.dir, &rolling) {
            tracing::error!(error = %err, "cannot persist the rollback");
        }
        let why = match self.installer.rollback().await {
            Ok(()) => why,
            Err(err) => {
                tracing::error!(error = %err, "rollback failed");
                format!("{why}; rollback failed: {err}")
            }
        };
        self.finish_rollback(trial, why, reports)
    }

    fn finish_rollback(
        &self,
        trial: &TrialState,
        why: String,
        reports: &mut Vec<Report>,
    ) -> Verdict {
        if let Err(err) = state::store_version(self.dir, &trial.from) {
            tracing::error!(error = %err, "cannot record the version after a rollback");
        }
        clear(self.dir);
        reports.push(Report::Failed {
            version: trial.to.clone(),
            code: failure_code(self.dialect, FailureKind::InstallFailed),
            message: why,
        });
        reports.push(Report::Version {
            version: trial.from.clone(),
        });
        Verdict::RolledBack(trial.from.clone())
    }

    /// Runs the health check until it passes or the deadline passes.
    async fn healthy(&self, trial: &TrialState) -> Result<(), String> {
        let Some(check) = &self.settings.health_command else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.settings.health_deadline;
        let mut last = String::from("it never finished");
        loop {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c")
                .arg(check)
                .env("OTTER_FIRMWARE_VERSION", &trial.to)
                .env("OTTER_PREVIOUS_VERSION", &trial.from);
            match tokio::time::timeout_at(deadline, install::run(cmd, "the health check")).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(err)) => last = err.to_string(),
                Err(_) => break,
            }
            if tokio::time::Instant::now() + HEALTH_RETRY >= deadline {
                break;
            }
            tokio::time::sleep(HEALTH_RETRY).await;
        }
        Err(format!(
            "the health check did not pass within {:?}: {last}",
            self.settings.health_deadline
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::{AbSlots, Image};

    struct Fixture {
        dir: tempfile::TempDir,
        ab: AbSlots,
        settings: BootSettings,
    }

    impl Fixture {
        async fn new(health: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let ab = AbSlots {
                dir: dir.path().join("slots"),
            };
            let img = dir.path().join("img");
            std::fs::write(&img, b"new").unwrap();
            let image = Image {
                path: img,
                version: "2".into(),
                md5: String::new(),
                sha256: String::new(),
            };
            ab.install(&image).await.unwrap();
            let settings = BootSettings {
                health_command: Some(health.into()),
                health_deadline: Duration::from_secs(1),
                ..BootSettings::default()
            };
            Fixture { dir, ab, settings }
        }

        fn ctx(&self) -> Ctx<'_> {
            Ctx {
                dir: self.dir.path(),
                dialect: Dialect::Aliyun,
                installer: &self.ab,
                settings: &self.settings,
            }
        }
    }

    #[tokio::test]
    async fn healthy_trial_commits() {
        let f = Fixture::new("test \"$OTTER_FIRMWARE_VERSION\" = 2").await;
        f.ctx().switch("1", "2").await.unwrap();
        let mut reports = vec![];
        assert_eq!(
            f.ctx().on_start(&mut reports).await,
            Some(Verdict::Committed("2".into()))
        );
        assert_eq!(f.ab.active_slot().as_deref(), Some("b"));
        assert_eq!(state::load_version(f.dir.path(), "1").unwrap(), "2");
        assert!(load(f.dir.path()).is_none());
        assert_eq!(f.ctx().on_start(&mut reports).await, None);
    }

    #[tokio::test]
    async fn failed_health_check_rolls_back() {
        let f = Fixture::new("exit 1").await;
        f.ctx().switch("1", "2").await.unwrap();
        let mut reports = vec![];
        let trial = load(f.dir.path()).unwrap();
        assert_eq!(
            f.ctx().confirm(&trial, &mut reports).await,
            Verdict::RolledBack("1".into())
        );
        assert_eq!(f.ab.active_slot().as_deref(), Some("a"));
        assert_eq!(state::load_version(f.dir.path(), "1").unwrap(), "1");
        assert!(
            matches!(&reports[0], Report::Failed { code: -4, .. }),
            "{reports:?}"
        );
        assert_eq!(
            reports[1],
            Report::Version {
                version: "1".into()
            }
        );
    }

    #[tokio::test]
    async fn crash_loop_rolls_back_without_checking() {
        let f = Fixture::new("true").await;
        f.ctx().switch("1", "2").await.unwrap();
        // The agent died during each of its first starts (before confirming).
        for boots in 1..=f.settings.max_boots {
            let mut t = load(f.dir.path()).unwrap();
            t.boots = boots;
            store(f.dir.path(), &t).unwrap();
        }
        let mut reports = vec![];
        assert_eq!(
            f.ctx().on_start(&mut reports).await,
            Some(Verdict::RolledBack("1".into()))
        );
        assert_eq!(f.ab.active_slot().as_deref(), Some("a"));
        let Report::Failed { message, .. } = &reports[0] else {
            panic!("{reports:?}")
        };
        assert!(message.contains("crash loop"), "{message}");
    }

    #[tokio::test]
    async fn power_cut_before_the_switch_keeps_the_old_image() {
        let f = Fixture::new("true").await;
        // As if the power went out right after `Switching` was persisted.
        let t = TrialState {
            phase: Phase::Switching,
            from: "1".into(),
            to: "2".into(),
            slot_before: Some("a".into()),
            boots: 0,
        };
        store(f.dir.path(), &t).unwrap();
        let mut reports = vec![];
        assert_eq!(
            f.ctx().on_start(&mut reports).await,
            Some(Verdict::RolledBack("1".into()))
        );
        assert_eq!(f.ab.active_slot().as_deref(), Some("a"));
        assert!(load(f.dir.path()).is_none());
    }
}
