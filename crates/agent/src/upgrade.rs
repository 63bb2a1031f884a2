//! One firmware upgrade from offer to installed version: download and verify, install, record
//! the new version and tell the server each step in its dialect. Runs as its own task so the
//! MQTT connection keeps being served meanwhile.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otter_protocol::{FailureKind, Offer, Progress, failure_code};

use crate::download::{self, Fetched};
use crate::install::{self, Image};
use crate::report::Reporter;
use crate::state;

/// Download progress is reported at least this many percent apart...
const PROGRESS_STEP: u8 = 5;
/// ...or at least this long apart.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Everything an upgrade needs.
pub(crate) struct Job {
    pub offer: Offer,
    pub reporter: Reporter,
    pub http: reqwest::Client,
    pub state_dir: PathBuf,
    pub install_command: Option<String>,
    /// The version the device runs, shared with the agent.
    pub current: Arc<Mutex<String>>,
}

/// How an upgrade ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Installed,
    Failed(FailureKind),
}

impl Job {
    /// Runs the upgrade to its end, reporting every step; never panics.
    pub(crate) async fn run(self) -> Outcome {
        let version = self.offer.version.clone();
        tracing::info!(%version, url = %self.offer.url, size = self.offer.size, "upgrade starting");
        let outcome = match self.download().await {
            Ok(image) => {
                let outcome = self.install(&image).await;
                remove_quietly(&image.path).await;
                outcome
            }
            Err(err) => {
                tracing::warn!(%version, error = %err, "download failed");
                self.fail(err.kind(), err.to_string()).await
            }
        };
        tracing::info!(%version, ?outcome, "upgrade finished");
        outcome
    }

    async fn download(&self) -> Result<Fetched, download::DownloadError> {
        let version = &self.offer.version;
        let mut throttle = Throttle::default();
        if let Some(p) = throttle.next(0, self.offer.size) {
            self.reporter.try_downloading(version, p);
        }
        let dest = state::download_path(&self.state_dir, version);
        let fetched = download::fetch(&self.http, &self.offer, &dest, |got, total| {
            if let Some(p) = throttle.next(got, total) {
                self.reporter.try_downloading(version, p);
            }
        })
        .await?;
        if let Some(p) = throttle.finish() {
            self.reporter.try_downloading(version, p);
        }
        tracing::info!(%version, md5 = %fetched.md5, "image downloaded and verified");
        Ok(fetched)
    }

    /// Runs the install command, then records and reports the new version.
    async fn install(&self, image: &Fetched) -> Outcome {
        let version = &self.offer.version;
        self.reporter.progress(version, Progress::Burning).await;
        if let Some(command) = &self.install_command {
            let img = Image {
                path: &image.path,
                version,
                md5: &image.md5,
                sha256: &image.sha256,
            };
            if let Err(err) = install::run(command, &img).await {
                tracing::warn!(%version, error = %err, "install failed");
                return self.fail(FailureKind::InstallFailed, err.to_string()).await;
            }
        } else {
            tracing::info!(%version, "no install command configured; recording the version only");
        }
        // The image is installed whatever happens next, so the device runs the new version
        // even if recording it fails (it would then report the old one after a restart).
        if let Err(err) = state::store_version(&self.state_dir, version) {
            tracing::error!(%version, error = %err, "cannot record the installed version");
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = version.clone();
        // Installed: the image is no longer needed, and is gone before anyone hears of success.
        remove_quietly(&image.path).await;
        self.reporter.progress(version, Progress::Done).await;
        self.reporter.version(version).await;
        Outcome::Installed
    }

    async fn fail(&self, kind: FailureKind, message: String) -> Outcome {
        // Tencent's SDKs always say "time_out"; servers go by the code, so say what happened.
        let code = failure_code(self.reporter.dialect(), kind);
        self.reporter
            .failed(&self.offer.version, code, message)
            .await;
        Outcome::Failed(kind)
    }
}

async fn remove_quietly(path: &std::path::Path) {
    if let Err(err) = tokio::fs::remove_file(path).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %err, "cannot remove the image");
    }
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
