//! The report sequence of one simulated upgrade, from offer to new version or failure, in the
//! order the vendor SDKs send it: downloading 0/50/100, Tencent's burning and done, then the
//! new version. With `download` on, the image is really fetched (streamed, nothing stored)
//! and its size and MD5 checked; a real HTTP failure is reported with its own code.

use std::sync::Arc;
use std::time::Duration;

use md5::Md5;
use otter_protocol::{FailureKind, Offer, Progress, failure_code};
use sha2::Digest;

use super::Outcome;
use super::cell::Cell;
use super::chance::Plan;
use crate::download::DownloadError;
use crate::report::Reporter;

/// How long a dropping device keeps its connection after its last report.
const DROP_AFTER: Duration = Duration::from_millis(200);

/// Everything one upgrade needs; runs inside the device's task.
pub(super) struct Script {
    pub reporter: Reporter,
    pub cell: Arc<Cell>,
    pub offer: Offer,
    pub plan: Plan,
    pub delay: Duration,
    pub http: Option<super::Http>,
    /// What the device does once it said `done` (only on the faulty release).
    pub sickness: super::Sickness,
}

impl Script {
    pub async fn run(self) -> Outcome {
        let version = self.offer.version.clone();
        tracing::debug!(device = %self.cell.addr, %version, plan = ?self.plan, "upgrade starting");
        self.step(Progress::Downloading { percent: 0 }).await;
        if let Plan::Fail(kind) = self.plan
            && is_download_failure(kind)
        {
            return self.fail(kind).await;
        }
        let received_md5 = match &self.http {
            Some(http) => match self.fetch(http).await {
                Ok(md5) => Some(md5),
                Err(err) => {
                    tracing::debug!(device = %self.cell.addr, %version, error = %err, "download failed");
                    return self.fail(err.kind()).await;
                }
            },
            None => {
                self.step(Progress::Downloading { percent: 50 }).await;
                None
            }
        };
        if self.plan == Plan::Drop {
            // Let the reports so far reach the broker, as they would before a real loss.
            tokio::time::sleep(self.delay.max(DROP_AFTER)).await;
            return Outcome::Dropped { version };
        }
        self.step(Progress::Downloading { percent: 100 }).await;
        let corrupt = received_md5.is_some_and(|got| {
            !self.offer.md5.is_empty() && !self.offer.md5.eq_ignore_ascii_case(&got)
        });
        if corrupt || self.plan == Plan::Fail(FailureKind::DigestMismatch) {
            return self.fail(FailureKind::DigestMismatch).await;
        }
        self.step(Progress::Burning).await;
        if let Plan::Fail(kind) = self.plan {
            return self.fail(kind).await;
        }
        match self.sickness {
            super::Sickness::BackOnOld => {
                // A bootloader rollback: it said done, and restarts on what it had.
                self.step(Progress::Done).await;
                self.reporter.version(&self.cell.version()).await;
                return Outcome::Reverted { version };
            }
            super::Sickness::NeverBack => {
                let _ = self.cell.set_version(&version);
                self.step(Progress::Done).await;
                return Outcome::Gone { version };
            }
            _ => {}
        }
        // Switched before `done` is said: a device that reconnects after saying it (a server
        // restart, say) comes back on the new image, as a real one does after its reboot.
        let from = self.cell.set_version(&version);
        self.step(Progress::Done).await;
        self.reporter.version(&version).await;
        Outcome::Upgraded { from, to: version }
    }

    /// Reports one state, then pauses; states the dialect cannot express are skipped whole.
    async fn step(&self, progress: Progress) {
        let expressible = self.cell.dialect == otter_protocol::Dialect::Tencent
            || !matches!(progress, Progress::Burning | Progress::Done);
        if !expressible {
            return;
        }
        self.reporter.progress(&self.offer.version, progress).await;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }

    async fn fail(&self, kind: FailureKind) -> Outcome {
        let code = failure_code(self.cell.dialect, kind);
        // Tencent's SDKs always say "time_out"; servers go by the code.
        let message = match self.cell.dialect {
            otter_protocol::Dialect::Tencent => "time_out".to_owned(),
            _ => format!("{kind:?}"),
        };
        self.reporter
            .failed(&self.offer.version, code, message)
            .await;
        Outcome::Failed {
            version: self.offer.version.clone(),
            code,
        }
    }

    /// GETs the image, reporting 50 % half way, and checks its size; returns its MD5 (the
    /// caller checks it after reporting 100 %, as devices verify a complete download). Nothing
    /// is stored.
    async fn fetch(&self, http: &super::Http) -> Result<String, DownloadError> {
        let size = self.offer.size;
        // Held until the body is read: the connection is open that long. The semaphore is
        // never closed, so the error arm cannot happen; a download then just runs uncapped.
        let _slot = http.slots.acquire().await.ok();
        let mut response = http.client.get(&self.offer.url).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(DownloadError::Status(status));
        }
        let (mut md5, mut received, mut halfway) = (Md5::new(), 0u64, false);
        while let Some(chunk) = response.chunk().await? {
            received = received.saturating_add(chunk.len() as u64);
            if received > size {
                return Err(DownloadError::Size {
                    expected: size,
                    got: received,
                });
            }
            md5.update(&chunk);
            if !halfway && received.saturating_mul(2) >= size {
                halfway = true;
                self.step(Progress::Downloading { percent: 50 }).await;
            }
        }
        if received != size {
            return Err(DownloadError::Size {
                expected: size,
                got: received,
            });
        }
        Ok(hex::encode(md5.finalize()))
    }
}

/// Failures that happen before anything was downloaded.
fn is_download_failure(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::DownloadFailed
            | FailureKind::DownloadTimeout
            | FailureKind::NotFound
            | FailureKind::Forbidden
    )
}
