//! `/operators`: named operator accounts, who sign in to the console with a password (never
//! returned: the server keeps only its argon2id hash).

use crate::Scope;
use otter_core::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Request body of `POST /operators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewOperator {
    /// Sign-in name, also what the audit log names (`operator:NAME`): 1–64 letters, digits,
    /// `.`, `_`, `-` or `@`.
    pub name: String,
    pub scope: Scope,
    /// At least 12 characters; stored only as an argon2id hash.
    pub password: String,
}

/// One operator account as listed (never the password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperatorAccount {
    pub id: i64,
    pub name: String,
    /// `read`, `operate` or `admin`.
    pub scope: String,
    /// Unix ms.
    pub created_at: Timestamp,
    /// Set once the account is disabled: it can no longer sign in, its sessions ended.
    pub disabled_at: Option<Timestamp>,
}
