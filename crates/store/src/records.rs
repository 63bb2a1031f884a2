//! What the store hands out: typed records, validated on the way out of the database.

pub use otter_core::CampaignMode;
use otter_core::Timestamp;
use otter_core::campaign::{CampaignState, Strategy};
use otter_core::{
    DeviceName, Dialect, Module, ProductId, Reason, UpgradeState, UpgradeStatus, Version,
    VersionScheme,
};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: ProductId,
    /// The vendor protocol its devices speak.
    pub dialect: Dialect,
    pub name: String,
    /// How this product's versions are ordered for anti-rollback.
    pub version_scheme: VersionScheme,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub product: ProductId,
    pub name: DeviceName,
    #[serde(skip)]
    pub secret: String,
    pub online: bool,
    pub last_seen: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleVersion {
    pub module: Module,
    pub version: Version,
    pub reported_at: Timestamp,
}

/// A device-driven change of one upgrade: its new status, a push, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeUpdate {
    pub campaign_id: i64,
    pub product: ProductId,
    pub device: DeviceName,
    /// The state the change was decided on: it is written only while the upgrade is still in
    /// it (a conditional update is the claim, as for `Transition`).
    pub from: UpgradeState,
    /// The status to store (the current one when only a push is counted).
    pub status: UpgradeStatus,
    /// The status differs from the stored one: the history gets a row.
    pub changed: bool,
    /// The offer goes out with this change: the push is counted in the same statement.
    pub push: bool,
}

/// A device connected (`online`) or disconnected, at `at` (milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineChange {
    pub product: ProductId,
    pub device: DeviceName,
    pub online: bool,
    /// Connects since the last change written (several may coalesce into one change).
    pub connects: u32,
    pub at: Timestamp,
}

/// What a device said it runs, and when (milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionReport {
    pub product: ProductId,
    pub device: DeviceName,
    pub module: Module,
    pub version: Version,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFirmware {
    pub product: ProductId,
    pub module: Module,
    pub version: Version,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firmware {
    pub id: i64,
    pub product: ProductId,
    pub module: Module,
    pub version: Version,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    pub state: FirmwareState,
    pub created_at: Timestamp,
}

/// Verification on test devices: only a verified firmware goes to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FirmwareState {
    Uploaded,
    Verifying,
    Verified,
    Rejected,
}

impl FirmwareState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Verifying => "verifying",
            Self::Verified => "verified",
            Self::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Uploaded,
            Self::Verifying,
            Self::Verified,
            Self::Rejected,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// A device as campaign targeting sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetDevice {
    pub name: DeviceName,
    pub online: bool,
    pub version: Option<Version>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignKind {
    Rollout,
    Verification,
}

impl CampaignKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollout => "rollout",
            Self::Verification => "verification",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Rollout, Self::Verification]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub product: ProductId,
    pub firmware_id: i64,
    pub kind: CampaignKind,
    pub state: CampaignState,
    pub reason: Option<String>,
    pub mode: CampaignMode,
    pub selection: serde_json::Value,
    pub strategy: Strategy,
    pub allow_downgrade: bool,
    pub skip_verification: bool,
    /// The campaign this one rolls back (health gate `on_unhealthy: rollback`).
    pub rollback_of: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One device joining a new campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSlot {
    pub device: DeviceName,
    pub wave: u32,
    pub from_version: Option<Version>,
    /// Joins already `skipped`, for this reason and text (targeting's verdict).
    pub skipped: Option<(Reason, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCampaign {
    pub firmware: Firmware,
    pub kind: CampaignKind,
    pub state: CampaignState,
    pub mode: CampaignMode,
    pub selection: serde_json::Value,
    pub strategy: Strategy,
    pub allow_downgrade: bool,
    pub skip_verification: bool,
    pub slots: Vec<NewSlot>,
    /// Cancel the devices' live upgrades in other campaigns instead of refusing.
    pub supersede: bool,
    pub rollback_of: Option<i64>,
}

/// One entry of a device's upgrade history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradeEvent {
    pub campaign_id: i64,
    pub device: DeviceName,
    pub at: Timestamp,
    pub state: UpgradeState,
    pub percent: Option<u8>,
    pub result_code: Option<i32>,
    pub result_msg: Option<String>,
    pub reason: Option<Reason>,
}

/// One device in one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upgrade {
    pub campaign_id: i64,
    pub product: ProductId,
    pub device: DeviceName,
    pub module: Module,
    #[serde(flatten)]
    pub status: UpgradeStatus,
    /// How many times the offer was sent.
    pub pushes: i64,
    pub ordinal: i64,
    pub wave: u32,
    /// Releases so far: 1 + retries used.
    pub attempts: u32,
    pub released_at: Option<Timestamp>,
    pub from_version: Option<Version>,
    pub mode: CampaignMode,
    /// The campaign's and product's rules that `decide` needs (joined in by the store).
    pub allow_downgrade: bool,
    pub version_scheme: VersionScheme,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Device counts of a campaign by upgrade state. On the wire: an object from state name to
/// count, names in alphabetical order, states without devices left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateCounts(std::collections::BTreeMap<UpgradeState, i64>);

impl StateCounts {
    /// Devices in `state`.
    pub fn get(&self, state: UpgradeState) -> i64 {
        self.0.get(&state).copied().unwrap_or(0)
    }

    /// Devices in any of `states`.
    pub fn sum(&self, states: &[UpgradeState]) -> i64 {
        states.iter().map(|s| self.get(*s)).sum()
    }

    /// Every device of the campaign.
    pub fn total(&self) -> i64 {
        self.0.values().sum()
    }

    pub(crate) fn add(&mut self, state: UpgradeState, devices: i64) {
        *self.0.entry(state).or_default() += devices;
    }
}

impl Serialize for StateCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut by_name: Vec<(&str, i64)> = self.0.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        by_name.sort_unstable();
        s.collect_map(by_name)
    }
}

