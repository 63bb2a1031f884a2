//! One firmware upgrade from offer to confirmed version: check the offer's signature, download
//! and verify (resumably), install, switch and run on trial (`boot.rs`), and tell the server
//! each step in its dialect. Runs as its own task so the MQTT connection keeps being served.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otter_protocol::{FailureKind, Offer, OfferExt, failure_code};
use tokio::sync::mpsc;

use crate::boot::{self, Verdict};
use crate::download::{self, Fetched};
use crate::install::{Image, Installer};
use crate::outbox::Report;
use crate::report::Reporter;
use crate::state;
use crate::verify::{self, Trust, Verified};
use crate::{BootSettings, DownloadSettings, Restart};

/// Download progress is reported at least this many percent apart...
const PROGRESS_STEP: u8 = 5;
/// ...or at least this long apart.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Everything an upgrade needs.
pub(crate) struct Job {
    pub offer: Offer,
    /// The offer's Otter extension, or why it could not be read.
    pub ext: Result<Option<OfferExt>, String>,
    pub product: String,
    /// Trusted keys and the newest signature seen, shared with the agent.
    pub trust: Arc<Mutex<Trust>>,
    /// Progress percentages go straight out (QoS 0)...
    pub reporter: Reporter,
    /// ...results go through the session's outbox.
    pub results: mpsc::UnboundedSender<Report>,
    pub http: reqwest::Client,
    pub state_dir: PathBuf,
    pub installer: Arc<dyn Installer>,
    pub download: DownloadSettings,
    pub boot: BootSettings,
    /// The version the device runs, shared with the agent.
    pub current: Arc<Mutex<String>>,
}

/// How an upgrade ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Installed,
    RolledBack,
    Failed(FailureKind),
    /// The new image is switched in; the agent must stop so the device restarts into it.
    Restart,
}

impl Job {
    /// Runs the upgrade to its end, reporting every step; never panics.
    pub(crate) async fn run(self) -> Outcome {
        let version = self.offer.version.clone();
        tracing::info!(%version, url = %self.offer.url, size = self.offer.size, "upgrade starting");
        let outcome = match self.verify() {
            Err(refused) => {
                tracing::warn!(%version, error = %refused, "offer refused");
                self.fail(FailureKind::DigestMismatch, refused)
            }
            Ok(offer) => match self.download(&offer).await {
                Ok(image) => self.install(&offer, &image).await,
                Err(err) => {
                    tracing::warn!(%version, error = %err, "download failed");
                    self.fail(err.kind(), err.to_string())
                }
            },
        };
        tracing::info!(%version, ?outcome, "upgrade finished");
        outcome
    }

    /// Checks the offer (`verify.rs`) and remembers what it taught: announced keys and the
    /// newest signature seen, persisted before anything is downloaded.
    fn verify(&self) -> Result<Offer, String> {
        let current = self.current_version();
        let mut trust = self.trust.lock().unwrap_or_else(|p| p.into_inner());
        let Verified {
            offer,
            learned,
            issued,
        } = verify::check(
            &trust,
            &self.product,
            &current,
            now_secs(),
            self.offer.clone(),
            self.ext.clone(),
        )
        .map_err(|r| r.to_string())?;
        let seen = trust.issued.get(&offer.module).copied().unwrap_or(0);
        if learned.is_empty() && issued.is_none_or(|i| i <= seen) {
            return Ok(offer);
        }
        let mut next = trust.clone();
        for (announcement, key) in learned {
            tracing::info!(key = %announcement.key, signed_by = %announcement.signed_by, "trusting an announced key");
            next.keys.push(key);
            next.learned.push(announcement);
        }
        if let Some(issued) = issued.filter(|&i| i > seen) {
            next.issued.insert(offer.module.clone(), issued);
        }
        let file = state::TrustFile {
            announcements: next.learned.clone(),
            issued: next.issued.clone(),
        };
        state::store_trust(&self.state_dir, &file)
            .map_err(|e| format!("cannot record the trust state: {e}"))?;
        *trust = next;
        Ok(offer)
    }

