//! Device-driven upgrade changes (downloading, burning, succeeded, failed), committed together.
//!
//! Every device of a rollout makes five or six such changes, and each must be durable with its
//! history event before the engine goes on with that device. One transaction per change makes
//! the store's single writer the limit of a rollout; here the engine's shards hand their
//! changes to one task, which commits everything waiting as one set-based transaction (group
//! commit: no timer, a batch gathers while the previous one commits) and tells each caller
//! whether its conditional update won.

use otter_store::{Store, UpgradeUpdate};
use std::collections::HashSet;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

/// Changes per transaction at most: bounds the JSON parameter and the time a batch holds the
/// writer.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<bool, String>>;
type Item = (UpgradeUpdate, Reply);

pub struct Changes {
    tx: mpsc::Sender<Item>,
}

impl Changes {
    /// Starts the committing task; it ends when the `Changes` is dropped.
    pub fn spawn(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        (Self { tx }, tokio::spawn(commit_batches(store, rx)))
    }

    /// Writes one change (only while the upgrade is live); whether it was written.
    pub async fn write(&self, update: UpgradeUpdate) -> anyhow::Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((update, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the change writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the change writer has stopped"))?
            .map_err(anyhow::Error::msg)
    }
}

async fn commit_batches(store: Store, mut rx: mpsc::Receiver<Item>) {
    let mut carry: Option<Item> = None;
    loop {
        let first = match carry.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        let mut keys = HashSet::from([key(&first.0)]);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(item) = rx.try_recv() else { break };
            // One change per upgrade and batch: a second waits for the next one.
            if !keys.insert(key(&item.0)) {
                carry = Some(item);
                break;
            }
            batch.push(item);
        }
        let (updates, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match store.update_upgrades(&updates).await {
            Ok(written) => {
                for (reply, written) in replies.into_iter().zip(written) {
                    let _ = reply.send(Ok(written));
                }
            }
            Err(e) => {
                error!(error = %e, changes = updates.len(), "writing upgrade changes failed");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

fn key(u: &UpgradeUpdate) -> (i64, String, String) {
    (u.campaign_id, u.product.to_string(), u.device.to_string())
}
