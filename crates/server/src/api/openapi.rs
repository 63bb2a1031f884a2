//! The OpenAPI document of the admin API, generated from the handlers' annotations.

use super::{audit, campaigns, devices, firmware, products, stream};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Otter admin API",
        description = "Products, devices, firmware and campaigns of an Otter OTA server. Every call takes `Authorization: Bearer <admin token>`."
    ),
    paths(
        audit::list,
        stream::stream,
        products::create,
        products::list,
        products::show,
        devices::create,
        devices::list,
        devices::show,
        firmware::upload,
        firmware::list,
        campaigns::create,
        campaigns::show,
    ),
    components(schemas(products::NewProduct, devices::NewDevice, campaigns::NewCampaign))
)]
pub struct ApiDoc;

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
