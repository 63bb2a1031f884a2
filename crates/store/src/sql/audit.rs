//! The audit log: what operators did, written by the admin API's handlers and read by the web
//! console. Append-only; nothing here ever updates or deletes a row.

use super::Engine;
use crate::*;
use otter_core::Timestamp;
use sqlx::Row;

impl Engine {
    /// Appends one entry; returns its id.
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Entries newest first, optionally only actions starting with `action_prefix`.
    pub async fn audit_log(
        &self,
        action_prefix: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, detail FROM audit_log
             WHERE ($1 IS NULL OR substr(action, 1, length($1)) = $1) ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(action_prefix)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: Timestamp::from(r.try_get::<i64, _>("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    // A detail that is not JSON is shown as the text it is.
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                })
            })
            .collect()
    }

    /// How many entries `audit_log` would page through.
    pub async fn audit_count(&self, action_prefix: Option<&str>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE ($1 IS NULL OR substr(action, 1, length($1)) = $1)",
        )
        .bind(action_prefix)
        .fetch_one(&self.pool)
        .await?)
    }
}
