//! `/audit`: the operator actions the API's handlers record, newest first. Recording is best
//! effort: the action already happened, so a failed audit write is logged, not returned.

use super::{ApiError, ApiState, wire};
use axum::Json;
use axum::extract::{Query, State};
use otter_api::AuditEntry;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The route and its documentation, from the handler's annotation.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default().routes(routes!(list))
}

/// Records an operator action, by the caller of the request being handled.
pub async fn record(s: &ApiState, action: &str, subject: &str, detail: serde_json::Value) {
    let actor = super::auth::current_actor();
    if let Err(e) = s
        .store()
        .await
        .record_audit(&actor, action, subject, &detail)
        .await
    {
        tracing::error!(error = %e, action, subject, "audit record failed");
    }
}

#[derive(Deserialize)]
pub struct AuditParams {
    /// Only actions starting with this, e.g. `campaign.`.
    action: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, path = "/audit", tag = "audit",
    params(("action" = Option<String>, Query), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "operator actions, newest first", body = Vec<AuditEntry>)))]
pub async fn list(
    State(s): State<ApiState>,
    Query(p): Query<AuditParams>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let offset = p.offset.unwrap_or(0).max(0);
    let entries = s
        .store()
        .await
        .audit_log(p.action.as_deref().filter(|a| !a.is_empty()), limit, offset)
        .await?;
    Ok(Json(entries.into_iter().map(wire::audit_entry).collect()))
}
