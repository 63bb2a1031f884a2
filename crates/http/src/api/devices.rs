//! `/products/{product}/devices`: device identities, secrets and what each device is doing.

use super::wire;
use super::{ApiError, ApiState};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use otter_api::{
    CreatedDevice, Deletion, Device, DeviceView, ErrorBody, ListedDevice, NewDevice, RotatedSecret,
    TagChange, UpgradeEvent, UpgradeView,
};
use otter_core::{DeviceName, Module, ProductId};
use otter_protocol::Dialect;
use otter_store::DeviceFilter;
use rand::RngCore;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes and their documentation, from the handlers' annotations.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(tags))
        .routes(routes!(rotate_secret))
        .routes(routes!(history))
}

#[utoipa::path(delete, path = "/products/{product}/devices/{device}", tag = "devices", params(("product" = String, Path), ("device" = String, Path)),
    responses((status = 200, description = "deleted with its history; its credentials no longer work", body = Deletion), (status = 404, body = ErrorBody),
        (status = 409, description = "a live campaign targets it", body = ErrorBody)))]
pub async fn delete(
    State(s): State<ApiState>,
    Path((product, device)): Path<(String, String)>,
) -> Result<Json<Deletion>, ApiError> {
    let (product, device) = (ProductId::parse(product)?, DeviceName::parse(device)?);
    let removed = s.store().await.delete_device(&product, &device).await?;
    let subject = format!("{product}/{device}");
    tracing::info!(device = %subject, "device deleted");
    super::audit::record(&s, "device.delete", &subject, serde_json::json!({})).await;
    Ok(Json(Deletion {
        deleted: format!("device {subject}"),
        devices: removed.devices,
        firmware: removed.firmware,
        campaigns: removed.campaigns,
        blobs_removed: 0,
    }))
}

#[utoipa::path(put, path = "/products/{product}/devices/{device}/tags", tag = "devices", params(("product" = String, Path), ("device" = String, Path)), request_body = TagChange,
    responses((status = 200, description = "the device's tags", body = Vec<String>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tags(
    State(s): State<ApiState>,
    Path((product, device)): Path<(String, String)>,
    Json(t): Json<TagChange>,
) -> Result<Json<Vec<String>>, ApiError> {
    let valid = |tag: &String| {
        !tag.is_empty() && tag.len() <= 64 && tag.chars().all(|c| c.is_ascii_graphic())
    };
    if let Some(bad) = t.add.iter().find(|t| !valid(t)) {
        return Err(ApiError::BadRequest(format!(
            "invalid tag {bad:?}: 1 to 64 printable characters, no spaces"
        )));
    }
    let (product, device) = (ProductId::parse(product)?, DeviceName::parse(device)?);
    let tags = s
        .store()
        .await
        .set_tags(&product, &device, &t.add, &t.remove)
        .await?;
    super::audit::record(
        &s,
        "device.tags",
        &format!("{product}/{device}"),
        serde_json::json!({ "add": t.add, "remove": t.remove }),
    )
    .await;
    Ok(Json(tags))
}

#[utoipa::path(get, path = "/products/{product}/devices/{device}/history", tag = "devices", params(("product" = String, Path), ("device" = String, Path)),
    responses((status = 200, description = "upgrade events, newest first", body = Vec<UpgradeEvent>), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(s): State<ApiState>,
    Path((product, device)): Path<(String, String)>,
) -> Result<Json<Vec<UpgradeEvent>>, ApiError> {
    let (product, device) = (ProductId::parse(product)?, DeviceName::parse(device)?);
    s.store().await.device(&product, &device).await?;
    let events = s
        .store()
        .await
        .device_events(&product, &device, 500)
        .await?;
    Ok(Json(events.into_iter().map(wire::upgrade_event).collect()))
}

#[utoipa::path(post, path = "/products/{product}/devices", tag = "devices", params(("product" = String, Path)), request_body = NewDevice,
    responses((status = 201, description = "created; the body carries the secret", body = CreatedDevice), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Json(d): Json<NewDevice>,
) -> Result<(StatusCode, Json<CreatedDevice>), ApiError> {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let name = DeviceName::parse(d.name)?;
    let secret = match d.secret {
        Some(secret) if !(MIN_SECRET..=256).contains(&secret.chars().count()) => {
            return Err(ApiError::BadRequest(format!(
                "a device secret must be {MIN_SECRET} to 256 characters, not {} (a short one can be guessed; leave it out and Otter generates one in the dialect's format)",
                secret.chars().count()
            )));
        }
        Some(secret) => secret,
        None => generated_secret(product.dialect)?,
    };
    let sealed = s.secrets.seal(product.id.as_str(), name.as_str(), &secret);
    let device = s
        .store()
        .await
        .create_device(&product.id, &name, &sealed)
        .await?;
    tracing::info!(device = %format!("{}/{}", product.id, name), "device created");
    super::audit::record(
        &s,
        "device.create",
        &format!("{}/{name}", product.id),
        serde_json::json!({}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedDevice {
            device: wire::device(device),
            secret,
        }),
    ))
}

#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    /// Part of the name.
    q: Option<String>,
    /// Devices at this version (`default` module); `none`: devices that never reported one.
    version: Option<String>,
    online: Option<bool>,
    tag: Option<String>,
}

