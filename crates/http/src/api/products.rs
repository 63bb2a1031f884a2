//! `/products`: device models and their wire dialect, and their firmware signing keys
//! (`/products/{product}/keys`: the first is registered as is, every later one must be
//! announced by a registered key; docs/signing.md).

use super::wire;
use super::{ApiError, ApiState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use otter_api::{Deletion, ErrorBody, NewKey, NewProduct, Product, ProductChange, ProductKey};
use otter_core::{ProductId, VersionScheme};
use otter_protocol::Dialect;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes and their documentation, from the handlers' annotations.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(list, create))
        .routes(routes!(show, update, delete))
        .routes(routes!(list_keys, add_key))
}

#[utoipa::path(delete, path = "/products/{product}", tag = "products", params(("product" = String, Path)),
    responses((status = 200, description = "deleted with its devices, finished campaigns, firmware and keys", body = Deletion), (status = 404, body = ErrorBody),
        (status = 409, description = "it has a live campaign", body = ErrorBody)))]
pub async fn delete(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Deletion>, ApiError> {
    let id = ProductId::parse(product)?;
    let removed = s.store().await.delete_product(&id).await?;
    tracing::info!(product = %id, devices = removed.devices, firmware = removed.firmware, campaigns = removed.campaigns.len(), "product deleted");
    let blobs_removed = super::firmware::collect_blobs(&s, &removed.unreferenced_blobs).await;
    super::audit::record(
        &s,
        "product.delete",
        id.as_str(),
        serde_json::json!({ "devices": removed.devices, "firmware": removed.firmware, "campaigns": removed.campaigns, "blobs_removed": blobs_removed }),
    )
    .await;
    Ok(Json(Deletion {
        deleted: format!("product {id}"),
        devices: removed.devices,
        firmware: removed.firmware,
        campaigns: removed.campaigns,
        blobs_removed,
    }))
}

#[utoipa::path(post, path = "/products/{product}/keys", tag = "products", params(("product" = String, Path)), request_body = NewKey,
    responses((status = 201, description = "registered", body = ProductKey), (status = 400, description = "bad key or announcement", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "exists", body = ErrorBody)))]
pub async fn add_key(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Json(k): Json<NewKey>,
) -> Result<(StatusCode, Json<ProductKey>), ApiError> {
    let id = ProductId::parse(product)?;
    s.store().await.product(&id).await?;
    let public = otter_protocol::parse_public_key_text(&k.public_key)
        .map_err(|e| ApiError::BadRequest(format!("bad public key: {e}")))?;
    let key_id = otter_protocol::key_id(&public);
    let keys = s.store().await.product_keys(&id).await?;
    if keys.iter().any(|e| e.key_id == key_id) {
        return Err(ApiError::Conflict(format!(
            "key {key_id} of {id} already exists"
        )));
    }
    let announced = match (&k.signed_by, &k.sig, keys.is_empty()) {
        (None, None, true) => None,
        (Some(by), Some(sig), false) => {
            otter_engine::signing::check_announcement(&keys, id.as_str(), &public, by, sig)
                .map_err(|e| ApiError::BadRequest(format!("key announcement refused: {e}")))?;
            Some((by.as_str(), sig.trim()))
        }
        (_, _, true) => {
            return Err(ApiError::BadRequest(format!(
                "{id} has no key yet: its first key is registered without an announcement"
            )));
        }
        (_, _, false) => {
            return Err(ApiError::BadRequest(format!(
                "{id} already has signing keys: a new key must be announced by one of them (signed_by and sig; `otter product key add --signed-by`)"
            )));
        }
    };
    let b64 = otter_protocol::key_base64(&public);
    let key = s
        .store()
        .await
        .add_product_key(&id, &key_id, &b64, announced)
        .await?;
    tracing::info!(product = %id, key = %key_id, signed_by = ?k.signed_by, "signing key registered");
    super::audit::record(
        &s,
        "product.key.add",
        id.as_str(),
        serde_json::json!({ "key": key_id, "signed_by": k.signed_by }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(wire::product_key(key))))
}

