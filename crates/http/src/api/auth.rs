//! Who is calling the API, and may they do this? Callers present a bearer token: the admin token
//! (`OTTER_TOKEN` or `<data-dir>/admin-token`) or a scoped API token made with `otter token create`;
//! or the console's session cookie (`otter_session`, [`SESSION_COOKIE`]), opened by signing in as
//! an operator (name and password, [`super::operators`]) or with a token. A change made with the
//! cookie must also carry `X-Otter-Console: 1` ([`CONSOLE_HEADER`]), which the console's script
//! sends and a cross-site form cannot: with `SameSite=Strict`, a second guard against CSRF.
//! A scope allows what the scopes below it allow: `read` looks, `operate` runs rollouts (firmware,
//! verification, campaigns, tags), `admin` changes identities (products, devices, secrets, keys,
//! tokens, operators). The required scope is decided here, from the method and path, for every
//! route at once.

use super::{ApiError, ApiState};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

use sha2::{Digest, Sha256};

pub use otter_api::Scope;

/// An authenticated caller: who (for the audit log) and what they may do.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    pub scope: Scope,
    /// The API token presented, if it was one (a console session opened with it ends when the
    /// token is revoked).
    pub token_id: Option<i64>,
}

tokio::task_local! {
    /// The caller of the request being handled, for the audit log.
    static CALLER: Caller;
}

/// The actor of the request this task is handling ("admin" outside any request).
pub fn current_actor() -> String {
    CALLER
        .try_with(|c| c.actor.clone())
        .unwrap_or_else(|_| "admin".into())
}

/// Prefix of generated API tokens, so secret scanners and humans recognise them.
const TOKEN_PREFIX: &str = "otk_";

/// A new random token (shown once) and the hash the store keeps.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The caller a presented token identifies, if any.
pub async fn authenticate(s: &ApiState, presented: &str) -> Option<Caller> {
    if presented.is_empty() {
        return None;
    }
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        presented.as_bytes(),
        s.admin_token.as_bytes(),
    )) {
        return Some(Caller {
            actor: "admin".into(),
            scope: Scope::Admin,
            token_id: None,
        });
    }
    if !presented.starts_with(TOKEN_PREFIX) || presented.len() > 128 {
        return None;
    }
    // Looked up by hash: equality of hashes leaks nothing useful about the token.
    match s.store().await.use_api_token(&token_hash(presented)).await {
        Ok(Some(t)) => Some(Caller {
            actor: format!("token:{}", t.name),
            scope: Scope::parse(&t.scope)?,
            token_id: Some(t.id),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            None
        }
    }
}

/// The scope a request needs. Reading needs `read` (token listings need `admin`); changing
/// rollouts needs `operate`; anything else that changes state needs `admin`.
pub fn required_scope(method: &Method, path: &str) -> Scope {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if matches!(segments.first(), Some(&"tokens") | Some(&"operators")) {
        return Scope::Admin;
    }
    if method == Method::GET || method == Method::HEAD {
        return Scope::Read;
    }
    // Matched by position: a product or device may well be named "campaigns" or "tags".
    let operate = matches!(
        segments.as_slice(),
        ["campaigns", ..]
            | ["products", _, "firmware"]
            | ["products", _, "firmware", "verify"]
            | ["products", _, "devices", _, "tags"]
    ) || (method == Method::DELETE
        && matches!(segments.as_slice(), ["products", _, "firmware", _]));
    if operate {
        Scope::Operate
    } else {
        Scope::Admin
    }
}

/// The token of an `Authorization: Bearer <token>` header; empty when there is none.
pub fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The cookie of a console session: a random id, whose SHA-256 the store keeps.
pub const SESSION_COOKIE: &str = "otter_session";

/// The header a change made with the session cookie must carry (the console's script sends it).
pub const CONSOLE_HEADER: &str = "x-otter-console";

/// A new random session id (for the cookie) and the hash the store keeps.
pub fn new_session_id() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let id = hex::encode(bytes);
    let hash = token_hash(&id);
    (id, hash)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

/// The caller a console session cookie identifies, if the session is live.
pub async fn session_caller(s: &ApiState, session_id: &str) -> Option<Caller> {
    if session_id.is_empty() || session_id.len() > 128 {
        return None;
    }
    let now = otter_store::now_ms();
    match s
        .store()
        .await
        .console_session(&token_hash(session_id), now)
        .await
    {
        Ok(Some(session)) => Some(Caller {
            actor: session.actor,
            scope: Scope::parse(&session.scope)?,
            token_id: None,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "console session lookup failed");
            None
        }
    }
}