/// How many devices of a campaign are in `state` for `reason` (the verdicts, counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub state: UpgradeState,
    pub reason: Reason,
    pub devices: i64,
}

/// A planner- or operator-driven change of several upgrades (see `Store::transition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition<'a> {
    pub from: &'a [UpgradeState],
    pub to: UpgradeState,
    pub result_code: Option<i32>,
    pub result_msg: Option<&'a str>,
    pub reason: Option<Reason>,
    /// Set for a release: the planner clock's now.
    pub released_at: Option<Timestamp>,
    /// The offer was sent with this change (counts a push).
    pub count_push: bool,
    /// Leave `result_code`/`result_msg` as they are (a retry keeps the failure it retries).
    pub keep_result: bool,
}

// ---- the audit log and the web console

/// One operator action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: serde_json::Value,
}

/// Device list filters; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// Part of the device name.
    pub search: Option<String>,
    /// `Some(None)`: devices that never reported a version; `Some(Some(v))`: devices at `v`.
    pub version: Option<Option<String>>,
    pub online: Option<bool>,
    /// Devices carrying this tag.
    pub tag: Option<String>,
}

/// A row of the console's device list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceSummary {
    pub name: DeviceName,
    pub online: bool,
    pub last_seen: Option<Timestamp>,
    pub created_at: Timestamp,
    pub version: Option<Version>,
    pub tags: Vec<String>,
}

/// A product with its fleet's size at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductSummary {
    #[serde(flatten)]
    pub product: Product,
    pub devices: i64,
    pub online: i64,
    pub firmware: i64,
    pub live_campaigns: i64,
}

/// An ed25519 public signing key of a product (docs/signing.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductKey {
    pub product: ProductId,
    /// First 16 hex characters of the SHA-256 of the public key.
    pub key_id: String,
    /// Standard base64 of the 32-byte public key.
    pub public_key: String,
    /// The key that announced this one; `None` for a product's first key.
    pub signed_by: Option<String>,
    /// That key's base64 signature over the announcement text.
    pub announcement: Option<String>,
    pub created_at: Timestamp,
}

/// The signature of one firmware image (the signed fields beside the image's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareSignature {
    pub firmware_id: i64,
    pub key_id: String,
    pub sig: String,
    /// Unix seconds.
    pub issued: i64,
    /// Unix seconds.
    pub expires: i64,
    pub downgrade: bool,
    pub signed_at: Timestamp,
}

/// One API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub created_at: Timestamp,
    pub last_used: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What the store counts for a health gate after `wave` of a campaign (crate otter-core
/// `health`): the judged devices (waves up to `wave`) and the control group (later waves, not
/// yet released). Connects and counters are cumulative: a bake measures the difference
/// between its start and its judgement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HealthFacts {
    pub came_back: i64,
    pub not_back: i64,
    pub updated_offline: i64,
    pub updated_connects: i64,
    pub control: i64,
    pub control_offline: i64,
    pub control_connects: i64,
    pub counters: std::collections::BTreeMap<String, i64>,
}

/// A health gate's bake, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BakeRecord {
    pub campaign_id: i64,
    pub wave: u32,
    /// Planner-clock ms.
    pub started_at: Timestamp,
    pub baseline: HealthFacts,
    pub judged_at: Option<Timestamp>,
    pub verdict: Option<otter_core::health::Verdict>,
    pub evaluation: Option<serde_json::Value>,
    pub accepted: bool,
}

/// A named operator account as listed (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// A live console session, found by the hash of its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleSession {
    /// Whom the audit log names: `operator:NAME`, `token:NAME` or `admin`.
    pub actor: String,
    pub scope: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// What opening a console session records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsoleSession<'a> {
    /// Lowercase hex SHA-256 of the session id.
    pub session_hash: &'a str,
    pub actor: &'a str,
    pub scope: &'a str,
    /// The API token signed in with, if any: revoking it ends the session.
    pub token_id: Option<i64>,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// What a delete removed (devices, products, firmware: `Store::delete_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub devices: u64,
    pub firmware: u64,
    /// Finished campaigns deleted with it, by id.
    pub campaigns: Vec<i64>,
    /// SHA-256 of blobs that no firmware row references any more: the caller may remove them
    /// from the blob store (after checking again: an upload of the same content may since have
    /// stored a row, see `blob_referenced`).
    pub unreferenced_blobs: Vec<String>,
}
