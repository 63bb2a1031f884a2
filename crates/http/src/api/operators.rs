//! `/operators`: named operator accounts, who sign in to the console with a name and a password.
//! Passwords are hashed with argon2id (RustCrypto's `argon2`, default parameters) into PHC
//! strings; hashing and checking run on the blocking pool, never on the async workers. Admin
//! scope only (see [`super::auth::required_scope`]).

use super::auth::{Caller, Scope};
use super::{ApiError, ApiState, wire};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use otter_api::{ErrorBody, NewOperator, OperatorAccount};
use std::sync::OnceLock;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (argon2 takes any length; this bounds the work of a request).
const MAX_PASSWORD_BYTES: usize = 1024;

/// The routes and their documentation, from the handlers' annotations.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(list, create))
        .routes(routes!(disable))
}

/// An operator name: 1–64 ASCII letters, digits, `.`, `_`, `-` or `@`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Why a password is refused, if it is.
pub fn password_problem(password: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(format!(
            "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    None
}

/// The argon2id PHC string of `password` (random salt, default parameters), on the blocking pool.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))?
}

/// Password checks at once, at most: each takes ~19 MiB and tens of milliseconds of CPU, so a
/// flood of sign-ins queues here instead of exhausting memory or the blocking pool.
const CONCURRENT_CHECKS: usize = 4;

/// Whether `password` matches the PHC string `hash`, on the blocking pool.
async fn password_matches(password: String, hash: String) -> bool {
    static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_CHECKS);
    let Ok(_permit) = CHECKS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            tracing::error!("an operator's stored password hash is not a PHC string");
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// A hash no password matches, checked for unknown names so that a sign-in takes as long
/// whether the name exists or not.
fn decoy_hash() -> String {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY
        .get_or_init(|| {
            Argon2::default()
                .hash_password(&rand::random::<[u8; 32]>())
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// The caller an operator's name and password identify, if they are right and the account is
/// not disabled.
pub async fn sign_in(s: &ApiState, name: &str, password: &str) -> Option<Caller> {
    if !valid_name(name) || password.len() > MAX_PASSWORD_BYTES {
        return None;
    }
    let found = match s.store().await.operator_login(name).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "operator lookup failed");
            return None;
        }
    };
    let Some((operator, hash)) = found else {
        let decoy = tokio::task::spawn_blocking(decoy_hash).await.ok()?;
        password_matches(password.to_owned(), decoy).await;
        return None;
    };
    if !password_matches(password.to_owned(), hash).await {
        return None;
    }
    Some(Caller {
        actor: format!("operator:{}", operator.name),
        scope: Scope::parse(&operator.scope)?,
        token_id: None,
    })
}

#[utoipa::path(post, path = "/operators", tag = "operators", request_body = NewOperator,
    responses((status = 201, description = "created", body = OperatorAccount), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<ApiState>,
    Json(o): Json<NewOperator>,
) -> Result<(StatusCode, Json<OperatorAccount>), ApiError> {
    let name = o.name.trim();
    if !valid_name(name) {
        return Err(ApiError::BadRequest(
            "operator name must be 1 to 64 letters, digits, '.', '_', '-' or '@'".into(),
        ));
    }
    if let Some(problem) = password_problem(&o.password) {
        return Err(ApiError::BadRequest(problem));
    }
    let hash = hash_password(o.password).await?;
    let operator = s
        .store()
        .await
        .create_operator(name, o.scope.as_str(), &hash)
        .await?;
    tracing::info!(name, scope = o.scope.as_str(), "operator created");
    let detail = serde_json::json!({ "scope": o.scope.as_str() });
    super::audit::record(&s, "operator.create", &format!("operator {name}"), detail).await;
    Ok((StatusCode::CREATED, Json(wire::operator(operator))))
}

#[utoipa::path(get, path = "/operators", tag = "operators", responses((status = 200, description = "every operator, disabled ones too; never a password", body = Vec<OperatorAccount>)))]
pub async fn list(State(s): State<ApiState>) -> Result<Json<Vec<OperatorAccount>>, ApiError> {
    let operators = s.store().await.operators().await?;
    Ok(Json(operators.into_iter().map(wire::operator).collect()))
}

#[utoipa::path(delete, path = "/operators/{name}", tag = "operators", params(("name" = String, Path)),
    responses((status = 200, description = "disabled: it can no longer sign in, and its console sessions ended", body = OperatorAccount), (status = 404, body = ErrorBody)))]
pub async fn disable(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<OperatorAccount>, ApiError> {
    let operator = s.store().await.disable_operator(&name).await?;
    tracing::info!(name = %operator.name, "operator disabled");
    let subject = format!("operator {}", operator.name);
    super::audit::record(&s, "operator.disable", &subject, serde_json::json!({})).await;
    Ok(Json(wire::operator(operator)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords() {
        assert!(valid_name("alice"));
        assert!(valid_name("ops.team-1@site_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("operator:x"));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(password_problem("short").unwrap().contains("at least 12"));
        assert_eq!(password_problem("twelve chars"), None);
        assert!(password_problem(&"x".repeat(2000)).is_some());
    }

    #[tokio::test]
    async fn argon2id_hashes_verify() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches("correct horse battery".into(), hash.clone()).await);
        assert!(!password_matches("wrong horse battery".into(), hash).await);
        assert!(!password_matches("x".into(), "not a hash".into()).await);
    }
}
