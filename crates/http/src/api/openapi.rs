//! The OpenAPI document of the admin API: the routes' own descriptions (collected with the
//! router, [`super::openapi`]) under `/api/v1`, with the document's title, the security scheme
//! and every body schema of crate otter-api.

use axum::routing::get;
use axum::{Json, Router};
use std::sync::OnceLock;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Otter admin API",
        description = "Products, devices, firmware and campaigns of an Otter OTA server. Every call takes `Authorization: Bearer <token>`: the admin token, or a scoped token from `otter token create` (read: GET; operate: firmware, verification, campaigns, tags; admin: everything). The web console calls it with its session cookie (`otter_session`, HttpOnly) instead, and then every change must carry `X-Otter-Console: 1` (refused with 403 otherwise). The broker hooks take the broker secret instead. Failures answer `{\"error\": \"...\"}` (ErrorBody).",
    ),
    security(("bearer" = [])),
    components(schemas(
        otter_api::ErrorBody,
        otter_api::Scope,
        otter_api::Judgement,
    ))
)]
struct ApiDoc;

/// `paths` (relative to `/api/v1`) under this API's title, prefix and components.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let prefixed = utoipa::openapi::OpenApi::default().nest("/api/v1", paths);
    doc.merge(prefixed);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        "broker_secret",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("the broker secret (`--broker-secret`)"))
                .build(),
        ),
    );
    doc
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    // The same for every request: built once.
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Router::new().route(
        "/openapi.json",
        get(|| async { Json(DOC.get_or_init(super::openapi)) }),
    )
}
