//! `/products/{product}/firmware`: upload, signatures, verification on test devices.

use otter_core::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Verification on test devices: only a verified firmware goes to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FirmwareState {
    Uploaded,
    Verifying,
    Verified,
    Rejected,
}

/// A firmware image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Firmware {
    pub id: i64,
    pub product: String,
    pub module: String,
    pub version: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex.
    pub md5: String,
    /// Lowercase hex.
    pub sha256: String,
    pub state: FirmwareState,
    /// Unix ms.
    pub created_at: Timestamp,
}

/// The signature of one firmware image (the signed fields beside the image's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FirmwareSignature {
    pub firmware_id: i64,
    pub key_id: String,
    pub sig: String,
    /// Unix seconds.
    pub issued: i64,
    /// Unix seconds.
    pub expires: i64,
    pub downgrade: bool,
    /// Unix ms.
    pub signed_at: Timestamp,
}

/// A firmware image and its signature, if signed (upload, list, attach a signature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FirmwareView {
    #[serde(flatten)]
    pub firmware: Firmware,
    pub signature: Option<FirmwareSignature>,
}

/// Query of `POST /products/{product}/firmware` (the body is the image).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Offline signature (base64, `otter firmware sign`): `sig`, `key`, `issued` and `expires`
    /// together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    /// Id of the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<u64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Signed: the release may be installed over a newer version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<bool>,
    /// Server-side signing (`--signing-key-dir`): validity in seconds (default 365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// Request body of `POST /products/{product}/firmware/signature`: a signature document from
/// `otter firmware sign` (docs/signing.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignatureDocument {
    /// Always `otter-firmware-signature-v2`.
    pub format: String,
    pub product: String,
    pub module: String,
    pub version: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the image.
    pub sha256: String,
    /// Unix seconds the signature was made.
    pub issued: u64,
    /// Unix seconds after which it is no longer valid.
    pub expires: u64,
    /// May be installed over a newer version.
    #[serde(default)]
    pub downgrade: bool,
    /// Id of the signing key.
    pub key: String,
    /// Standard base64 of the 64-byte signature.
    pub sig: String,
}

/// Request body of `POST /products/{product}/firmware/verify`; the response is the
/// verification campaign ([`crate::CampaignView`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyRequest {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Test devices (at most 10); the firmware is verified when all succeed, rejected when any
    /// fails.
    pub devices: Vec<String>,
    /// Per-device timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// Query of `DELETE /products/{product}/firmware/{version}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteFirmwareParams {
    /// The image's module (default: the default module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Also delete the finished campaigns that used the image (their history); without it,
    /// an image with campaign history is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<bool>,
}

/// Answer of a delete (`DELETE` of a device, a product or a firmware image): what went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deletion {
    /// What was deleted, e.g. `device P/d`.
    pub deleted: String,
    pub devices: u64,
    pub firmware: u64,
    /// Finished campaigns deleted with it, by id.
    pub campaigns: Vec<i64>,
    /// Firmware files removed from the blob store (no image references them any more).
    pub blobs_removed: u64,
}
