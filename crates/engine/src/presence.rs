//! What devices say about themselves — that they connected or left, the version each module
//! runs, when they were last heard — written behind the engine in batches.
//!
//! Devices repeat these facts on every connect and often periodically, so a report must not
//! cost the engine a database commit: it is queued here (one entry per device module, the
//! latest wins) and one task commits the queue as one batch. That is group commit without a
//! timer: under light load a report is written at once; while a batch commits, the next one
//! gathers, so under load many reports share a commit.
//!
//! A crash loses at most the reports not yet committed; devices send them again when they
//! reconnect (and a restart marks every device offline anyway). [`Presence::flush`] waits until
//! everything queued before it is committed: readers that decide on versions or on who is
//! online (campaign targeting, a release's pushes) call it first, so they see every connect
//! and report this node has handled.

use crate::clock::Clock;
use otter_core::{DeviceName, Module, ProductId, Timestamp};
use otter_store::{OnlineChange, Store, VersionReport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, error, warn};

/// Attempts to commit a batch before it is given up (logged); the store is then unreachable.
const ATTEMPTS: u32 = 5;

type Key = (ProductId, DeviceName, Module);

pub(crate) struct Presence {
    pending: Mutex<Pending>,
    clock: Arc<dyn Clock>,
    wake: Notify,
    /// The sequence number of the last report whose batch is done.
    committed: watch::Sender<u64>,
}

#[derive(Default)]
struct Pending {
    reports: HashMap<Key, VersionReport>,
    online: HashMap<(ProductId, DeviceName), OnlineChange>,
    /// The sequence number of the last report queued.
    queued: u64,
}

impl Presence {
    /// Starts the task that writes batches to `store` (the caller aborts it after a `flush`).
    pub fn spawn(store: Store, clock: Arc<dyn Clock>) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let presence = Arc::new(Self {
            pending: Mutex::default(),
            clock,
            wake: Notify::new(),
            committed: watch::Sender::new(0),
        });
        let writer = Arc::clone(&presence);
        let task = tokio::spawn(async move {
            loop {
                let (batch, upto) = writer.take();
                if batch.is_empty() {
                    // A report queued since `take` left a permit: this returns at once.
                    writer.wake.notified().await;
                    continue;
                }
                commit(&store, &batch).await;
                writer.committed.send_replace(upto);
            }
        });
        (presence, task)
    }

    /// Queues what a device reported; returns at once.
    pub fn report(&self, report: VersionReport) {
        let key = (
            report.product.clone(),
            report.device.clone(),
            report.module.clone(),
        );
        {
            let mut pending = self.lock();
            pending.queued += 1;
            pending.reports.insert(key, report);
        }
        self.wake.notify_one();
    }

    /// Queues a connect (`online`) or disconnect; returns at once.
    pub fn online(&self, product: &ProductId, device: &DeviceName, online: bool) {
        {
            let mut pending = self.lock();
            pending.queued += 1;
            // The latest state wins, but every connect is counted (health gates' churn).
            let change = pending
                .online
                .entry((product.clone(), device.clone()))
                .or_insert_with(|| OnlineChange {
                    product: product.clone(),
                    device: device.clone(),
                    online,
                    connects: 0,
                    at: Timestamp::default(),
                });
            change.online = online;
            change.connects += u32::from(online);
            change.at = self.clock.now_ms().into();
        }
        self.wake.notify_one();
    }

    /// Waits until every report queued before this call is committed (or given up).
    pub async fn flush(&self) {
        let target = self.lock().queued;
        let mut committed = self.committed.subscribe();
        let _ = committed.wait_for(|done| *done >= target).await;
    }

    fn take(&self) -> (Batch, u64) {
        let mut pending = self.lock();
        let batch = Batch {
            online: std::mem::take(&mut pending.online).into_values().collect(),
            reports: std::mem::take(&mut pending.reports).into_values().collect(),
        };
        (batch, pending.queued)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the map half-updated; keep going.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One batch: connects and disconnects, then version reports.
struct Batch {
    online: Vec<OnlineChange>,
    reports: Vec<VersionReport>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.online.is_empty() && self.reports.is_empty()
    }

    fn len(&self) -> usize {
        self.online.len() + self.reports.len()
    }

    async fn write(&self, store: &Store) -> otter_store::Result<()> {
        store.set_online_many(&self.online).await?;
        store.record_versions(&self.reports).await
    }
}

async fn commit(store: &Store, batch: &Batch) {
    for attempt in 1..=ATTEMPTS {
        match batch.write(store).await {
            Ok(()) => {
                metrics::counter!("otter_presence_changes_written_total")
                    .increment(batch.len() as u64);
                debug!(changes = batch.len(), "presence written");
                return;
            }
            Err(e) if attempt < ATTEMPTS => {
                warn!(error = %e, attempt, changes = batch.len(), "writing presence failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => {
                error!(error = %e, changes = batch.len(), "presence lost (devices resend versions when they reconnect)");
            }
        }
    }
}
