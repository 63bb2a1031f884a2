//! `/tokens`: scoped API tokens. The token text is returned once, at creation; the server keeps
//! only its hash. Admin scope only (see [`super::auth::required_scope`]).

use super::auth::{Scope, new_token};
use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use otter_store::ApiToken;
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    /// Who or what holds it, for listings and the audit log (1–64 characters).
    pub name: String,
    pub scope: Scope,
}

#[derive(Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: ApiToken,
    /// The bearer token; shown only in this response.
    pub secret: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken,
    responses((status = 201, description = "created; the body carries the token, shown once"), (status = 400), (status = 403)))]
pub async fn create(
    State(s): State<ApiState>,
    Json(t): Json<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = t.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "token name must be 1 to 64 printable characters".into(),
        ));
    }
    let (secret, hash) = new_token();
    let token = s
        .store()
        .await
        .create_api_token(name, t.scope.as_str(), &hash)
        .await?;
    tracing::info!(
        id = token.id,
        name,
        scope = t.scope.as_str(),
        "API token created"
    );
    let subject = format!("token #{} {name}", token.id);
    let detail = serde_json::json!({ "scope": t.scope.as_str() });
    super::audit::record(&s, "token.create", &subject, detail).await;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, description = "every token, revoked ones too; never the token text")))]
pub async fn list(State(s): State<ApiState>) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(s.store().await.api_tokens().await?))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", responses((status = 200, description = "revoked"), (status = 404)))]
pub async fn revoke(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<ApiToken>, ApiError> {
    let token = s.store().await.revoke_api_token(id).await?;
    tracing::info!(id, name = %token.name, "API token revoked");
    let subject = format!("token #{id} {}", token.name);
    super::audit::record(&s, "token.revoke", &subject, serde_json::json!({})).await;
    Ok(Json(token))
}