/// The `version` filter's value for devices that never reported a version.
const NO_VERSION: &str = "none";

#[utoipa::path(get, path = "/products/{product}/devices", tag = "devices",
    params(("product" = String, Path), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query),
        ("q" = Option<String>, Query, description = "part of the device name"),
        ("version" = Option<String>, Query, description = "devices at this version; `none`: never reported one"),
        ("online" = Option<bool>, Query), ("tag" = Option<String>, Query)),
    responses((status = 200, description = "devices by name; the `X-Total-Count` header counts all that match", body = Vec<ListedDevice>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Query(p): Query<ListParams>,
) -> Result<([(&'static str, String); 1], Json<Vec<ListedDevice>>), ApiError> {
    let product = ProductId::parse(product)?;
    s.store().await.product(&product).await?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let offset = p.offset.unwrap_or(0).max(0);
    let given = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let filter = DeviceFilter {
        search: given(p.q),
        version: given(p.version).map(|v| (v != NO_VERSION).then_some(v)),
        online: p.online,
        tag: given(p.tag),
    };
    let (total, rows) = s
        .store()
        .await
        .device_page(&product, &Module::default(), &filter, limit, offset)
        .await?;
    let listed = rows
        .into_iter()
        .map(|d| ListedDevice {
            device: Device {
                product: product.to_string(),
                name: d.name.to_string(),
                online: d.online,
                last_seen: d.last_seen,
                created_at: d.created_at,
            },
            version: d.version.map(|v| v.to_string()),
            tags: d.tags,
        })
        .collect();
    Ok(([("x-total-count", total.to_string())], Json(listed)))
}

#[utoipa::path(get, path = "/products/{product}/devices/{device}", tag = "devices", params(("product" = String, Path), ("device" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<ApiState>,
    Path((product, device)): Path<(String, String)>,
) -> Result<Json<DeviceView>, ApiError> {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let name = DeviceName::parse(device)?;
    let dialect = Some(product.dialect);
    let upgrade = s
        .store()
        .await
        .latest_upgrade(&product.id, &name)
        .await?
        .map(|upgrade| UpgradeView {
            result_explained: upgrade
                .status
                .result_code
                .zip(dialect)
                .map(|(code, d)| otter_protocol::explain(d, code).to_owned()),
            upgrade: wire::upgrade(upgrade, product.dialect),
        });
    // Read after the upgrade: every store read is current as of its call (otter-engine), so the
    // version includes every report acknowledged before that state was written (the engine
    // queues a report before it records what the report caused), and version and state agree.
    let device = s.store().await.device(&product.id, &name).await?;
    let versions = s.store().await.versions(&product.id, &name).await?;
    let version = versions
        .iter()
        .find(|v| v.module.as_str() == "default")
        .map(|v| v.version.to_string());
    let tags = s.store().await.tags(&product.id, &name).await?;
    let health_counters = s.store().await.device_counters(&product.id, &name).await?;
    Ok(Json(DeviceView {
        device: wire::device(device),
        version,
        versions: versions.into_iter().map(wire::module_version).collect(),
        tags,
        upgrade,
        health_counters,
    }))
}

/// The shortest device secret accepted: the vendors' own are 24 (Tencent) to 32 characters.
const MIN_SECRET: usize = 16;

/// A fresh random secret in the dialect's format (base64 for Tencent, hex otherwise).
fn generated_secret(dialect: Dialect) -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    Ok(otter_protocol::generate_secret_format(dialect, &bytes))
}

#[utoipa::path(post, path = "/products/{product}/devices/{device}/secret", tag = "devices", params(("product" = String, Path), ("device" = String, Path)),
    responses((status = 200, description = "a new secret, shown once; the old one no longer logs in", body = RotatedSecret), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    State(s): State<ApiState>,
    Path((product, device)): Path<(String, String)>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    let name = DeviceName::parse(device)?;
    let secret = generated_secret(product.dialect)?;
    let sealed = s.secrets.seal(product.id.as_str(), name.as_str(), &secret);
    s.store()
        .await
        .set_device_secret(&product.id, &name, &sealed)
        .await?;
    let subject = format!("{}/{name}", product.id);
    tracing::info!(device = %subject, "device secret rotated");
    super::audit::record(&s, "device.rotate_secret", &subject, serde_json::json!({})).await;
    Ok(Json(RotatedSecret {
        product: product.id.to_string(),
        name: name.to_string(),
        secret,
    }))
}
