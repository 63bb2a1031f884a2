//! `/readyz`: whether this node can do its work now — the database answers a trivial query, the
//! blob store answers (folder present, bucket listable), the broker connection is up. `/healthz`
//! stays liveness (the process serves HTTP).

use crate::mqtt::Mqtt;
use axum::Json;
use axum::http::StatusCode;
use otter_store::Store;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tracing::{info, warn};

/// Each check gives up after this long.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What `/readyz` checks; cheap to clone.
#[derive(Clone)]
pub(crate) struct Readiness {
    store: Store,
    blobs: otter_blobs::Blobs,
    mqtt: Arc<Mqtt>,
    /// Bit per check that failed last time, so a failure (and a recovery) is logged once, not on
    /// every poll of a load balancer.
    failing: Arc<AtomicU8>,
}

impl Readiness {
    pub(crate) fn new(store: Store, blobs: otter_blobs::Blobs, mqtt: Arc<Mqtt>) -> Self {
        Self {
            store,
            blobs,
            mqtt,
            failing: Arc::default(),
        }
    }

    /// 200 `{"ready":true,"checks":{"database":"ok","blobs":"ok","broker":"ok"}}`, or 503 with
    /// each failing check's value saying in a few words what fails (no paths or addresses: the
    /// devices' listener serves it too; the details go to the log).
    pub(crate) async fn answer(self) -> (StatusCode, Json<Value>) {
        let (database, blobs) = tokio::join!(
            async {
                match tokio::time::timeout(CHECK_TIMEOUT, self.store.ping()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(("query failed", e.to_string())),
                    Err(_) => Err(("timed out", "no answer within 5 s".to_owned())),
                }
            },
            async {
                self.blobs
                    .check()
                    .await
                    .map_err(|e| (e.summary(), e.to_string()))
            },
        );
        let broker = match self.mqtt.is_connected() {
            true => Ok(()),
            false => Err((
                "disconnected",
                "the connection to the external MQTT broker is down".to_owned(),
            )),
        };
        let mut checks = Map::new();
        let mut ready = true;
        for (bit, (name, result)) in [("database", database), ("blobs", blobs), ("broker", broker)]
            .into_iter()
            .enumerate()
        {
            let mask = 1u8 << bit;
            let value = match result {
                Ok(()) => {
                    if self.failing.fetch_and(!mask, Ordering::Relaxed) & mask != 0 {
                        info!(check = name, "readiness check passes again");
                    }
                    "ok".to_owned()
                }
                Err((summary, detail)) => {
                    ready = false;
                    if self.failing.fetch_or(mask, Ordering::Relaxed) & mask == 0 {
                        warn!(check = name, error = %detail, "readiness check fails");
                    }
                    format!("failing: {summary}")
                }
            };
            checks.insert(name.to_owned(), Value::String(value));
        }
        let status = match ready {
            true => StatusCode::OK,
            false => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "ready": ready, "checks": checks })))
    }
}
