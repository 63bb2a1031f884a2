//! `/campaigns`: fleet rollouts. `otter upgrade` of one device is a campaign with one target.

use super::wire;
use super::{ApiError, ApiState};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use otter_api::{CampaignCreated, CampaignView, ErrorBody, NewCampaign, Upgrade};
use otter_core::campaign::Outcome;
use otter_core::{ProductId, UpgradeState};
use otter_engine::campaigns::CampaignError;
use otter_store::CampaignKind;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes and their documentation, from the handlers' annotations (one list: the router
/// and `/openapi.json` cannot disagree).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(devices))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Invalid(m) => ApiError::BadRequest(m),
            CampaignError::NotVerified(m) => ApiError::Conflict(m),
            CampaignError::Store(e) => e.into(),
            CampaignError::Other(e) => e.into(),
        }
    }
}

#[utoipa::path(post, path = "/campaigns", tag = "campaigns", request_body = NewCampaign,
    responses((status = 201, description = "created", body = CampaignCreated),
        (status = 200, description = "dry_run: the plan; nothing started", body = CampaignCreated),
        (status = 400, body = ErrorBody), (status = 404, description = "unknown product or firmware", body = ErrorBody),
        (status = 409, description = "firmware not verified, or a device is already in a live campaign", body = ErrorBody)))]
pub async fn create(
    State(s): State<ApiState>,
    Json(body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<CampaignCreated>), ApiError> {
    let req: NewCampaign = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid campaign: {e}")))?;
    let dry_run = req.dry_run;
    let req = wire::campaign_request(req);
    let created = s
        .engine
        .campaigns()
        .create(req, CampaignKind::Rollout)
        .await?;
    if let Some(c) = &created.campaign {
        let detail = serde_json::json!({ "product": c.product.as_str(), "firmware_id": c.firmware_id, "devices": created.targeting.selected.len(), "mode": c.mode.as_str() });
        super::audit::record(
            &s,
            "campaign.create",
            &format!("campaign #{}", c.id),
            detail,
        )
        .await;
    }
    let (campaign, upgrades) = match &created.campaign {
        Some(c) => (
            Some(view(&s, c.id).await?),
            s.engine.campaigns().upgrades(c.id, None, 100, 0).await?,
        ),
        None => (None, Vec::new()),
    };
    let dialect = match &created.campaign {
        Some(c) => s.store().await.product(&c.product).await?.dialect,
        None => otter_core::Dialect::Tencent, // a dry run lists no upgrades
    };
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(wire::campaign_created(
            campaign, dry_run, created, upgrades, dialect,
        )),
    ))
}

#[derive(Deserialize)]
pub struct ListParams {
    product: Option<String>,
}

#[utoipa::path(get, path = "/campaigns", tag = "campaigns", params(("product" = Option<String>, Query)),
    responses((status = 200, body = Vec<CampaignView>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<ApiState>,
    Query(p): Query<ListParams>,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    let product = p.product.map(ProductId::parse).transpose()?;
    let mut out = Vec::new();
    for c in s.store().await.campaigns(product.as_ref()).await? {
        out.push(view(&s, c.id).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(view(&s, id).await?))
}

#[derive(Deserialize)]
pub struct DeviceParams {
    state: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, path = "/campaigns/{id}/devices", tag = "campaigns",
    params(("id" = i64, Path), ("state" = Option<String>, Query), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "the campaign's devices, in rollout order", body = Vec<Upgrade>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn devices(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    Query(p): Query<DeviceParams>,
) -> Result<Json<Vec<Upgrade>>, ApiError> {
    let campaign = s.store().await.campaign(id).await?;
    let dialect = s.store().await.product(&campaign.product).await?.dialect;
    let state = p
        .state
        .map(|st| {
            UpgradeState::parse(&st)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown state {st:?}")))
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(wire::upgrades(
        s.engine
            .campaigns()
            .upgrades(id, state, limit, p.offset.unwrap_or(0).max(0))
            .await?,
        dialect,
    )))
}

#[utoipa::path(post, path = "/campaigns/{id}/pause", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn pause(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<CampaignView>, ApiError> {
    s.engine.campaigns().pause(id).await?;
    super::audit::record(
        &s,
        "campaign.pause",
        &format!("campaign #{id}"),
        serde_json::json!({}),
    )
    .await;
    Ok(Json(view(&s, id).await?))
}

#[utoipa::path(post, path = "/campaigns/{id}/resume", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resume(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<CampaignView>, ApiError> {
    s.engine.campaigns().resume(id).await?;
    super::audit::record(
        &s,
        "campaign.resume",
        &format!("campaign #{id}"),
        serde_json::json!({}),
    )
    .await;
    Ok(Json(view(&s, id).await?))
}

#[utoipa::path(post, path = "/campaigns/{id}/cancel", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn cancel(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<CampaignView>, ApiError> {
    s.engine.campaigns().cancel(id).await?;
    super::audit::record(
        &s,
        "campaign.cancel",
        &format!("campaign #{id}"),
        serde_json::json!({}),
    )
    .await;
    Ok(Json(view(&s, id).await?))
}

/// Devices queued again after a failure.
pub fn retrying(reasons: &[otter_store::ReasonCount]) -> i64 {
    reasons
        .iter()
        .filter(|r| r.reason == otter_core::Reason::Retrying)
        .map(|r| r.devices)
        .sum()
}

pub async fn view(s: &ApiState, id: i64) -> Result<CampaignView, ApiError> {
    let campaign = s.store().await.campaign(id).await?;
    let firmware = s.store().await.firmware(campaign.firmware_id).await?;
    let counts = s.store().await.campaign_counts(id).await?;
    let total = counts.total();
    let reasons = s.store().await.campaign_reasons(id).await?;
    let bakes = s.store().await.campaign_bakes(id).await?;
    let waiting = s.engine.campaigns().waiting(id).await?;
    let failed = counts.get(UpgradeState::Failed) + counts.get(UpgradeState::TimedOut);
    let retrying = retrying(&reasons);
    Ok(CampaignView {
        outcome: Outcome::of(campaign.state, failed),
        failed,
        retrying,
        waiting,
        campaign: wire::campaign(campaign),
        firmware: wire::firmware(firmware),
        counts: wire::counts(&counts),
        reasons: reasons.into_iter().map(wire::reason_count).collect(),
        bakes: bakes.into_iter().map(wire::bake).collect(),
        total,
    })
}
