//! `/products`: device models and their wire dialect, and their firmware signing keys
//! (`/products/{product}/keys`: the first is registered as is, every later one must be
//! announced by a registered key; docs/signing.md).

use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use otter_core::{ProductId, VersionScheme};
use otter_protocol::Dialect;
use otter_store::{Product, ProductKey};
use serde::Deserialize;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/products", get(list).post(create))
        .route("/products/{product}", get(show).patch(update))
        .route("/products/{product}/keys", get(list_keys).post(add_key))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewKey {
    /// The ed25519 public key: SPKI PEM, hex or base64 of its 32 bytes.
    pub public_key: String,
    /// Id of the registered key announcing this one (required unless it is the first key).
    pub signed_by: Option<String>,
    /// Base64 signature of `signed_by` over the announcement text.
    pub sig: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/products/{product}/keys", request_body = NewKey,
    responses((status = 201, description = "registered"), (status = 400, description = "bad key or announcement"), (status = 409, description = "exists")))]
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
    Ok((StatusCode::CREATED, Json(key)))
}

#[utoipa::path(get, path = "/api/v1/products/{product}/keys", responses((status = 200), (status = 404)))]
pub async fn list_keys(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Vec<ProductKey>>, ApiError> {
    let id = ProductId::parse(product)?;
    s.store().await.product(&id).await?;
    Ok(Json(s.store().await.product_keys(&id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewProduct {
    pub id: String,
    /// `tencent`, `aliyun` or `enos`.
    pub dialect: String,
    pub name: Option<String>,
    /// How versions are ordered for anti-rollback: `semver` (default; a version that is not
    /// semver-like has no order), `numeric` or `opaque` (no order: never a downgrade).
    pub version_scheme: Option<String>,
}

fn parse_scheme(s: Option<&str>) -> Result<VersionScheme, ApiError> {
    s.map(str::parse)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(ApiError::BadRequest)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProductChange {
    /// `semver`, `numeric` or `opaque`; live campaigns judge by the new scheme from now on.
    pub version_scheme: String,
}

#[utoipa::path(patch, path = "/api/v1/products/{product}", request_body = ProductChange,
    responses((status = 200), (status = 400), (status = 404)))]
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
    Ok(Json(product))
}

#[utoipa::path(post, path = "/api/v1/products", request_body = NewProduct,
    responses((status = 201, description = "created"), (status = 400), (status = 409, description = "exists")))]
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
    Ok((StatusCode::CREATED, Json(product)))
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
fn tencent_prefix_clash<'a>(products: &'a [Product], id: &ProductId) -> Option<&'a str> {
    products
        .iter()
        .filter(|p| p.dialect == Dialect::Tencent)
        .map(|p| p.id.as_str())
        .find(|existing| {
            *existing != id.as_str()
                && (existing.starts_with(id.as_str()) || id.as_str().starts_with(existing))
        })
}

#[utoipa::path(get, path = "/api/v1/products", responses((status = 200)))]
pub async fn list(State(s): State<ApiState>) -> Result<Json<Vec<Product>>, ApiError> {
    Ok(Json(s.store().await.products().await?))
}

#[utoipa::path(get, path = "/api/v1/products/{product}", responses((status = 200), (status = 404)))]
pub async fn show(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(
        s.store().await.product(&ProductId::parse(product)?).await?,
    ))
}
