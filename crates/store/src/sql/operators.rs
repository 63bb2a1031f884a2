//! Named operator accounts and the console's sessions. Passwords arrive already hashed (argon2id
//! PHC strings, made by the HTTP crate) and session ids as their SHA-256: the store never sees a
//! password or a session id in clear.

use super::{Engine, conflict_or};
use crate::*;
use otter_core::Timestamp;

#[derive(sqlx::FromRow)]
struct OperatorRow {
    id: i64,
    name: String,
    scope: String,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl From<OperatorRow> for Operator {
    fn from(r: OperatorRow) -> Self {
        Operator {
            id: r.id,
            name: r.name,
            scope: r.scope,
            created_at: r.created_at.into(),
            disabled_at: r.disabled_at.map(Timestamp::from),
        }
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    actor: String,
    scope: String,
    expires_at: i64,
}

/// Appends the listed columns to a query, keeping it a `&'static str`.
macro_rules! returning_operator {
    ($sql:literal) => {
        concat!($sql, " id, name, scope, created_at, disabled_at")
    };
}

impl Engine {
    /// Stores a new operator with its password hash; a taken name is a conflict.
    pub async fn create_operator(
        &self,
        name: &str,
        scope: &str,
        password_hash: &str,
    ) -> Result<Operator> {
        sqlx::query_as::<_, OperatorRow>(returning_operator!(
            "INSERT INTO operators (name, scope, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING"
        ))
        .bind(name)
        .bind(scope)
        .bind(password_hash)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map(Operator::from)
        .map_err(|e| conflict_or(e, || format!("operator {name} already exists")))
    }

    /// Every operator, disabled ones too, by name.
    pub async fn operators(&self) -> Result<Vec<Operator>> {
        let rows: Vec<OperatorRow> = sqlx::query_as(
            "SELECT id, name, scope, created_at, disabled_at FROM operators ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Operator::from).collect())
    }

    /// A live (not disabled) operator and its password hash, to check a sign-in.
    pub async fn operator_login(&self, name: &str) -> Result<Option<(Operator, String)>> {
        let row = sqlx::query(
            "SELECT id, name, scope, created_at, disabled_at, password_hash FROM operators WHERE name = $1 AND disabled_at IS NULL",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        use sqlx::{FromRow, Row};
        let operator = Operator::from(OperatorRow::from_row(&row)?);
        let hash: String = row.try_get("password_hash")?;
        Ok(Some((operator, hash)))
    }

    /// Disables an operator for good and ends its console sessions, in one transaction;
    /// disabling twice keeps the first time.
    pub async fn disable_operator(&self, name: &str) -> Result<Operator> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let operator = sqlx::query_as::<_, OperatorRow>(returning_operator!(
            "UPDATE operators SET disabled_at = COALESCE(disabled_at, $1) WHERE name = $2 RETURNING"
        ))
        .bind(now)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .map(Operator::from)
        .ok_or_else(|| StoreError::NotFound(format!("operator {name}")))?;
        sqlx::query(
            "UPDATE console_sessions SET revoked_at = $1 WHERE actor = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(format!("operator:{name}"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(operator)
    }

    /// Opens a console session; sessions expired by now are cleared on the way.
    pub async fn create_console_session(&self, s: &NewConsoleSession<'_>) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (session_hash, actor, scope, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(s.session_hash)
        .bind(s.actor)
        .bind(s.scope)
        .bind(s.token_id)
        .bind(now)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || "console session already exists".into()))?;
        Ok(())
    }

    /// The session with this hash if it is live at `now` (ms): not revoked, not expired, its
    /// operator not disabled, the API token it was opened with not revoked.
    pub async fn console_session(
        &self,
        session_hash: &str,
        now: i64,
    ) -> Result<Option<ConsoleSession>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT s.actor, s.scope, s.expires_at FROM console_sessions s \
             WHERE s.session_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
             AND NOT EXISTS (SELECT 1 FROM operators o WHERE 'operator:' || o.name = s.actor AND o.disabled_at IS NOT NULL) \
             AND (s.token_id IS NULL OR EXISTS (SELECT 1 FROM api_tokens t WHERE t.id = s.token_id AND t.revoked_at IS NULL))",
        )
        .bind(session_hash)
        .bind(now)
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.map(|r| ConsoleSession {
            actor: r.actor,
            scope: r.scope,
            expires_at: r.expires_at,
        }))
    }

    /// Ends a session (sign-out); whether a live one was ended.
    pub async fn revoke_console_session(&self, session_hash: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE console_sessions SET revoked_at = $1 WHERE session_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(session_hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
