//! The admin API under `/api/v1`: JSON over HTTP, bearer-token protected, described by an
//! OpenAPI document. One file per resource; errors map to HTTP status in [`error`] only.

pub(crate) mod audit;
mod campaigns;
mod devices;
mod error;
mod firmware;
mod openapi;
mod products;
mod stream;

use crate::campaigns::Campaigns;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use otter_blobs::Blobs;
use otter_store::Store;
use std::sync::Arc;

pub use error::ApiError;

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub blobs: Blobs,
    pub campaigns: Arc<Campaigns>,
    pub admin_token: Arc<str>,
}

pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .merge(products::routes())
        .merge(devices::routes())
        .merge(firmware::routes())
        .merge(campaigns::routes())
        .merge(stream::routes())
        .merge(audit::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    Router::new().nest("/api/v1", protected.merge(openapi::routes()))
}

/// Bearer-token check, constant time.
async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool =
        subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), state.admin_token.as_bytes()).into();
    if !ok {
        tracing::warn!(path = %request.uri().path(), "API request with a missing or wrong token");
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}
