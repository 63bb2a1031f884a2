//! Campaigns: creating them (targeting + strategy), and driving them. The rollout decisions are
//! otter-core's pure planner; this file feeds it a snapshot from the store once per tick and
//! applies what it says. All state lives in the store, so a restarted server picks up exactly
//! where it stopped.

use crate::clock::Clock;
use crate::engine::Engine;
use anyhow::Result;
use otter_core::campaign::{
    self, Action, Bake, CampaignState, PlanInput, Projection, Slot, Strategy,
};
use otter_core::health::{self, Evidence, OnUnhealthy, Verdict};
use otter_core::targeting::{self, Candidate, Rules, Selection, Targeting};
use otter_core::{
    DeviceName, Fact, Module, ProductId, Reason, Situation, UpgradeState, UpgradeStatus, Version,
    decide,
};
use otter_protocol::Dialect;
use otter_store::{
    Campaign, CampaignKind, CampaignMode, FirmwareState, NewCampaign, NewSlot, Store, StoreError,
    Transition, Upgrade,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

const OPERATOR_PAUSE: &str = "paused by operator";

/// Verification campaigns take at most this many test devices.
pub const MAX_TEST_DEVICES: usize = 10;

const RELEASED: &[UpgradeState] = &[
    UpgradeState::Pending,
    UpgradeState::Pushed,
    UpgradeState::Downloading,
    UpgradeState::Burning,
];
const OPEN: &[UpgradeState] = &[
    UpgradeState::Queued,
    UpgradeState::Pending,
    UpgradeState::Pushed,
    UpgradeState::Downloading,
    UpgradeState::Burning,
];

#[derive(Debug, Clone, Deserialize)]
pub struct CampaignRequest {
    pub product: String,
    pub version: String,
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub selection: Selection,
    /// A device-name file's content (names per line or CSV); added to `selection.devices`.
    #[serde(default)]
    pub device_file: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default = "push_mode")]
    pub mode: CampaignMode,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub supersede: bool,
    #[serde(default)]
    pub allow_downgrade: bool,
    #[serde(default)]
    pub skip_verification: bool,
    /// Set by the server for the rollback of an unhealthy campaign; never from a request.
    #[serde(skip)]
    pub rollback_of: Option<i64>,
}

