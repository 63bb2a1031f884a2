//! `/campaigns`: fleet rollouts, verification campaigns and their devices.

use crate::firmware::Firmware;
use otter_core::Timestamp;
use otter_core::campaign::{CampaignState, Outcome, Projection, Strategy};
use otter_core::health::{Evaluation, Evidence, Verdict};
use otter_core::targeting::Selection;
use otter_core::{CampaignMode, Reason, UpgradeState, VersionScheme};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Request body of `POST /campaigns` (see docs/campaigns.md for every field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewCampaign {
    pub product: String,
    /// Target firmware version (uploaded, and verified unless skip_verification).
    pub version: String,
    #[serde(default)]
    pub module: Option<String>,
    /// Every constraint given must hold; at least one is required.
    #[serde(default)]
    pub selection: Selection,
    /// Content of a device-name file (one per line, or CSV with a name column); added to
    /// `selection.devices`.
    #[serde(default)]
    pub device_file: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// `push` (default) or `requested` (devices get the offer only when they ask).
    #[serde(default)]
    pub mode: CampaignMode,
    /// Plan and answer; start nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Cancel the devices' live upgrades in other campaigns instead of refusing.
    #[serde(default)]
    pub supersede: bool,
    #[serde(default)]
    pub allow_downgrade: bool,
    #[serde(default)]
    pub skip_verification: bool,
}

/// Rollout, or verification on test devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignKind {
    Rollout,
    Verification,
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Campaign {
    pub id: i64,
    pub product: String,
    pub firmware_id: i64,
    pub kind: CampaignKind,
    pub state: CampaignState,
    /// Why it paused, aborted or was canceled.
    pub reason: Option<String>,
    pub mode: CampaignMode,
    /// The selection the campaign was created with (a device file's names included).
    #[schema(value_type = Selection)]
    pub selection: serde_json::Value,
    pub strategy: Strategy,
    pub allow_downgrade: bool,
    pub skip_verification: bool,
    /// The campaign this one rolls back (health gate `on_unhealthy: rollback`).
    pub rollback_of: Option<i64>,
    /// Unix ms.
    pub created_at: Timestamp,
    /// Unix ms.
    pub updated_at: Timestamp,
}

/// Devices of a campaign per upgrade state: an object from state name (`queued`, `pending`,
/// ..., `succeeded`) to count, names in alphabetical order, states without devices left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateCounts(pub BTreeMap<String, i64>);

impl StateCounts {
    /// Devices in `state` (0 when none).
    pub fn get(&self, state: UpgradeState) -> i64 {
        self.0.get(state.as_str()).copied().unwrap_or(0)
    }
}

/// How many devices of a campaign are in `state` for `reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReasonCount {
    pub state: UpgradeState,
    pub reason: Reason,
    pub devices: i64,
}

/// What the store counts for a health gate (cumulative; a bake measures the difference
/// between its start and its judgement).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthFacts {
    pub came_back: i64,
    pub not_back: i64,
    pub updated_offline: i64,
    pub updated_connects: i64,
    pub control: i64,
    pub control_offline: i64,
    pub control_connects: i64,
    pub counters: BTreeMap<String, i64>,
}

/// What a health gate's judgement saw and concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Judgement {
    pub evidence: Evidence,
    pub evaluation: Evaluation,
}

/// A health gate's bake after one wave, and its judgement once made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BakeRecord {
    pub campaign_id: i64,
    /// 0-based.
    pub wave: u32,
    /// Planner-clock ms.
    pub started_at: Timestamp,
    pub baseline: HealthFacts,
    pub judged_at: Option<Timestamp>,
    pub verdict: Option<Verdict>,
    /// Kept as stored: a [`Judgement`] (read it with [`BakeRecord::judgement`]).
    #[schema(value_type = Option<Judgement>)]
    pub evaluation: Option<serde_json::Value>,
    /// An operator accepted an unhealthy or inconclusive verdict.
    pub accepted: bool,
}

