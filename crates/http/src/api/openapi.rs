//! The OpenAPI document of the admin API, generated from the handlers' annotations.

use super::{audit, auth, campaigns, devices, firmware, products, stream, tokens};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Otter admin API",
        description = "Products, devices, firmware and campaigns of an Otter OTA server. Every call takes `Authorization: Bearer <token>`: the admin token, or a scoped token from `otter token create` (read: GET; operate: firmware, verification, campaigns, tags; admin: everything)."
    ),
    paths(
        audit::list,
        stream::stream,
        products::create,
        products::list,
        products::show,
        products::update,
        devices::create,
        devices::list,
        devices::show,
        firmware::upload,
        firmware::list,
        firmware::attach_signature,
        products::add_key,
        products::list_keys,
        campaigns::create,
        campaigns::show,
        devices::rotate_secret,
        tokens::create,
        tokens::list,
        tokens::revoke,
    ),
    components(schemas(
        products::NewProduct,
        products::ProductChange,
        devices::NewDevice,
        campaigns::NewCampaign,
        tokens::NewToken,
        auth::Scope
    ))
)]
pub struct ApiDoc;

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
