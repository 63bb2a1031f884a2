//! `/tokens`: scoped API tokens. The token text is returned once, at creation; the server keeps
//! only its hash. Admin scope only (see [`super::auth::required_scope`]).

use super::auth::new_token;
use super::{ApiError, ApiState, wire};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use otter_api::{ApiToken, CreatedToken, ErrorBody, NewToken};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes and their documentation, from the handlers' annotations.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "created; the body carries the token, shown once", body = CreatedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
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
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: wire::api_token(token),
            secret,
        }),
    ))
}

#[utoipa::path(get, path = "/tokens", tag = "tokens", responses((status = 200, description = "every token, revoked ones too; never the token text", body = Vec<ApiToken>)))]
pub async fn list(State(s): State<ApiState>) -> Result<Json<Vec<ApiToken>>, ApiError> {
    let tokens = s.store().await.api_tokens().await?;
    Ok(Json(tokens.into_iter().map(wire::api_token).collect()))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = i64, Path)), responses((status = 200, description = "revoked", body = ApiToken), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<ApiToken>, ApiError> {
    let token = s.store().await.revoke_api_token(id).await?;
    tracing::info!(id, name = %token.name, "API token revoked");
    let subject = format!("token #{id} {}", token.name);
    super::audit::record(&s, "token.revoke", &subject, serde_json::json!({})).await;
    Ok(Json(wire::api_token(token)))
}
