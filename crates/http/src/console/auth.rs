//! Sign-in as an operator (name and password) or with a token (the admin token or an API token):
//! a form, a server-side session, and the check every page goes through.
//!
//! A sign-in opens a session in the store (a random 32-byte id; only its SHA-256 is stored, with
//! the actor, scope and expiry) and sets it as the cookie `otter_session`: `HttpOnly` (no script
//! reads it), `SameSite=Strict`, `Max-Age` the session's lifetime, and `Secure` when the request
//! came over HTTPS (the HTTPS listener, or a proxy's `X-Forwarded-Proto: https`). Sign-out revokes
//! the session in the store, so a copied cookie stops working too.

use super::page;
use crate::api::ApiState;
use crate::api::auth::{Caller, SESSION_COOKIE};
use axum::Router;
use axum::extract::{Form, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/login", get(form).post(sign_in))
        .route("/logout", post(sign_out))
}

/// Pages need a live session; without one the browser is sent to the sign-in form. The page
/// is rendered as the session's caller (the audit log names them).
pub async fn require_session(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(caller) = session(&s, request.headers()).await {
        return crate::api::auth::acting_as(caller, next.run(request)).await;
    }
    let back = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next_param = utf8_percent_encode(back, NON_ALPHANUMERIC);
    Redirect::to(&format!("/login?next={next_param}")).into_response()
}

/// The caller of the request's console session, if it is live.
async fn session(s: &ApiState, headers: &HeaderMap) -> Option<Caller> {
    let id = crate::api::auth::cookie(headers, SESSION_COOKIE)?;
    crate::api::auth::session_caller(s, id).await
}

/// Whether the request came over HTTPS: on the HTTPS listener, or through a proxy that says so
/// (`X-Forwarded-Proto: https`; believing it can only make the cookie stricter).
fn over_https(request_extensions: &axum::http::Extensions, headers: &HeaderMap) -> bool {
    request_extensions
        .get::<otter_download::OverTls>()
        .is_some()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Clears the cookie of earlier versions (before server-side sessions), which held the admin token itself.
const OLD_TOKEN_COOKIE_CLEARED: &str = "otter_token=; Path=/; SameSite=Strict; Max-Age=0";

/// The `Set-Cookie` value of a session (or of its removal, with `None`).
fn session_cookie(id: Option<&str>, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
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
    login_page_for(status, next, error, "")
}

/// The sign-in form; `name` refills the operator name after a failed attempt.
fn login_page_for(
    status: StatusCode,
    next: Option<&str>,
    error: Option<&str>,
    name: &str,
) -> Response {
    let body = html! {
        main.login {
            h1 { "Otter" }
            p.muted { "Over-the-air firmware updates. Sign in with your operator name and password, or with a token: the admin token (" code { "OTTER_TOKEN" } ", or the file " code { "otter-data/admin-token" } ") or an API token." }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(safe_next(next));
                fieldset {
                    legend { "Operator" }
                    label for="name" { "Name" }
                    input #name type="text" name="name" value=(name) autocomplete="username" autocapitalize="none" spellcheck="false" autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password";
                }
                fieldset {
                    legend { "Or a token" }
                    label for="token" { "Admin token or API token" }
                    input #token type="password" name="token" autocomplete="off";
                }
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
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn sign_in(State(s): State<ApiState>, request: Request) -> Response {
    let secure = over_https(request.extensions(), request.headers());
    let Ok(Form(f)) = Form::<SignIn>::from_request(request, &s).await else {
        return login_page(
            StatusCode::BAD_REQUEST,
            None,
            Some("The sign-in form was not sent whole."),
        );
    };
    let token = f.token.trim();
    let name = f.name.trim();
    let caller = if !token.is_empty() {
        match crate::api::auth::authenticate(&s, token).await {
            Some(caller) => caller,
            None => {
                tracing::warn!("console sign-in with a wrong token");
                return login_page(
                    StatusCode::UNAUTHORIZED,
                    f.next.as_deref(),
                    Some("That is not the admin token or a live API token."),
                );
            }
        }
    } else if !name.is_empty() {
        match crate::api::operators::sign_in(&s, name, &f.password).await {
            Some(caller) => caller,
            None => {
                tracing::warn!(operator = %name.escape_debug(), "console sign-in with a wrong operator name or password");
                return login_page_for(
                    StatusCode::UNAUTHORIZED,
                    f.next.as_deref(),
                    Some("Wrong operator name or password (or the account is disabled)."),
                    name,
                );
            }
        }
    } else {
        return login_page(
            StatusCode::UNAUTHORIZED,
            f.next.as_deref(),
            Some("Enter your operator name and password, or a token."),
        );
    };
    let id = match crate::api::auth::open_session(&s, &caller).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "opening a console session failed");
            return login_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                f.next.as_deref(),
                Some("The server could not open a session; its log has the details."),
            );
        }
    };
    tracing::info!(actor = %caller.actor, scope = caller.scope.as_str(), "console sign-in");
    let detail = serde_json::json!({ "scope": caller.scope.as_str() });
    crate::api::auth::acting_as(
        caller,
        crate::api::audit::record(&s, "console.sign_in", "console", detail),
    )
    .await;
    let cookie = session_cookie(Some(&id), s.console_session_ttl.as_secs().max(1), secure);
    let mut response = Redirect::to(&safe_next(f.next.as_deref())).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(OLD_TOKEN_COOKIE_CLEARED),
    );
    response
}

/// Revokes the session in the store (a copy of the cookie stops working too) and clears the
/// cookie.
async fn sign_out(State(s): State<ApiState>, request: Request) -> Response {
    let secure = over_https(request.extensions(), request.headers());
    let id = crate::api::auth::cookie(request.headers(), SESSION_COOKIE);
    let caller = match id {
        Some(id) => crate::api::auth::session_caller(&s, id).await,
        None => None,
    };
    if let (Some(id), Some(caller)) = (id, caller) {
        match crate::api::auth::close_session(&s, id).await {
            Ok(_) => {
                tracing::info!(actor = %caller.actor, "console sign-out");
                let record = crate::api::audit::record(
                    &s,
                    "console.sign_out",
                    "console",
                    serde_json::json!({}),
                );
                crate::api::auth::acting_as(caller, record).await;
            }
            Err(e) => tracing::error!(error = %e, "ending a console session failed"),
        }
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(None, 0, secure)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(OLD_TOKEN_COOKIE_CLEARED),
    );
    response
}
