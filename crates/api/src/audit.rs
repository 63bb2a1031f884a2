//! `/audit`: the operator actions recorded by the API, newest first.

use otter_core::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One operator action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix ms.
    pub at: Timestamp,
    /// `admin` or `token #<id> <name>`.
    pub actor: String,
    /// e.g. `campaign.create`, `token.revoke`.
    pub action: String,
    pub subject: String,
    /// The action's particulars (their fields depend on the action).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}
