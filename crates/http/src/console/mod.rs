//! The web console at `/`: the operator's view of the fleet, rendered on the server.
//!
//! Pages are HTML built with `maud` (every value escaped by default) straight from the store, so
//! counts and pages of a 20,000-device fleet are computed in SQL and the browser gets one page of
//! rows. A small script of our own (`assets/app.js`) does what needs the browser: uploads with
//! progress, forms posted to the admin API, and live campaign updates from the API's event
//! stream. Both assets are compiled into the binary.
//!
//! Sign-in (`auth.rs`): an operator's name and password, or a token, opens a server-side session
//! kept in an `HttpOnly`, `SameSite=Strict` cookie. Pages and the API both accept that cookie; the
//! API asks cookie-authenticated changes for the `X-Otter-Console: 1` header the script sends.

mod audit;
mod auth;
mod campaigns;
mod chart;
mod firmware;
mod fleet;
mod page;

use crate::api::ApiState;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

pub fn router(state: ApiState) -> Router {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/products") }))
        .merge(fleet::routes())
        .merge(firmware::routes())
        .merge(campaigns::routes())
        .merge(audit::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .merge(pages)
        .merge(auth::routes())
        .route("/console/app.js", get(|| asset(APP_JS, "text/javascript")))
        .route("/console/app.css", get(|| asset(APP_CSS, "text/css")))
        .with_state(state)
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