#[utoipa::path(get, path = "/products/{product}/keys", tag = "products", params(("product" = String, Path)),
    responses((status = 200, body = Vec<ProductKey>), (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Vec<ProductKey>>, ApiError> {
    let id = ProductId::parse(product)?;
    s.store().await.product(&id).await?;
    let keys = s.store().await.product_keys(&id).await?;
    Ok(Json(keys.into_iter().map(wire::product_key).collect()))
}

fn parse_scheme(s: Option<&str>) -> Result<VersionScheme, ApiError> {
    s.map(str::parse)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(ApiError::BadRequest)
}

#[utoipa::path(patch, path = "/products/{product}", tag = "products", params(("product" = String, Path)), request_body = ProductChange,
    responses((status = 200, body = Product), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<ApiState>,
    Path(product): Path<String>,
    Json(change): Json<ProductChange>,
) -> Result<Json<Product>, ApiError> {
    let id = ProductId::parse(product)?;
    let scheme = parse_scheme(Some(&change.version_scheme))?;
    let product = s.store().await.set_version_scheme(&id, scheme).await?;
    tracing::info!(product = %id, %scheme, "product version scheme changed");
    super::audit::record(
        &s,
        "product.update",
        id.as_str(),
        serde_json::json!({ "version_scheme": scheme.as_str() }),
    )
    .await;
    Ok(Json(wire::product(product)))
}

#[utoipa::path(post, path = "/products", tag = "products", request_body = NewProduct,
    responses((status = 201, description = "created", body = Product), (status = 400, body = ErrorBody), (status = 409, description = "exists", body = ErrorBody)))]
pub async fn create(
    State(s): State<ApiState>,
    Json(p): Json<NewProduct>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let id = ProductId::parse(p.id)?;
    let dialect: Dialect = p.dialect.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "unknown dialect {:?}: expected tencent, aliyun or enos",
            p.dialect
        ))
    })?;
    let name = match p.name {
        Some(name) => product_name(name)?,
        None => id.to_string(),
    };
    // One creation at a time, so two prefix-related Tencent ids cannot both pass the check.
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = CREATING.lock().await;
    if dialect == Dialect::Tencent {
        let products = s.store().await.products().await?;
        if let Some(clash) = tencent_prefix_clash(&products, &id) {
            tracing::warn!(product = %id, existing = %clash, "product refused: its id and a Tencent product's id prefix each other");
            return Err(ApiError::Conflict(format!(
                "Tencent product {id} cannot be created: the Tencent product {clash} already exists, and one id begins with the other. \
                 Tencent devices log in with the client id {{productId}}{{deviceName}}, with no separator, so a client id would name \
                 a device of either product; pick an id that neither begins with nor extends {clash}"
            )));
        }
    }
    let scheme = parse_scheme(p.version_scheme.as_deref())?;
    let product = s
        .store()
        .await
        .create_product(&id, dialect, &name, scheme)
        .await?;
    tracing::info!(product = %id, %dialect, "product created");
    if let Some(problem) = s.public_url.port_problem([dialect]) {
        tracing::warn!(product = %id, %dialect, public_url = %s.public_url, "{problem}");
    }
    super::audit::record(
        &s,
        "product.create",
        id.as_str(),
        serde_json::json!({ "dialect": dialect.as_str(), "version_scheme": scheme.as_str() }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(wire::product(product))))
}

/// Longest product display name, in characters.
pub const MAX_PRODUCT_NAME: usize = 200;

/// A product's display name: trimmed, not empty, at most [`MAX_PRODUCT_NAME`] characters and
/// without control characters (it is shown in the console and in terminals).
fn product_name(name: String) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::BadRequest("product name is empty".into()));
    }
    if name.chars().count() > MAX_PRODUCT_NAME {
        return Err(ApiError::BadRequest(format!(
            "product name is longer than {MAX_PRODUCT_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "product name contains a control character".into(),
        ));
    }
    Ok(name.to_owned())
}

/// An existing Tencent product whose id begins with `id` or that `id` begins with. Tencent
/// client ids are `{productId}{deviceName}` with no separator, so such a pair makes client ids
/// ambiguous (`TCPROD0001` + `tdev1` and `TCPROD0001t` + `dev1` are the same login).
fn tencent_prefix_clash<'a>(
    products: &'a [otter_store::Product],
    id: &ProductId,
) -> Option<&'a str> {
    products
        .iter()
        .filter(|p| p.dialect == Dialect::Tencent)
        .map(|p| p.id.as_str())
        .find(|existing| {
            *existing != id.as_str()
                && (existing.starts_with(id.as_str()) || id.as_str().starts_with(existing))
        })
}

#[utoipa::path(get, path = "/products", tag = "products", responses((status = 200, body = Vec<Product>)))]
pub async fn list(State(s): State<ApiState>) -> Result<Json<Vec<Product>>, ApiError> {
    let products = s.store().await.products().await?;
    Ok(Json(products.into_iter().map(wire::product).collect()))
}

#[utoipa::path(get, path = "/products/{product}", tag = "products", params(("product" = String, Path)),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Product>, ApiError> {
    let product = s.store().await.product(&ProductId::parse(product)?).await?;
    Ok(Json(wire::product(product)))
}
