//! Sign-in with the admin token or an API token: a form, a session cookie, and the check every page goes through.

use super::page;
use crate::api::ApiState;
use axum::Router;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;

/// The cookie holding the admin token; readable by our script, which sends it as a bearer token.
pub const COOKIE: &str = "otter_token";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/login", get(form).post(sign_in))
        .route("/logout", post(sign_out))
}

/// Pages need a session; without one the browser is sent to the sign-in form.
pub async fn require_session(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    if token_ok(&s, cookie_token(request.headers()).as_deref()).await {
        return next.run(request).await;
    }
    let back = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next_param = utf8_percent_encode(back, NON_ALPHANUMERIC);
    Redirect::to(&format!("/login?next={next_param}")).into_response()
}

/// Any token the API accepts opens the console; what it may change is still decided by the API,
/// which the console's forms and scripts call with the same token.
async fn token_ok(s: &ApiState, presented: Option<&str>) -> bool {
    crate::api::auth::authenticate(s, presented.unwrap_or(""))
        .await
        .is_some()
}

/// The token from the `Cookie` header, percent-decoded.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| percent_decode_str(value).decode_utf8().ok())
        .map(|v| v.into_owned())
}

#[derive(Deserialize)]
pub struct NextPage {
    next: Option<String>,
}

/// Where sign-in leads when `next` is absent or not a path of this server.
const HOME: &str = "/products";

/// The page to go to after sign-in: always a path of this server, whatever `next` holds.
///
/// `next` is not pattern-matched but parsed, the way a browser reads a `Location` header
/// (WHATWG URL rules: tabs and newlines are dropped, `\` reads as `/`), against an origin of our
/// own; a target that lands on another origin, or whose path would read as a network-path
/// reference (`//host`), falls back to [`HOME`]. Control characters and backslashes are refused
/// before parsing, since no link of ours contains them. The answer is rebuilt from the parsed
/// path and query: percent-encoded visible ASCII, so it is always a valid header value.
fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next else {
        return HOME.to_owned();
    };
    match local_path(next) {
        Some(path) => path,
        None => {
            tracing::warn!(next = %next.escape_debug(), "sign-in target is not a path of this server: ignored");
            HOME.to_owned()
        }
    }
}

fn local_path(next: &str) -> Option<String> {
    if !next.starts_with('/') || next.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let base = url::Url::parse("http://otter.invalid/").ok()?;
    let url = base.join(next).ok()?;
    if url.origin() != base.origin() || url.username() != "" || url.password().is_some() {
        return None;
    }
    let path = url.path();
    if !path.starts_with('/') || path.starts_with("//") {
        return None;
    }
    let mut out = path.to_owned();
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}

async fn form(Query(q): Query<NextPage>) -> Response {
    login_page(StatusCode::OK, q.next.as_deref(), None)
}

fn login_page(status: StatusCode, next: Option<&str>, error: Option<&str>) -> Response {
    let body = html! {
        main.login {
            h1 { "Otter" }
            p.muted { "Over-the-air firmware updates. Sign in with the admin token (" code { "OTTER_TOKEN" } ", or the file " code { "otter-data/admin-token" } ")." }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(safe_next(next));
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    (status, page::document("Sign in", None, body)).into_response()
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    next: Option<String>,
}

async fn sign_in(State(s): State<ApiState>, Form(f): Form<SignIn>) -> Response {
    if !token_ok(&s, Some(f.token.trim())).await {
        tracing::warn!("console sign-in with a wrong token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            f.next.as_deref(),
            Some("That is not the admin token."),
        );
    }
    crate::api::audit::record(&s, "console.sign_in", "console", serde_json::json!({})).await;
    let value = utf8_percent_encode(f.token.trim(), NON_ALPHANUMERIC);
    let cookie = format!("{COOKIE}={value}; Path=/; SameSite=Strict");
    let mut response = Redirect::to(&safe_next(f.next.as_deref())).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn sign_out() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("otter_token=; Path=/; SameSite=Strict; Max-Age=0"),
    );
    response
}