/// Opens a console session for `caller`; the session id for the cookie.
pub async fn open_session(s: &ApiState, caller: &Caller) -> Result<String, ApiError> {
    let (id, hash) = new_session_id();
    let ttl = i64::try_from(s.console_session_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = otter_store::now_ms().saturating_add(ttl);
    s.store()
        .await
        .create_console_session(&otter_store::NewConsoleSession {
            session_hash: &hash,
            actor: &caller.actor,
            scope: caller.scope.as_str(),
            token_id: caller.token_id,
            expires_at,
        })
        .await?;
    Ok(id)
}

/// Ends the console session with this id (sign-out).
pub async fn close_session(s: &ApiState, session_id: &str) -> Result<bool, ApiError> {
    Ok(s.store()
        .await
        .revoke_console_session(&token_hash(session_id))
        .await?)
}

/// How a request authenticated.
enum Credential {
    Bearer,
    Session,
}

/// The caller of a request: its bearer token, else its console session cookie.
async fn request_caller(s: &ApiState, headers: &HeaderMap) -> Option<(Caller, Credential)> {
    let presented = bearer(headers);
    if !presented.is_empty() {
        return authenticate(s, presented)
            .await
            .map(|c| (c, Credential::Bearer));
    }
    let session = cookie(headers, SESSION_COOKIE)?;
    session_caller(s, session)
        .await
        .map(|c| (c, Credential::Session))
}

/// Middleware: a valid token or console session with enough scope, or 401/403; the caller is
/// kept for the audit log.
pub async fn require_scope(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path().to_owned();
    let Some((caller, credential)) = request_caller(&state, request.headers()).await else {
        tracing::warn!(%path, "API request with a missing or wrong token");
        return Err(ApiError::Unauthorized);
    };
    let reads = request.method() == Method::GET || request.method() == Method::HEAD;
    let console_header = request
        .headers()
        .get(CONSOLE_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    if matches!(credential, Credential::Session) && !reads && !console_header {
        tracing::warn!(%path, actor = %caller.actor, "cookie-authenticated change without the console header: refused");
        return Err(ApiError::Forbidden(format!(
            "a change made with the console's session cookie must carry the header `X-Otter-Console: 1` (cross-site requests are refused); {} {} was not made",
            request.method(),
            path
        )));
    }
    let needed = required_scope(request.method(), &path);
    if caller.scope < needed {
        tracing::warn!(%path, actor = %caller.actor, needed = needed.as_str(), "API request beyond the token's scope");
        return Err(ApiError::Forbidden(format!(
            "this token's scope is {}; {} {} needs {}",
            caller.scope.as_str(),
            request.method(),
            path,
            needed.as_str()
        )));
    }
    Ok(CALLER.scope(caller, next.run(request)).await)
}

/// Runs `f` as `caller`: what it records in the audit log names them.
pub async fn acting_as<F: Future>(caller: Caller, f: F) -> F::Output {
    CALLER.scope(caller, f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_per_route() {
        let cases = [
            (Method::GET, "/products", Scope::Read),
            (Method::GET, "/campaigns/3/stream", Scope::Read),
            (Method::GET, "/tokens", Scope::Admin),
            (Method::POST, "/campaigns", Scope::Operate),
            (Method::POST, "/campaigns/3/cancel", Scope::Operate),
            (Method::POST, "/products/P/firmware", Scope::Operate),
            (Method::POST, "/products/P/firmware/verify", Scope::Operate),
            (Method::PUT, "/products/P/devices/d/tags", Scope::Operate),
            (Method::POST, "/products", Scope::Admin),
            (Method::POST, "/products/P/devices", Scope::Admin),
            (Method::POST, "/products/P/devices/d/secret", Scope::Admin),
            (Method::POST, "/products/P/keys", Scope::Admin),
            (Method::DELETE, "/tokens/4", Scope::Admin),
            (Method::GET, "/operators", Scope::Admin),
            (Method::DELETE, "/operators/alice", Scope::Admin),
            (Method::DELETE, "/products/P", Scope::Admin),
            (Method::DELETE, "/products/P/devices/d", Scope::Admin),
            (Method::DELETE, "/products/P/firmware/1.0.0", Scope::Operate),
            (
                Method::DELETE,
                "/products/P/firmware/verify",
                Scope::Operate,
            ),
            (Method::POST, "/products/P/firmware/signature", Scope::Admin),
            (Method::POST, "/products/campaigns/devices", Scope::Admin),
            (
                Method::POST,
                "/products/P/devices/tags/secret",
                Scope::Admin,
            ),
        ];
        for (method, path, scope) in cases {
            assert_eq!(required_scope(&method, path), scope, "{method} {path}");
        }
    }

    #[test]
    fn generated_tokens_are_unique_and_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(ha, token_hash(&a));
        assert_eq!(ha.len(), 64);
    }
}
