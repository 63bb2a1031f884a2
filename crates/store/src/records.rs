//! What the store hands out: typed records, validated on the way out of the database.

use otter_core::{DeviceName, Module, ProductId, UpgradeStatus, Version};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: ProductId,
    /// The wire dialect (`tencent`, `aliyun`, `enos`); parsed by the protocol layer.
    pub dialect: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub product: ProductId,
    pub name: DeviceName,
    #[serde(skip)]
    pub secret: String,
    pub online: bool,
    pub last_seen: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleVersion {
    pub module: Module,
    pub version: Version,
    pub reported_at: i64,
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
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub product: ProductId,
    pub firmware_id: i64,
    pub created_at: i64,
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
    pub updated_at: i64,
}

/// Device counts of a campaign by upgrade state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StateCounts(pub std::collections::BTreeMap<String, i64>);
