//! Campaigns: creating them (targeting + strategy), and driving them. The rollout decisions are
//! otter-core's pure planner; this file feeds it a snapshot from the store once per tick and
//! applies what it says. All state lives in the store, so a restarted server picks up exactly
//! where it stopped.

mod gates;
mod planner;
mod release;

use crate::clock::Clock;
use crate::devices::Devices;
use anyhow::Result;
use otter_core::campaign::{
    self, Action, Bake, CampaignState, PlanInput, Projection, Slot, Strategy,
};
use otter_core::health::{self, Evidence, OnUnhealthy, Verdict};
use otter_core::targeting::{self, Candidate, Rules, Selection, Targeting};
use otter_core::{
    DeviceName, Fact, Module, ProductId, Reason, Situation, Timestamp, UpgradeState, UpgradeStatus,
    Version, decide,
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

/// Creates campaigns and drives them; operators' commands (pause, resume, cancel) too.
pub struct Campaigns {
    store: Store,
    devices: Arc<Devices>,
    clock: Arc<dyn Clock>,
}

impl Campaigns {
    pub(crate) fn new(store: Store, devices: Arc<Devices>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            store,
            devices,
            clock,
        })
    }

    pub async fn create(
        &self,
        req: CampaignRequest,
        kind: CampaignKind,
    ) -> Result<Created, CampaignError> {
        let invalid = |e: &dyn std::fmt::Display| CampaignError::Invalid(e.to_string());
        // Targeting reads reported versions: include every report acknowledged so far.
        self.devices.presence.flush().await;
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
                "firmware {} {version} is {}: verify it on test devices first (otter firmware verify) or pass skip_verification (otter: --skip-verification)",
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
