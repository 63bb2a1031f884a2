//! `/broker/authn` and `/broker/authz`: an external MQTT broker asks Otter about device logins
//! and topics (EMQX 5's HTTP authn/authz shapes; the Mosquitto plugin sends the same).
//! Authenticated by the broker secret, not by an API token (docs/external-broker.md).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Request body of `POST /broker/authn` (configure these fields in EMQX; extra ones are
/// ignored; `""` stands for a value the client did not give).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthnRequest {
    #[serde(default)]
    pub clientid: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The client's address as the broker saw it.
    #[serde(default)]
    pub peerhost: Option<String>,
}

/// Request body of `POST /broker/authz`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthzRequest {
    #[serde(default)]
    pub clientid: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub topic: String,
    /// `publish` or `subscribe`.
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub peerhost: Option<String>,
}

/// The broker's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Deny,
}

/// Response of `POST /broker/authn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthnResponse {
    pub result: Outcome,
    /// Only an Otter node (user `otter-node` with the broker secret) is one.
    pub is_superuser: bool,
}

/// Response of `POST /broker/authz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthzResponse {
    pub result: Outcome,
}