fn push_mode() -> CampaignMode {
    CampaignMode::Push
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotVerified(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What creating (or dry-running) a campaign produced.
#[derive(Debug, Serialize)]
pub struct Created {
    pub campaign: Option<Campaign>,
    pub targeting: Targeting,
    pub waves: Vec<usize>,
    pub projection: Projection,
}

pub struct Campaigns {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub clock: Arc<dyn Clock>,
}

impl Campaigns {
    pub async fn create(
        &self,
        req: CampaignRequest,
        kind: CampaignKind,
    ) -> Result<Created, CampaignError> {
        let invalid = |e: &dyn std::fmt::Display| CampaignError::Invalid(e.to_string());
        // Targeting reads reported versions: include every report acknowledged so far.
        self.engine.presence.flush().await;
        let product = self
            .store
            .product(&ProductId::parse(&req.product).map_err(|e| invalid(&e))?)
            .await?;
        let module = req
            .module
            .as_deref()
            .map(Module::parse)
            .transpose()
            .map_err(|e| invalid(&e))?
            .unwrap_or_default();
        let version = Version::parse(&req.version).map_err(|e| invalid(&e))?;
        let firmware = self
            .store
            .firmware_by_version(&product.id, &module, &version)
            .await?;
        req.strategy.validate().map_err(|e| invalid(&e))?;
        if kind == CampaignKind::Rollout
            && !req.skip_verification
            && firmware.state != FirmwareState::Verified
        {
            return Err(CampaignError::NotVerified(format!(
                "firmware {} {version} is {}: verify it on test devices first (otter firmware verify) or pass skip_verification",
                product.id,
                firmware.state.as_str()
            )));
        }
        let mut selection = req.selection.clone();
        if let Some(file) = &req.device_file {
            selection
                .devices
                .extend(targeting::parse_device_list(file).map_err(|e| invalid(&e))?);
        }
        let fleet: Vec<Candidate> = self
            .store
            .fleet(&product.id, &module)
            .await?
            .into_iter()
            .map(|d| Candidate {
                name: d.name,
                version: d.version,
                tags: d.tags,
            })
            .collect();
        let rules = Rules {
            scheme: product.version_scheme,
            allow_downgrade: req.allow_downgrade,
        };
        let targeting =
            targeting::select(&selection, &fleet, &version, rules).map_err(|e| invalid(&e))?;
        if kind == CampaignKind::Verification && targeting.selected.len() > MAX_TEST_DEVICES {
            return Err(CampaignError::Invalid(format!(
                "verification takes at most {MAX_TEST_DEVICES} test devices"
            )));
        }
        let waves = campaign::assign_waves(targeting.selected.len(), &req.strategy.waves);
        let now = self.clock.now_ms();
        let projection = campaign::project(&req.strategy, targeting.selected.len(), now);
        let wave_sizes = wave_sizes(&waves);
        if req.dry_run {
            return Ok(Created {
                campaign: None,
                targeting,
                waves: wave_sizes,
                projection,
            });
        }
        let versions: std::collections::HashMap<&DeviceName, &Version> = fleet
            .iter()
            .filter_map(|d| Some((&d.name, d.version.as_ref()?)))
            .collect();
        let selected = targeting
            .selected
            .iter()
            .zip(&waves)
            .map(|(device, wave)| NewSlot {
                device: device.clone(),
                wave: *wave,
                from_version: versions.get(device).map(|v| (*v).clone()),
                skipped: None,
            });
        // Devices left out for a reason join as `skipped`, so the verdict is visible on the
        // device and counted in the campaign (a name that is no device has nowhere to go).
        let skipped = targeting.skipped.iter().filter_map(|s| {
            let device = DeviceName::parse(&s.device).ok()?;
            Some(NewSlot {
                from_version: versions.get(&device).map(|v| (*v).clone()),
                device,
                wave: 0,
                skipped: Some((s.code?, s.reason.clone())),
            })
        });
        let slots = selected.chain(skipped).collect();
        let created = self
            .store
            .create_campaign(&NewCampaign {
                firmware: firmware.clone(),
                kind,
                state: CampaignState::Scheduled,
                mode: req.mode,
                selection: serde_json::to_value(&selection).unwrap_or_default(),
                strategy: req.strategy.clone(),
                allow_downgrade: req.allow_downgrade,
                skip_verification: req.skip_verification,
                slots,
                supersede: req.supersede,
                rollback_of: req.rollback_of,
            })
            .await?;
        if kind == CampaignKind::Verification {
            self.store
                .set_firmware_state(firmware.id, FirmwareState::Verifying)
                .await?;
        }
        info!(campaign = created.id, product = %product.id, %version, devices = targeting.selected.len(), ?kind, "campaign created");
        self.step(created.id).await?;
        Ok(Created {
            campaign: Some(self.store.campaign(created.id).await?),
            targeting,
            waves: wave_sizes,
            projection,
        })
    }

    /// Runs the planner over every live campaign once.
    pub async fn tick(&self) {
        let ids = match self.store.live_campaigns().await {
            Ok(ids) => ids,
            Err(e) => return error!(error = %e, "listing live campaigns failed"),
        };
        for id in ids {
            if let Err(e) = self.step(id).await {
                error!(
                    campaign = id,
                    error = format!("{e:#}"),
                    "campaign step failed"
                );
            }
        }
    }

    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                self.tick().await;
            }
        })
    }

    /// One planner pass over one campaign.
    pub async fn step(&self, id: i64) -> Result<()> {
        let mut campaign = self.store.campaign(id).await?;
        let upgrades = self.store.campaign_upgrades(id, None, i64::MAX, 0).await?;
        let slots: Vec<Slot> = upgrades
            .iter()
            .map(|u| Slot {
                wave: u.wave,
                state: u.status.state,
                attempts: u.attempts,
                released_at: u.released_at,
            })
            .collect();
        let now = self.clock.now_ms();
        let bakes: Vec<Bake> = match campaign.strategy.health {
            None => Vec::new(),
            Some(_) => self
                .store
                .campaign_bakes(id)
                .await?
                .into_iter()
                .map(|b| Bake {
                    wave: b.wave,
                    started_ms: b.started_at,
                    verdict: b.verdict,
                    accepted: b.accepted,
                })
                .collect(),
        };
        let actions = campaign::plan(&PlanInput {
            now_ms: now,
            state: campaign.state,
            strategy: &campaign.strategy,
            slots: &slots,
            bakes: &bakes,
        });
        let devices = |idx: &[usize]| {
            idx.iter()
                .filter_map(|i| upgrades.get(*i).map(|u| u.device.clone()))
                .collect::<Vec<_>>()
        };
        let dialect: Dialect = self
            .store
            .product(&campaign.product)
            .await?
            .dialect
            .parse()
            .map_err(|_| anyhow::anyhow!("stored dialect"))?;
        for action in actions {
            match action {
                Action::Start => {
                    self.store
                        .set_campaign_state(id, CampaignState::Running, None)
                        .await?;
                    campaign.state = CampaignState::Running;
                    info!(campaign = id, "campaign started");
                }
                Action::Release(idx) => {
                    let released: Vec<&Upgrade> =
                        idx.iter().filter_map(|i| upgrades.get(*i)).collect();
                    self.release(&campaign, dialect, &released, now).await?
                }
                Action::TimeOut(idx) => {
                    // Tencent devices are told nothing; the record says -1 time_out as theirs would.
                    let code = (dialect == Dialect::Tencent).then_some(-1);
                    let change = Transition {
                        from: RELEASED,
                        to: UpgradeState::TimedOut,
                        result_code: code,
                        result_msg: Some("time_out"),
                        reason: Some(Reason::TimedOut),
                        released_at: None,
                        count_push: false,
                    };
                    let moved = self
                        .store
                        .transition(id, &campaign.product, &devices(&idx), &change)
                        .await?;
                    warn!(campaign = id, devices = moved.len(), "devices timed out");
                }
                Action::Retry(idx) => {
                    let change = Transition {
                        from: &[UpgradeState::Failed, UpgradeState::TimedOut],
                        to: UpgradeState::Queued,
                        result_code: None,
                        result_msg: None,
                        reason: None,
                        released_at: None,
                        count_push: false,
                    };
                    self.store
                        .transition(id, &campaign.product, &devices(&idx), &change)
                        .await?;
                }
                Action::Pause(reason) => {
                    warn!(campaign = id, %reason, "campaign paused");
                    self.store
                        .set_campaign_state(id, CampaignState::Paused, Some(&reason))
                        .await?;
                }
                Action::Abort(reason) => {
                    warn!(campaign = id, %reason, "campaign aborted");
                    self.stop(&campaign, CampaignState::Aborted, &reason)
                        .await?;
                }
                Action::Finish => self.finish(&campaign).await?,
                Action::Bake(wave) => self.start_bake(&campaign, wave, now).await?,
                Action::Judge(wave) => self.judge(&campaign, wave, now).await?,
            }
        }
        Ok(())
    }

    /// Releases queued devices: each gets `decide`'s verdict for `Fact::Released` (pushed when
    /// online, pending while offline or until it asks, skipped, or already done), stored with
    /// one statement per verdict; then the offer goes to those recorded as pushed. A push that
    /// fails to publish is retried at the device's next report.
    async fn release(
        &self,
        campaign: &Campaign,
        dialect: Dialect,
        upgrades: &[&Upgrade],
        now: i64,
    ) -> Result<()> {
        // Connects and reports are written behind (presence.rs): include every one so far.
        self.engine.presence.flush().await;
        let product = self.store.product(&campaign.product).await?;
        let Some(module) = upgrades.first().map(|u| &u.module) else {
            return Ok(());
        };
        let names: Vec<DeviceName> = upgrades.iter().map(|u| u.device.clone()).collect();
        let fleet: HashMap<DeviceName, otter_store::FleetDevice> = self
            .store
            .fleet_members(&campaign.product, module, &names)
            .await?
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        let mut verdicts: BTreeMap<ReleaseVerdict, Vec<DeviceName>> = BTreeMap::new();
        for upgrade in upgrades {
            let device = fleet.get(&upgrade.device);
            let ctx = Situation {
                mode: campaign.mode,
                allow_downgrade: campaign.allow_downgrade,
                scheme: product.version_scheme,
                running: device.and_then(|d| d.version.as_ref()),
                online: device.is_some_and(|d| d.online),
            };
            // Retried devices were failed in the snapshot; they are queued again by now.
            let queued = UpgradeStatus::queued(upgrade.status.target.clone());
            let decision = decide(&queued, Fact::Released, &ctx);
            let Some(next) = decision.next else { continue };
            verdicts
                .entry(ReleaseVerdict::of(next, decision.push))
                .or_default()
                .push(upgrade.device.clone());
        }
        let mut pushed = Vec::new();
        for (verdict, devices) in &verdicts {
            let change = Transition {
                from: &[UpgradeState::Queued],
                to: verdict.state,
                result_code: None,
                result_msg: verdict.text.as_deref(),
                reason: verdict.reason,
                released_at: Some(now),
                count_push: verdict.push,
            };
            let moved = self
                .store
                .transition(campaign.id, &campaign.product, devices, &change)
                .await?;
            info!(campaign = campaign.id, devices = moved.len(), state = %verdict.state,
                reason = verdict.reason.map(Reason::as_str), "devices released");
            if verdict.push {
                pushed.extend(moved);
            }
        }
        if pushed.is_empty() {
            return Ok(());
        }
        let firmware = self.store.firmware(campaign.firmware_id).await?;
        let ext = self.engine.offer_ext(&firmware).await?;
        for device in &pushed {
            let addr = otter_protocol::DeviceAddr::new(campaign.product.as_str(), device.as_str());
            let offer = self.engine.offer(&firmware, device).await;
            if let Err(e) = self.engine.send_push(dialect, &addr, &offer, &ext).await {
                warn!(campaign = campaign.id, device = %device, error = format!("{e:#}"), "push failed; the device gets it at its next report")
            }
        }
        Ok(())
    }

    /// Starts the bake after `wave`: the counts it will be measured from are stored with it,
    /// so a restarted server judges the same bake the same way.
    async fn start_bake(&self, campaign: &Campaign, wave: u32, now: i64) -> Result<()> {
        self.engine.presence.flush().await;
        let baseline = self.store.health_facts(campaign.id, wave).await?;
        if self
            .store
            .start_bake(campaign.id, wave, now, &baseline)
            .await?
        {
            info!(campaign = campaign.id, wave, "health gate: bake started");
        }
        Ok(())
    }

    /// Judges the bake after `wave`: evidence since its start, the policy's verdict, recorded;
    /// an unhealthy verdict pauses the campaign or rolls it back, an inconclusive one pauses.
    async fn judge(&self, campaign: &Campaign, wave: u32, now: i64) -> Result<()> {
        let Some(policy) = &campaign.strategy.health else {
            return Ok(());
        };
        let Some(bake) = self
            .store
            .campaign_bakes(campaign.id)
            .await?
            .into_iter()
            .find(|b| b.wave == wave)
        else {
            return Ok(());
        };
        self.engine.presence.flush().await;
        let facts = self.store.health_facts(campaign.id, wave).await?;
        let evidence = evidence(&bake.baseline, &facts, now - bake.started_at);
        let evaluation = health::evaluate(policy, &evidence);
        let record = serde_json::json!({ "evidence": evidence, "evaluation": evaluation });
        if !self
            .store
            .judge_bake(campaign.id, wave, now, evaluation.verdict, &record)
            .await?
        {
            return Ok(()); // judged already (another node, or before a restart)
        }
        metrics::counter!("otter_health_evaluations_total", "verdict" => evaluation.verdict.as_str())
            .increment(1);
        let reason = format!("wave {}: {}", wave + 1, evaluation.summary);
        match evaluation.verdict {
            Verdict::Healthy => info!(campaign = campaign.id, wave, %reason, "health gate passed"),
            Verdict::Inconclusive => {
                warn!(campaign = campaign.id, wave, %reason, "health gate inconclusive: paused");
                self.store
                    .set_campaign_state(campaign.id, CampaignState::Paused, Some(&reason))
                    .await?;
            }
            Verdict::Unhealthy if policy.on_unhealthy == OnUnhealthy::Rollback => {
                warn!(campaign = campaign.id, wave, %reason, "health gate tripped: rolling back");
                let rollback = self.roll_back(campaign).await?;
                let reason = format!("{reason}; {rollback}");
                self.stop(campaign, CampaignState::Aborted, &reason).await?;
            }
            Verdict::Unhealthy => {
                warn!(campaign = campaign.id, wave, %reason, "health gate tripped: paused");
                self.store
                    .set_campaign_state(campaign.id, CampaignState::Paused, Some(&reason))
                    .await?;
            }
        }
        Ok(())
    }

    /// Offers every device of `campaign` that took its release the version it came from, as
    /// one campaign per previous version (downgrade allowed, recorded), linked to `campaign`.
    /// Says what it did, for the campaign's reason.
    async fn roll_back(&self, campaign: &Campaign) -> Result<String> {
        let upgrades = self
            .store
            .campaign_upgrades(campaign.id, Some(UpgradeState::Succeeded), i64::MAX, 0)
            .await?;
        let mut by_version: BTreeMap<Version, Vec<String>> = BTreeMap::new();
        let mut unknown = 0;
        for u in upgrades {
            match u.from_version {
                Some(v) => by_version.entry(v).or_default().push(u.device.to_string()),
                None => unknown += 1,
            }
        }
        let module = self.store.firmware(campaign.firmware_id).await?.module;
        let mut done = Vec::new();
        for (version, devices) in by_version {
            let count = devices.len();
            let req = CampaignRequest {
                product: campaign.product.to_string(),
                version: version.to_string(),
                module: Some(module.to_string()),
                selection: Selection {
                    devices,
                    ..Selection::default()
                },
                device_file: None,
                strategy: Strategy::default(),
                mode: CampaignMode::Push,
                dry_run: false,
                supersede: true,
                allow_downgrade: true,
                skip_verification: true,
                rollback_of: Some(campaign.id),
            };
            match Box::pin(self.create(req, CampaignKind::Rollout)).await {
                Ok(created) => {
                    let id = created.campaign.map_or(0, |c| c.id);
                    info!(campaign = campaign.id, rollback = id, %version, devices = count, "rollback campaign created");
                    done.push(format!(
                        "rollback campaign #{id}: {count} devices to {version}"
                    ));
                }
                Err(e) => {
                    error!(campaign = campaign.id, %version, error = %e, "rollback campaign refused");
                    done.push(format!("no rollback to {version} for {count} devices: {e}"));
                }
            }
        }
        if unknown > 0 {
            done.push(format!("{unknown} devices had no known previous version"));
        }
        if done.is_empty() {
            done.push("no device had taken the release".into());
        }
        Ok(done.join("; "))
    }

    async fn finish(&self, campaign: &Campaign) -> Result<()> {
        self.store
            .set_campaign_state(campaign.id, CampaignState::Finished, None)
            .await?;
        let counts = self.store.campaign_counts(campaign.id).await?;
        info!(campaign = campaign.id, counts = ?counts.0, "campaign finished");
        if campaign.kind == CampaignKind::Verification {
            // A test device skipped (already there, or newer) tells nothing about the image.
            let total: i64 = counts
                .0
                .iter()
                .filter(|(s, _)| *s != "skipped")
                .map(|(_, n)| n)
                .sum();
            let succeeded = counts.0.get("succeeded").copied().unwrap_or(0);
            let state = if succeeded == total {
                FirmwareState::Verified
            } else {
                FirmwareState::Rejected
            };
            self.store
                .set_firmware_state(campaign.firmware_id, state)
                .await?;
            info!(
                firmware = campaign.firmware_id,
                state = state.as_str(),
                "firmware verification done"
            );
        }
        Ok(())
    }

    /// Cancel or abort: the campaign ends, and every device not yet finished is canceled. A
    /// device that reports later is recorded (its version) but its upgrade stays canceled.
    async fn stop(&self, campaign: &Campaign, state: CampaignState, reason: &str) -> Result<()> {
        self.store
            .set_campaign_state(campaign.id, state, Some(reason))
            .await?;
        let open: Vec<DeviceName> = self
            .store
            .campaign_upgrades(campaign.id, None, i64::MAX, 0)
            .await?
            .into_iter()
            .filter(|u| u.status.state.is_live())
            .map(|u| u.device)
            .collect();
        let change = Transition {
            from: OPEN,
            to: UpgradeState::Canceled,
            result_code: None,
            result_msg: Some(reason),
            reason: Some(Reason::Canceled),
            released_at: None,
            count_push: false,
        };
        self.store
            .transition(campaign.id, &campaign.product, &open, &change)
            .await?;
        if campaign.kind == CampaignKind::Verification {
            self.store
                .set_firmware_state(campaign.firmware_id, FirmwareState::Uploaded)
                .await?;
        }
        Ok(())
    }

    pub async fn pause(&self, id: i64) -> Result<Campaign, CampaignError> {
        let c = self.store.campaign(id).await?;
        if !matches!(c.state, CampaignState::Running | CampaignState::Scheduled) {
            return Err(CampaignError::Invalid(format!(
                "campaign #{id} is {}: only a scheduled or running campaign can be paused",
                c.state.as_str()
            )));
        }
        self.store
            .set_campaign_state(id, CampaignState::Paused, Some(OPERATOR_PAUSE))
            .await?;
        Ok(self.store.campaign(id).await?)
    }

    pub async fn resume(&self, id: i64) -> Result<Campaign, CampaignError> {
        let c = self.store.campaign(id).await?;
        if c.state != CampaignState::Paused {
            return Err(CampaignError::Invalid(format!(
                "campaign #{id} is {}: only a paused campaign can be resumed",
                c.state.as_str()
            )));
        }
        // Held by a health gate: resuming accepts its verdict (the operator looked at it).
        self.store.accept_bakes(id).await?;
        if c.reason.as_deref() != Some(OPERATOR_PAUSE) {
            // Paused by the success gate: resuming accepts the failures so far, so the gate
            // would only pause it again. The operator's resume turns the gate off for the rest.
            let strategy = Strategy {
                gate_percent: 0,
                ..c.strategy.clone()
            };
            self.store.set_campaign_strategy(id, &strategy).await?;
            info!(campaign = id, "gate overridden by resume");
        }
        self.store
            .set_campaign_state(id, CampaignState::Running, None)
            .await?;
        self.step(id).await?;
        Ok(self.store.campaign(id).await?)
    }

    pub async fn cancel(&self, id: i64) -> Result<Campaign, CampaignError> {
        let c = self.store.campaign(id).await?;
        if !c.state.is_live() {
            return Err(CampaignError::Invalid(format!(
                "campaign #{id} is already {}",
                c.state.as_str()
            )));
        }
        self.stop(&c, CampaignState::Canceled, "canceled by operator")
            .await?;
        info!(campaign = id, "campaign canceled");
        Ok(self.store.campaign(id).await?)
    }

    pub async fn upgrades(
        &self,
        id: i64,
        state: Option<UpgradeState>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Upgrade>, StoreError> {
        self.store.campaign_upgrades(id, state, limit, offset).await
    }
}