    fn current_version(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn download(&self, offer: &Offer) -> Result<Fetched, download::DownloadError> {
        let version = &offer.version;
        let mut throttle = Throttle::default();
        let fetched = download::fetch(
            &self.http,
            offer,
            &self.state_dir,
            &self.download,
            |got, total| {
                if let Some(p) = throttle.next(got, total) {
                    self.reporter.try_downloading(version, p);
                }
            },
        )
        .await?;
        if let Some(p) = throttle.finish() {
            self.reporter.try_downloading(version, p);
        }
        tracing::info!(%version, md5 = %fetched.md5, sha256 = %fetched.sha256, "image downloaded and verified");
        Ok(fetched)
    }

    /// Installs, switches, restarts into the new image (or confirms it in place).
    async fn install(&self, offer: &Offer, fetched: &Fetched) -> Outcome {
        let version = &offer.version;
        self.send(Report::Burning {
            version: version.clone(),
        });
        let image = Image {
            path: fetched.path.clone(),
            version: version.clone(),
            md5: fetched.md5.clone(),
            sha256: fetched.sha256.clone(),
        };
        let installed = self.installer.install(&image).await;
        // Installed or not, this image is done with (a retry downloads it again).
        download::discard(&self.state_dir);
        if let Err(err) = installed {
            tracing::warn!(%version, error = %err, "install failed");
            return self.fail(FailureKind::InstallFailed, err.to_string());
        }
        let from = self.current_version();
        let ctx = self.ctx();
        if let Err(why) = ctx.switch(&from, version).await {
            return self.fail(FailureKind::InstallFailed, why);
        }
        let Some(trial) = boot::load(&self.state_dir) else {
            return self.fail(
                FailureKind::InstallFailed,
                "the trial state vanished".into(),
            );
        };
        let mut reports = vec![];
        let verdict = match &self.boot.restart {
            Restart::InPlace => ctx.confirm(&trial, &mut reports).await,
            Restart::Command(command) => match run_restart(command).await {
                Ok(()) => return Outcome::Restart,
                Err(why) => ctx.rollback(&trial, why, &mut reports).await,
            },
            Restart::Reexec => {
                // Only returns when the exec failed.
                let why = crate::session::reexec();
                ctx.rollback(&trial, why, &mut reports).await
            }
        };
        reports.into_iter().for_each(|r| self.send(r));
        match verdict {
            Verdict::Committed(v) => {
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = v;
                Outcome::Installed
            }
            Verdict::RolledBack(_) => Outcome::RolledBack,
        }
    }

    fn ctx(&self) -> boot::Ctx<'_> {
        boot::Ctx {
            dir: &self.state_dir,
            dialect: self.reporter.dialect(),
            installer: self.installer.as_ref(),
            settings: &self.boot,
        }
    }

    fn send(&self, report: Report) {
        if self.results.send(report).is_err() {
            tracing::warn!("the session is gone; report dropped");
        }
    }

    fn fail(&self, kind: FailureKind, message: String) -> Outcome {
        // Tencent's SDKs always say "time_out"; servers go by the code, so say what happened.
        let code = failure_code(self.reporter.dialect(), kind);
        self.send(Report::Failed {
            version: self.offer.version.clone(),
            code,
            message,
        });
        Outcome::Failed(kind)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the restart hook (`sh -c`); Ok when it exited 0 (the agent then stops).
async fn run_restart(command: &str) -> Result<(), String> {
    tracing::info!(command, "restarting into the new image");
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command);
    crate::install::run(cmd, "the restart command")
        .await
        .map_err(|e| e.to_string())
}

/// Decides which download percentages are worth a report: every [`PROGRESS_STEP`] percent or
/// every [`PROGRESS_INTERVAL`], whichever comes first, and never the same percent twice.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<(u8, Instant)>,
}

impl Throttle {
    fn next(&mut self, got: u64, total: u64) -> Option<u8> {
        let percent = percent(got, total);
        let due = match self.last {
            None => true,
            Some((p, _)) if p == percent => false,
            Some((p, at)) => percent >= p + PROGRESS_STEP || at.elapsed() >= PROGRESS_INTERVAL,
        };
        due.then(|| {
            self.last = Some((percent, Instant::now()));
            percent
        })
    }

    /// 100 %, unless it was already reported.
    fn finish(&mut self) -> Option<u8> {
        match self.last {
            Some((100, _)) => None,
            _ => {
                self.last = Some((100, Instant::now()));
                Some(100)
            }
        }
    }
}

fn percent(got: u64, total: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    let p = u128::from(got.min(total)) * 100 / u128::from(total);
    u8::try_from(p).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reports_every_five_percent() {
        let mut t = Throttle::default();
        let reported: Vec<u8> = (0..=1000u64).filter_map(|got| t.next(got, 1000)).collect();
        assert_eq!(reported.first(), Some(&0));
        assert_eq!(reported.last(), Some(&100));
        assert!(reported.windows(2).all(|w| w[1] >= w[0] + PROGRESS_STEP));
        assert_eq!(t.finish(), None);
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(5, 10), 50);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(percent(20, 10), 100);
    }
}
