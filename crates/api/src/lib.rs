//! The admin API's contract: every request and response body of `/api/v1`, as serde types with
//! OpenAPI schemas. The server's handlers send and accept these types and the CLI reads and
//! writes them, so the two cannot drift apart; `/api/v1/openapi.json` is generated from them.
//!
//! *Invariant:* no I/O here (no HTTP library, no runtime): types, their serde shape, their
//! schema. A field's type, name, order and whether it is omitted or `null` are the wire format:
//! changing one changes the API.
//!
//! One module per resource, as the API is split.

pub mod audit;
pub mod broker;
pub mod campaigns;
pub mod devices;
pub mod firmware;
pub mod operators;
pub mod products;
pub mod tokens;

pub use audit::*;
pub use campaigns::*;
pub use devices::*;
pub use firmware::*;
pub use operators::*;
pub use products::*;
pub use tokens::*;

/// The core types the API carries as they are (their serde shape is the wire format).
pub use otter_core::campaign::{
    AbortRule, CampaignState, Outcome, Projection, Strategy, WaveProjection, Window,
};
pub use otter_core::health::{Evaluation, Evidence, HealthPolicy, Measured, OnUnhealthy, Verdict};
pub use otter_core::targeting::Selection;
pub use otter_core::{CampaignMode, Dialect, Reason, Timestamp, UpgradeState, VersionScheme};

use serde::{Deserialize, Serialize};

/// The body of every failed call: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
}
