//! Scoped API tokens: created, listed and revoked by administrators, looked up on every API
//! request by the SHA-256 of the presented token (the token itself is never stored).

use super::{Engine, conflict_or};
use crate::*;
use otter_core::Timestamp;

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    scope: String,
    created_at: i64,
    last_used: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id,
            name: r.name,
            scope: r.scope,
            created_at: r.created_at.into(),
            last_used: r.last_used.map(Timestamp::from),
            revoked_at: r.revoked_at.map(Timestamp::from),
        }
    }
}

/// Appends the listed columns to a query, keeping it a `&'static str`.
macro_rules! returning_token {
    ($sql:literal) => {
        concat!($sql, " id, name, scope, created_at, last_used, revoked_at")
    };
}

impl Engine {
    /// Stores a new token by its hash; returns its listing.
    pub async fn create_api_token(
        &self,
        name: &str,
        scope: &str,
        token_hash: &str,
    ) -> Result<ApiToken> {
        sqlx::query_as::<_, TokenRow>(returning_token!(
            "INSERT INTO api_tokens (name, scope, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING"
        ))
            .bind(name)
            .bind(scope)
            .bind(token_hash)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await
            .map(ApiToken::from)
            .map_err(|e| conflict_or(e, || "token already exists".into()))
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, name, scope, created_at, last_used, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ApiToken::from).collect())
    }

    /// The live (not revoked) token with this hash, marking it used now.
    pub async fn use_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        Ok(sqlx::query_as::<_, TokenRow>(returning_token!(
            "UPDATE api_tokens SET last_used = $1 WHERE token_hash = $2 AND revoked_at IS NULL RETURNING"
        ))
            .bind(now_ms())
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .map(ApiToken::from))
    }

    /// Revokes a token for good; revoking twice is a no-op that still succeeds.
    pub async fn revoke_api_token(&self, id: i64) -> Result<ApiToken> {
        sqlx::query_as::<_, TokenRow>(returning_token!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING"
        ))
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(ApiToken::from)
        .ok_or_else(|| StoreError::NotFound(format!("API token {id}")))
    }
}
