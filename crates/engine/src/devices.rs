//! The device path: every message a device sends goes through here.
//!
//! Decode (otter-protocol) → decide (otter-core) → persist (otter-store) → answer (broker).
//! Messages are handled in order per device (workers are sharded by device), and concurrently
//! across devices. Nothing a device sends can make this fail for other devices: every error is
//! logged with the device it came from and the message is dropped.

use crate::changes::Changes;
use crate::clock::Clock;
use crate::gate::DeviceIdentity;
use crate::links::Links;
use crate::presence::Presence;
use anyhow::{Context, Result};
use bytes::Bytes;
use otter_core::{Decision, Fact, Module, Situation, Version, decide};
use otter_mqtt::{BrokerEvent, Publish};
use otter_protocol::{self as protocol, Answer, Offer, Outbound, Progress, UpMessage, Uplink};
use otter_store::{Store, Upgrade, UpgradeUpdate, VersionReport};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Devices handled concurrently (each shard handles its devices' messages in order); enough
/// to keep the change writer's batches full.
const SHARDS: usize = 32;

pub(crate) struct Devices {
    pub(crate) store: Store,
    broker: Arc<dyn Publish>,
    pub(crate) links: Arc<Links>,
    pub(crate) url_ttl: Duration,
    /// Version reports and last-seen times, written behind in batches.
    pub(crate) presence: Arc<Presence>,
    /// Device-driven upgrade changes, committed in groups.
    changes: Changes,
    clock: Arc<dyn Clock>,
    next_id: AtomicU64,
}

/// What applying a fact to a device's live upgrade produced.
#[derive(Default)]
struct Applied {
    /// The device had a live upgrade of that module.
    found: bool,
    /// The offer to send, when the rules say to (re)send it.
    offer: Option<Pushable>,
}

/// An offer with the `otter` extension that goes beside it.
pub struct Pushable {
    pub offer: Offer,
    pub ext: protocol::OfferExt,
}

/// What the device path needs from the rest of the engine.
pub(crate) struct Parts {
    pub store: Store,
    pub broker: Arc<dyn Publish>,
    pub links: Arc<Links>,
    pub url_ttl: Duration,
    pub presence: Arc<Presence>,
    pub changes: Changes,
    pub clock: Arc<dyn Clock>,
}

impl Devices {
    pub(crate) fn new(parts: Parts) -> Arc<Self> {
        let Parts {
            store,
            broker,
            links,
            url_ttl,
            presence,
            changes,
            clock,
        } = parts;
        Arc::new(Self {
            // Message ids only need to differ across restarts: wall time, not the injected clock.
            next_id: AtomicU64::new(otter_store::now_ms() as u64),
            changes,
            store,
            broker,
            links,
            url_ttl,
            presence,
            clock,
        })
    }

    /// Consumes broker events until the broker's sender is dropped.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        mut events: mpsc::Receiver<BrokerEvent<DeviceIdentity>>,
    ) -> tokio::task::JoinHandle<()> {
        let shards: Vec<_> = (0..SHARDS)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<BrokerEvent<DeviceIdentity>>(1024);
                let engine = Arc::clone(self);
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        engine.handle(event).await;
                    }
                });
                tx
            })
            .collect();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let who = match &event {
                    BrokerEvent::Connected(id) | BrokerEvent::Disconnected(id) => id,
                    BrokerEvent::Message { from, .. } => from,
                };
                let mut h = std::collections::hash_map::DefaultHasher::new();
                who.hash(&mut h);
                if shards[h.finish() as usize % SHARDS]
                    .send(event)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    }

    /// A fresh message id for a push (unique per process run).
    pub(crate) fn next_message_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn handle(&self, event: BrokerEvent<DeviceIdentity>) {
        let (who, result) = match event {
            BrokerEvent::Connected(id) => {
                self.presence.online(&id.product, &id.device, true);
                (id, Ok(()))
            }
            BrokerEvent::Disconnected(id) => {
                self.presence.online(&id.product, &id.device, false);
                (id, Ok(()))
            }
            BrokerEvent::Message {
                from,
                topic,
                payload,
            } => {
                metrics::counter!("otter_device_messages_total").increment(1);
                let r = self.on_message(&from, &topic, &payload).await;
                (from, r)
            }
        };
        if let Err(e) = result {
            error!(device = %who.addr(), error = format!("{e:#}"), "handling a device message failed");
        }
    }

    async fn on_message(&self, from: &DeviceIdentity, topic: &str, payload: &[u8]) -> Result<()> {
        let uplink = match protocol::parse_uplink(topic, payload) {
            Ok(uplink) => uplink,
            Err(rejected) => {
                metrics::counter!("otter_device_messages_rejected_total").increment(1);
                warn!(device = %from.addr(), topic, error = %rejected.error, "rejected device message");
                if let Some(reply) = protocol::error_reply(&rejected) {
                    self.send(reply).await?;
                }
                return Ok(());
            }
        };
        if uplink.device != from.addr() || uplink.dialect != from.dialect {
            // The broker's ACL already stops this; never trust one layer alone.
            warn!(device = %from.addr(), topic, "message about another device ignored");
            return Ok(());
        }
        match &uplink.message {
            UpMessage::VersionReport { module, version } => {
                self.on_version(from, &uplink, module, version).await
            }
            UpMessage::Progress {
                module,
                version,
                progress,
            } => {
                self.on_progress(from, &uplink, module, version.as_deref(), progress)
                    .await
            }
            UpMessage::FirmwareRequest { module } => {
                let applied = self
                    .apply(from, &parse_module(module)?, Fact::Requested)
                    .await?;
                let (offer, ext) = match applied.offer {
                    Some(p) => (Some(p.offer), p.ext),
                    None => (None, protocol::OfferExt::default()),
                };
                if let Some(reply) = protocol::answer_with_ext(&uplink, Answer::Offer(offer), &ext)
                {
                    self.send(reply).await?;
                }
                Ok(())
            }
            UpMessage::UpgradeReply { code } => {
                debug!(device = %from.addr(), ?code, "upgrade reply");
                Ok(())
            }
            UpMessage::Health { counters } => {
                // Counted for health gates (campaigns.rs judges them per device-hour).
                debug!(device = %from.addr(), ?counters, "health report");
                metrics::counter!("otter_health_reports_total").increment(1);
                self.store
                    .add_device_counters(&from.product, &from.device, counters)
                    .await
                    .context("storing a health report")
            }
        }
    }

    async fn on_version(
        &self,
        from: &DeviceIdentity,
        uplink: &Uplink,
        module: &str,
        version: &str,
    ) -> Result<()> {
        let (module, version) = match (Module::parse(module), Version::parse(version)) {
            (Ok(m), Ok(v)) => (m, v),
            (Err(e), _) | (_, Err(e)) => {
                warn!(device = %from.addr(), error = %e, "version report refused");
                return Ok(());
            }
        };
        self.presence.report(VersionReport {
            product: from.product.clone(),
            device: from.device.clone(),
            module: module.clone(),
            version: version.clone(),
            at: self.clock.now_ms().into(),
        });
        self.answer(uplink, Answer::Ack).await?;
        let applied = self
            .apply(from, &module, Fact::VersionReported(&version))
            .await?;
        if let Some(p) = applied.offer {
            self.send_push(from.dialect, &from.addr(), &p.offer, &p.ext)
                .await?;
        }
        Ok(())
    }

    async fn on_progress(
        &self,
        from: &DeviceIdentity,
        uplink: &Uplink,
        module: &str,
        version: Option<&str>,
        progress: &Progress,
    ) -> Result<()> {
        let module = parse_module(module)?;
        // A version we cannot parse cannot be our target: treat it as "about another version".
        let version = version.map(|v| Version::parse(v).ok());
        let applied = match version {
            Some(None) => Applied {
                found: true,
                offer: None,
            },
            Some(Some(ref v)) => {
                self.apply(from, &module, progress_fact(progress, Some(v)))
                    .await?
            }
            None => {
                self.apply(from, &module, progress_fact(progress, None))
                    .await?
            }
        };
        let answer = if applied.found {
            Answer::Ack
        } else {
            Answer::TaskNotFound
        };
        self.answer(uplink, answer).await
    }

    /// Applies a fact to the device's live upgrade of `module`: `decide`'s verdict, stored as it
    /// is (status and push count in one conditional write), and the offer when it says push.
    async fn apply(
        &self,
        from: &DeviceIdentity,
        module: &Module,
        fact: Fact<'_>,
    ) -> Result<Applied> {
        let Some(upgrade) = self
            .store
            .live_upgrade(&from.product, &from.device, module)
            .await?
        else {
            return Ok(Applied::default());
        };
        let stored;
        let running = match fact {
            Fact::VersionReported(v) => Some(v),
            // A request carries no version in every dialect: the last report decides.
            Fact::Requested => {
                stored = self.running_version(&upgrade).await?;
                stored.as_ref()
            }
            _ => None,
        };
        let ctx = Situation {
            mode: upgrade.mode,
            allow_downgrade: upgrade.allow_downgrade,
            scheme: upgrade.version_scheme,
            running,
            online: true,
        };
        let decision = decide(&upgrade.status, fact, &ctx);
        if !self.record(&upgrade, &decision).await? || !decision.push {
            return Ok(Applied {
                found: true,
                offer: None,
            });
        }
        let firmware = self
            .store
            .firmware_by_version(&upgrade.product, &upgrade.module, &upgrade.status.target)
            .await
            .context("firmware of a live upgrade")?;
        Ok(Applied {
            found: true,
            offer: Some(Pushable {
                offer: self.offer(&firmware, &upgrade.device).await,
                ext: self.offer_ext(&firmware).await?,
            }),
        })
    }

    /// The device's running version of the upgrade's module, as last reported.
    async fn running_version(&self, upgrade: &Upgrade) -> Result<Option<Version>> {
        // The device's last report may still be queued.
        self.presence.flush().await;
        Ok(self
            .store
            .versions(&upgrade.product, &upgrade.device)
            .await?
            .into_iter()
            .find(|m| m.module == upgrade.module)
            .map(|m| m.version))
    }

    /// Stores a decision: one conditional write of the new status and the push together.
    /// Whether it was written (false: nothing to write, or the upgrade moved meanwhile and
    /// this verdict is stale, so nothing is sent).
    async fn record(&self, upgrade: &Upgrade, decision: &Decision) -> Result<bool> {
        if decision.next.is_none() && !decision.push {
            return Ok(false);
        }
        let next = decision.outcome(&upgrade.status);
        let written = self
            .changes
            .write(UpgradeUpdate {
                campaign_id: upgrade.campaign_id,
                product: upgrade.product.clone(),
                device: upgrade.device.clone(),
                from: upgrade.status.state,
                status: next.clone(),
                changed: decision.next.is_some(),
                push: decision.push,
            })
            .await?;
        if written && next.state != upgrade.status.state {
            metrics::counter!("otter_upgrade_transitions_total", "state" => next.state.as_str())
                .increment(1);
            info!(device = %format!("{}/{}", upgrade.product, upgrade.device), campaign = upgrade.campaign_id,
                from = %upgrade.status.state, to = %next.state, code = ?next.result_code,
                reason = next.reason.map(|r| r.as_str()), detail = next.result_msg.as_deref(), "upgrade state changed");
        }
        Ok(written)
    }

    async fn answer(&self, uplink: &Uplink, answer: Answer) -> Result<()> {
        match protocol::answer(uplink, answer) {
            Some(reply) => self.send(reply).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn send(&self, out: Outbound) -> Result<()> {
        self.broker
            .publish(&out.topic, Bytes::from(out.payload), out.qos)
            .await
            .with_context(|| format!("publishing to {}", out.topic))
    }
}

fn parse_module(module: &str) -> Result<Module> {
    Module::parse(module).context("module name from a device")
}

fn progress_fact<'a>(progress: &'a Progress, version: Option<&'a Version>) -> Fact<'a> {
    match progress {
        Progress::Downloading { percent } => Fact::Downloading {
            percent: *percent,
            version,
        },
        Progress::Burning => Fact::Burning { version },
        Progress::Done => Fact::Done { version },
        Progress::Failed { code, message } => Fact::Failed {
            code: *code,
            message,
            version,
        },
    }
}