fn wave_sizes(waves: &[u32]) -> Vec<usize> {
    let mut sizes = Vec::new();
    for wave in waves {
        let w = *wave as usize;
        if sizes.len() <= w {
            sizes.resize(w + 1, 0);
        }
        sizes[w] += 1;
    }
    sizes
}

/// One verdict of a release, shared by every device it groups (one statement each).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ReleaseVerdict {
    state: UpgradeState,
    reason: Option<Reason>,
    text: Option<String>,
    push: bool,
}

impl ReleaseVerdict {
    fn of(next: UpgradeStatus, push: bool) -> Self {
        Self {
            state: next.state,
            reason: next.reason,
            text: next.result_msg,
            push,
        }
    }
}

/// What happened during a bake: today's counts minus the bake's baseline.
fn evidence(
    baseline: &otter_store::HealthFacts,
    now: &otter_store::HealthFacts,
    ms: i64,
) -> Evidence {
    let n = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    let delta = |now: i64, then: i64| u64::try_from((now - then).max(0)).unwrap_or(0);
    Evidence {
        came_back: n(now.came_back),
        not_back: n(now.not_back),
        updated_offline: n(now.updated_offline),
        updated_connects: delta(now.updated_connects, baseline.updated_connects),
        control: n(now.control),
        control_offline: n(now.control_offline),
        control_connects: delta(now.control_connects, baseline.control_connects),
        hours: ms.max(0) as f64 / 3_600_000.0,
        counters: now
            .counters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    delta(*v, baseline.counters.get(k).copied().unwrap_or(0)),
                )
            })
            .collect(),
    }
}
