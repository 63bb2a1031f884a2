//! `/products/{product}/firmware`: upload (streamed to the blob store, digests computed on the
//! way) and list firmware images.

use super::{ApiError, ApiState};
use crate::campaigns::CampaignRequest;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::TryStreamExt;
use otter_core::campaign::Strategy;
use otter_core::targeting::Selection;
use otter_core::{Module, ProductId, Version};
use otter_store::{CampaignKind, CampaignMode};
use otter_store::{Firmware, NewFirmware};
use serde::Deserialize;
use tokio_util::io::StreamReader;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/products/{product}/firmware", get(list).post(upload))
        .route("/products/{product}/firmware/verify", post(verify))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct VerifyRequest {
    pub version: String,
    pub module: Option<String>,
    /// Test devices (at most 10); the firmware is verified when all succeed, rejected when any fails.
    pub devices: Vec<String>,
    /// Per-device timeout in seconds.
    pub timeout_secs: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/products/{product}/firmware/verify", request_body = VerifyRequest,
    responses((status = 201, description = "verification campaign started"), (status = 400), (status = 404)))]
pub async fn verify(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Json(v): Json<VerifyRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if v.devices.is_empty() || v.devices.len() > crate::campaigns::MAX_TEST_DEVICES {
        return Err(ApiError::BadRequest(format!(
            "verification takes 1 to {} test devices",
            crate::campaigns::MAX_TEST_DEVICES
        )));
    }
    let (subject, tests) = (format!("{product} {}", v.version), v.devices.clone());
    let request = CampaignRequest {
        product,
        version: v.version,
        module: v.module,
        selection: Selection {
            devices: v.devices,
            ..Default::default()
        },
        device_file: None,
        strategy: Strategy {
            timeout_secs: v.timeout_secs,
            ..Default::default()
        },
        mode: CampaignMode::Push,
        dry_run: false,
        supersede: false,
        allow_downgrade: true,
        skip_verification: true,
    };
    let created = s
        .campaigns
        .create(request, CampaignKind::Verification)
        .await?;
    let id = created.campaign.as_ref().map(|c| c.id).unwrap_or_default();
    super::audit::record(
        &s,
        "firmware.verify",
        &subject,
        serde_json::json!({ "campaign": id, "devices": tests }),
    )
    .await;
    let view = super::campaigns::view(&s, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(view).unwrap_or_default()),
    ))
}

#[derive(Deserialize)]
pub struct UploadParams {
    version: String,
    module: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/products/{product}/firmware",
    params(("version" = String, Query), ("module" = Option<String>, Query)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, description = "stored; size, md5 and sha256 computed"), (status = 409, description = "version exists")))]
pub async fn upload(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Query(p): Query<UploadParams>,
    body: Body,
) -> Result<(StatusCode, Json<Firmware>), ApiError> {
    let product = ProductId::parse(product)?;
    let version = Version::parse(p.version)?;
    let module = p.module.map(Module::parse).transpose()?.unwrap_or_default();
    s.store.product(&product).await?;
    if s.store
        .firmware_by_version(&product, &module, &version)
        .await
        .is_ok()
    {
        return Err(ApiError::Conflict(format!(
            "firmware {product} {version} (module {module}) already exists"
        )));
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let info = s
        .blobs
        .ingest(StreamReader::new(stream))
        .await
        .map_err(|e| ApiError::BadRequest(format!("upload failed: {e}")))?;
    if info.size == 0 {
        return Err(ApiError::BadRequest("firmware file is empty".into()));
    }
    let firmware = s
        .store
        .create_firmware(&NewFirmware {
            product,
            module,
            version,
            size: info.size,
            md5: info.md5,
            sha256: info.sha256,
        })
        .await?;
    tracing::info!(product = %firmware.product, version = %firmware.version, size = firmware.size, sha256 = %firmware.sha256, "firmware uploaded");
    let subject = format!("{} {}", firmware.product, firmware.version);
    super::audit::record(&s, "firmware.upload", &subject, serde_json::json!({ "module": firmware.module.as_str(), "size": firmware.size, "sha256": firmware.sha256 })).await;
    Ok((StatusCode::CREATED, Json(firmware)))
}

#[utoipa::path(get, path = "/api/v1/products/{product}/firmware", responses((status = 200)))]
pub async fn list(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Vec<Firmware>>, ApiError> {
    let product = ProductId::parse(product)?;
    s.store.product(&product).await?;
    Ok(Json(s.store.firmware_list(&product).await?))
}
