//! `/products/{product}/devices`: device identities, secrets, tags and what each device does.

use crate::campaigns::Upgrade;
use otter_core::Timestamp;
use otter_core::{Reason, UpgradeState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Request body of `POST /products/{product}/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewDevice {
    pub name: String,
    /// Generated in the dialect's format when absent (base64 for Tencent, hex otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A device (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub product: String,
    pub name: String,
    pub online: bool,
    /// Unix ms.
    pub last_seen: Option<Timestamp>,
    /// Unix ms.
    pub created_at: Timestamp,
}

/// A row of `GET /products/{product}/devices`: the device, the version it last reported (of
/// the `default` module) and its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListedDevice {
    #[serde(flatten)]
    pub device: Device,
    /// `null`: it never reported one.
    pub version: Option<String>,
    pub tags: Vec<String>,
}

/// Response of `POST /products/{product}/devices`: the device and its secret, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedDevice {
    #[serde(flatten)]
    pub device: Device,
    /// Shown once, at creation.
    pub secret: String,
}

/// The version a device reported for one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModuleVersion {
    pub module: String,
    pub version: String,
    /// Unix ms.
    pub reported_at: Timestamp,
}

/// Response of `GET /products/{product}/devices/{device}`: a device as `otter device show`
/// prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    /// Version of the default module, for the common case.
    pub version: Option<String>,
    pub versions: Vec<ModuleVersion>,
    pub tags: Vec<String>,
    /// The device's latest upgrade.
    pub upgrade: Option<UpgradeView>,
    /// Totals of the counters the device sent in health reports (empty for vendor SDKs).
    pub health_counters: BTreeMap<String, i64>,
}

/// An upgrade with its result code explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpgradeView {
    #[serde(flatten)]
    pub upgrade: Upgrade,
    /// What `result_code` means in the device's dialect.
    pub result_explained: Option<String>,
}

/// Request body of `PUT /products/{product}/devices/{device}/tags`; the response is the
/// device's tags (an array of strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TagChange {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// One entry of a device's upgrade history (`GET .../devices/{device}/history`, newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpgradeEvent {
    pub campaign_id: i64,
    pub device: String,
    /// Unix ms.
    pub at: Timestamp,
    pub state: UpgradeState,
    pub percent: Option<u8>,
    pub result_code: Option<i32>,
    pub result_msg: Option<String>,
    pub reason: Option<Reason>,
}

/// Response of `POST /products/{product}/devices/{device}/secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotatedSecret {
    pub product: String,
    pub name: String,
    /// The new secret, shown once; the old one stops working now.
    pub secret: String,
}
