//! `/products`: device models, their dialect and version scheme, and their signing keys.

use otter_core::Timestamp;
use otter_core::{Dialect, VersionScheme};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Request body of `POST /products`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewProduct {
    pub id: String,
    /// `tencent`, `aliyun` or `enos`.
    pub dialect: String,
    /// Display name [default: the id].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How versions are ordered for anti-rollback: `semver` (default; a version that is not
    /// semver-like has no order), `numeric` or `opaque` (no order: never a downgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_scheme: Option<String>,
}

/// Request body of `PATCH /products/{product}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductChange {
    /// `semver`, `numeric` or `opaque`; live campaigns judge by the new scheme from now on.
    pub version_scheme: String,
}

/// A product (device model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: String,
    /// The vendor protocol its devices speak.
    pub dialect: Dialect,
    pub name: String,
    /// How this product's versions are ordered for anti-rollback.
    pub version_scheme: VersionScheme,
    /// Unix ms.
    pub created_at: Timestamp,
}

/// Request body of `POST /products/{product}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    /// The ed25519 public key: SPKI PEM, hex or base64 of its 32 bytes.
    pub public_key: String,
    /// Id of the registered key announcing this one (required unless it is the first key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Base64 signature of `signed_by` over the announcement text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

/// An ed25519 public signing key of a product (docs/signing.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductKey {
    pub product: String,
    /// First 16 hex characters of the SHA-256 of the public key.
    pub key_id: String,
    /// Standard base64 of the 32-byte public key.
    pub public_key: String,
    /// The key that announced this one; `null` for a product's first key.
    pub signed_by: Option<String>,
    /// That key's base64 signature over the announcement text.
    pub announcement: Option<String>,
    /// Unix ms.
    pub created_at: Timestamp,
}
