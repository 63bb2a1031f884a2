//! `/campaigns`: fleet rollouts. `otter upgrade` of one device is a campaign with one target.

use super::{ApiError, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use otter_core::{ProductId, UpgradeState};
use otter_engine::campaigns::{CampaignError, CampaignRequest, Created};
use otter_store::{
    BakeRecord, Campaign, CampaignKind, Firmware, ReasonCount, StateCounts, Upgrade,
};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/campaigns", post(create).get(list))
        .route("/campaigns/{id}", get(show))
        .route("/campaigns/{id}/devices", get(devices))
        .route("/campaigns/{id}/pause", post(pause))
        .route("/campaigns/{id}/resume", post(resume))
        .route("/campaigns/{id}/cancel", post(cancel))
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

/// Request body of `POST /campaigns` (see docs/campaigns.md for every field).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewCampaign {
    pub product: String,
    /// Target firmware version (uploaded, and verified unless skip_verification).
    pub version: String,
    pub module: Option<String>,
    /// `{"versions": [...], "devices": [...], "tags": [...]}`: every constraint given must hold.
    #[schema(value_type = Object)]
    pub selection: Option<serde_json::Value>,
    /// Content of a device-name file (one per line, or CSV with a name column).
    pub device_file: Option<String>,
    /// start_at_ms, window, rate_per_minute, waves, gate_percent, timeout_secs, retries, abort.
    #[schema(value_type = Object)]
    pub strategy: Option<serde_json::Value>,
    /// `push` (default) or `requested` (devices get the offer only when they ask).
    pub mode: Option<String>,
    pub dry_run: Option<bool>,
    pub supersede: Option<bool>,
    pub allow_downgrade: Option<bool>,
    pub skip_verification: Option<bool>,
}

#[derive(Serialize)]
pub struct CampaignView {
    #[serde(flatten)]
    campaign: Campaign,
    firmware: Firmware,
    counts: StateCounts,
    /// Devices per state and the reason Otter gave (skipped, failed, waiting, …).
    reasons: Vec<ReasonCount>,
    /// The health gates' bakes and their evaluations, by wave (the gate timeline).
    bakes: Vec<BakeRecord>,
    total: i64,
}

#[derive(Serialize)]
pub struct CreatedView {
    #[serde(flatten)]
    campaign: Option<CampaignView>,
    dry_run: bool,
    #[serde(flatten)]
    created: Created,
    /// The first devices, for a quick look (all of them: GET /campaigns/{id}/devices).
    upgrades: Vec<Upgrade>,
}

#[utoipa::path(post, path = "/api/v1/campaigns", request_body = NewCampaign,
    responses((status = 201, description = "created (or, with dry_run, 200 and nothing started)"), (status = 400), (status = 404, description = "unknown product or firmware"), (status = 409, description = "firmware not verified, or a device is already in a live campaign")))]
pub async fn create(
    State(s): State<ApiState>,
    Json(body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<CreatedView>), ApiError> {
    let req: CampaignRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid campaign: {e}")))?;
    let dry_run = req.dry_run;
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
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(CreatedView {
            campaign,
            dry_run,
            created,
            upgrades,
        }),
    ))
}

#[derive(Deserialize)]
pub struct ListParams {
    product: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/campaigns", params(("product" = Option<String>, Query)), responses((status = 200)))]
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

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", responses((status = 200), (status = 404)))]
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

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/devices",
    params(("state" = Option<String>, Query), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)), responses((status = 200)))]
pub async fn devices(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    Query(p): Query<DeviceParams>,
) -> Result<Json<Vec<Upgrade>>, ApiError> {
    s.store().await.campaign(id).await?;
    let state = p
        .state
        .map(|st| {
            UpgradeState::parse(&st)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown state {st:?}")))
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        s.engine
            .campaigns()
            .upgrades(id, state, limit, p.offset.unwrap_or(0).max(0))
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", responses((status = 200), (status = 400), (status = 404)))]
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

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", responses((status = 200), (status = 400), (status = 404)))]
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

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", responses((status = 200), (status = 400), (status = 404)))]
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

pub async fn view(s: &ApiState, id: i64) -> Result<CampaignView, ApiError> {
    let campaign = s.store().await.campaign(id).await?;
    let firmware = s.store().await.firmware(campaign.firmware_id).await?;
    let counts = s.store().await.campaign_counts(id).await?;
    let total = counts.total();
    let reasons = s.store().await.campaign_reasons(id).await?;
    let bakes = s.store().await.campaign_bakes(id).await?;
    Ok(CampaignView {
        campaign,
        firmware,
        counts,
        reasons,
        bakes,
        total,
    })
}
