//! `/campaigns`: firmware + target devices. `otter upgrade` of one device is a campaign with one
//! target, so the campaign engine of later work generalizes this rather than replacing it.

use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use otter_core::{DeviceName, Module, ProductId, Version};
use otter_protocol::Dialect;
use otter_store::{Campaign, Firmware, StateCounts, Upgrade};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/campaigns", post(create))
        .route("/campaigns/{id}", get(show))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewCampaign {
    pub product: String,
    /// Target firmware version (must be uploaded).
    pub version: String,
    pub module: Option<String>,
    /// Device names to upgrade.
    pub devices: Vec<String>,
}

#[derive(Serialize)]
pub struct CampaignView {
    #[serde(flatten)]
    campaign: Campaign,
    firmware: Firmware,
    counts: StateCounts,
    upgrades: Vec<Upgrade>,
}

#[utoipa::path(post, path = "/api/v1/campaigns", request_body = NewCampaign,
    responses((status = 201), (status = 404, description = "unknown product, firmware or device"), (status = 409, description = "a device is already upgrading")))]
pub async fn create(
    State(s): State<ApiState>,
    Json(c): Json<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let product = s.store.product(&ProductId::parse(c.product)?).await?;
    let dialect: Dialect = product
        .dialect
        .parse()
        .map_err(|_| ApiError::Internal("stored dialect".into()))?;
    let module = c.module.map(Module::parse).transpose()?.unwrap_or_default();
    let firmware = s
        .store
        .firmware_by_version(&product.id, &module, &Version::parse(c.version)?)
        .await?;
    if c.devices.is_empty() {
        return Err(ApiError::BadRequest(
            "a campaign needs at least one device".into(),
        ));
    }
    let devices = c
        .devices
        .into_iter()
        .map(DeviceName::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let campaign = s.store.create_campaign(&firmware, &devices).await?;
    tracing::info!(campaign = campaign.id, product = %product.id, version = %firmware.version, devices = devices.len(), "campaign created");
    // Devices online now get the offer at once; the others when they next report their version.
    for upgrade in s.store.campaign_upgrades(campaign.id).await? {
        if s.store
            .device(&upgrade.product, &upgrade.device)
            .await?
            .online
        {
            s.engine.push(&upgrade, dialect).await?;
        }
    }
    Ok((StatusCode::CREATED, Json(view(&s, campaign.id).await?)))
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", responses((status = 200), (status = 404)))]
pub async fn show(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(view(&s, id).await?))
}

async fn view(s: &ApiState, id: i64) -> Result<CampaignView, ApiError> {
    let campaign = s.store.campaign(id).await?;
    let firmware = s.store.firmware(campaign.firmware_id).await?;
    Ok(CampaignView {
        counts: s.store.campaign_counts(id).await?,
        upgrades: s.store.campaign_upgrades(id).await?,
        firmware,
        campaign,
    })
}
