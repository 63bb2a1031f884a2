//! The admin API under `/api/v1`: JSON over HTTP, protected by scoped bearer tokens ([`auth`]), described by an
//! OpenAPI document. One file per resource; errors map to HTTP status in [`error`] only.

pub(crate) mod audit;
pub(crate) mod auth;
mod broker_hooks;
pub(crate) mod campaigns;
mod devices;
mod error;
mod firmware;
mod limits;
mod openapi;
pub(crate) mod operators;
mod products;
mod stream;
mod tokens;
mod wire;

use axum::Router;
use axum::middleware;
use otter_blobs::Blobs;
use otter_engine::Engine;
use otter_store::Store;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

pub use broker_hooks::BrokerHooks;
pub use error::ApiError;

/// What the API and the console work with.
#[derive(Clone)]
pub struct ApiState {
    /// The device engine: the store (always current) and campaigns.
    pub engine: Arc<Engine>,
    pub blobs: Blobs,
    pub admin_token: Arc<str>,
    /// Seals device secrets before they are stored.
    pub secrets: Arc<otter_engine::secrets::SecretBox>,
    /// Largest firmware upload accepted, in bytes.
    pub max_firmware_size: u64,
    /// The base of download links, to tell operators when its port is one some device SDKs
    /// cannot dial (product creation, the console's product page).
    pub public_url: Arc<otter_engine::links::PublicBase>,
    /// Per-product firmware signing keys for server-side signing (docs/signing.md).
    pub signing_key_dir: Option<std::path::PathBuf>,
    /// The external broker's device auth hooks; `None` (no broker secret): they are off.
    pub broker_hooks: Option<BrokerHooks>,
    /// How long a console session lasts after sign-in.
    pub console_session_ttl: std::time::Duration,
}

/// The bearer-token routes with their OpenAPI description: every route is added through
/// utoipa-axum's `routes!` from its handler's `#[utoipa::path]`, so a route cannot be served
/// without being documented, nor documented at a path or method it is not served at.
fn documented() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .merge(products::routes())
        .merge(devices::routes())
        .merge(firmware::routes())
        .merge(campaigns::routes())
        .merge(stream::routes())
        .merge(audit::routes())
        .merge(tokens::routes())
        .merge(operators::routes())
}

/// The OpenAPI document of everything under `/api/v1` (`GET /api/v1/openapi.json`). The broker
/// hooks are in it whether or not this server has them on (they are only with a broker secret).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = documented().split_for_parts();
    let (_, hooks) = broker_hooks::documented().split_for_parts();
    openapi::document(api.merge_from(hooks))
}

/// Everything under `/api/v1`: the operators' API, its OpenAPI document and the broker hooks.
pub fn router(state: ApiState) -> Router {
    operators_router(state.clone()).merge(hooks_router(&state))
}

/// The operators' API under `/api/v1` (bearer token or console session) and its OpenAPI document.
pub fn operators_router(state: ApiState) -> Router {
    let (protected, _) = documented()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_scope,
        ))
        .with_state(state)
        .split_for_parts();
    Router::new().nest("/api/v1", protected.merge(openapi::routes()))
}

/// The external broker's device auth hooks under `/api/v1/broker`, outside the bearer-token
/// layer: the broker authenticates with the broker secret. Part of the device surface.
pub fn hooks_router(state: &ApiState) -> Router {
    match state.broker_hooks {
        Some(_) => Router::new().nest("/api/v1", broker_hooks::routes(state)),
        None => Router::new(),
    }
}

impl ApiState {
    /// The store, current as of this call (device reports are written behind; the engine
    /// writes every acknowledged one first).
    pub async fn store(&self) -> &Store {
        self.engine.store().await
    }
}
