//! `/products`: device models and their wire dialect.

use super::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use otter_core::ProductId;
use otter_protocol::Dialect;
use otter_store::Product;
use serde::Deserialize;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/products", get(list).post(create))
        .route("/products/{product}", get(show))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewProduct {
    pub id: String,
    /// `tencent`, `aliyun` or `enos`.
    pub dialect: String,
    pub name: Option<String>,
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
    let name = p.name.unwrap_or_else(|| id.to_string());
    let product = s.store.create_product(&id, dialect.as_str(), &name).await?;
    tracing::info!(product = %id, %dialect, "product created");
    super::audit::record(
        &s,
        "product.create",
        id.as_str(),
        serde_json::json!({ "dialect": dialect.as_str() }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(product)))
}

#[utoipa::path(get, path = "/api/v1/products", responses((status = 200)))]
pub async fn list(State(s): State<ApiState>) -> Result<Json<Vec<Product>>, ApiError> {
    Ok(Json(s.store.products().await?))
}

#[utoipa::path(get, path = "/api/v1/products/{product}", responses((status = 200), (status = 404)))]
pub async fn show(
    State(s): State<ApiState>,
    Path(product): Path<String>,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(s.store.product(&ProductId::parse(product)?).await?))
}