impl BakeRecord {
    /// The judgement, once made.
    pub fn judgement(&self) -> Option<Judgement> {
        serde_json::from_value(self.evaluation.clone()?).ok()
    }
}

/// A campaign with its firmware, counts, verdicts and health gates (`GET /campaigns/{id}`,
/// `GET /campaigns`, pause, resume, cancel, firmware verify).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: Campaign,
    pub firmware: Firmware,
    pub counts: StateCounts,
    /// Devices per state and the reason Otter gave (skipped, failed, waiting, ...).
    pub reasons: Vec<ReasonCount>,
    /// The health gates' bakes and their evaluations, by wave (the gate timeline).
    pub bakes: Vec<BakeRecord>,
    pub total: i64,
    /// How it ended (`null` while live): `finished_with_failures` is not `succeeded`.
    pub outcome: Option<Outcome>,
    /// Devices failed or timed out for good (not counting those queued for a retry).
    pub failed: i64,
    /// Devices queued again after a failure, waiting for their retry.
    pub retrying: i64,
    /// Why queued devices are not being released now (window, rate, earlier waves, a gate,
    /// a start time); `null` when nothing waits. A paused campaign says why in `reason`.
    pub waiting: Option<String>,
}

/// One device in one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Upgrade {
    pub campaign_id: i64,
    pub product: String,
    pub device: String,
    pub module: String,
    /// The target version.
    pub target: String,
    pub state: UpgradeState,
    pub percent: Option<u8>,
    pub result_code: Option<i32>,
    pub result_msg: Option<String>,
    /// What `result_code` means in the product's dialect (e.g. "MD5 of the downloaded file
    /// does not match"); `null` without a code.
    pub result_text: Option<String>,
    /// Why, when Otter decided it (skipped, failed, waiting, retrying).
    pub reason: Option<Reason>,
    /// For a device queued for a retry (`reason` `retrying`; `result_*` are the failure's):
    /// Unix ms before which it is not released again.
    pub retry_not_before: Option<Timestamp>,
    /// How many times the offer was sent.
    pub pushes: i64,
    pub ordinal: i64,
    pub wave: u32,
    /// Releases so far: 1 + retries used.
    pub attempts: u32,
    /// Unix ms.
    pub released_at: Option<Timestamp>,
    pub from_version: Option<String>,
    pub mode: CampaignMode,
    pub allow_downgrade: bool,
    pub version_scheme: VersionScheme,
    /// Unix ms.
    pub created_at: Timestamp,
    /// Unix ms.
    pub updated_at: Timestamp,
}

/// A device that matched the selection but was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Skipped {
    pub device: String,
    /// What a person reads: why the device is left out.
    pub reason: String,
    /// The stored reason code (`null` for a name that is no device of the product).
    pub code: Option<Reason>,
}

/// Which devices a campaign takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Targeting {
    /// Devices taken, in rollout order.
    pub selected: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// Response of `POST /campaigns`: 201 with the campaign's view, or 200 with only the plan when
/// `dry_run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignCreated {
    /// The created campaign's view, flattened in (absent on a dry run).
    #[serde(flatten)]
    pub view: Option<CampaignView>,
    pub dry_run: bool,
    /// The created campaign (`null` on a dry run).
    pub campaign: Option<Campaign>,
    pub targeting: Targeting,
    /// Devices per wave.
    pub waves: Vec<usize>,
    pub projection: Projection,
    /// The first devices, for a quick look (all of them: `GET /campaigns/{id}/devices`).
    pub upgrades: Vec<Upgrade>,
}

/// One `campaign` event of `GET /campaigns/{id}/stream` (server-sent events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignSnapshot {
    pub id: i64,
    pub state: String,
    pub reason: Option<String>,
    pub counts: StateCounts,
    pub total: i64,
    /// The firmware's verification state (changes when a verification campaign ends).
    pub firmware_state: String,
    /// How it ended (`null` while live), as in [`CampaignView::outcome`].
    pub outcome: Option<Outcome>,
    /// Devices queued again after a failure, waiting for their retry.
    pub retrying: i64,
}
