//! Who is calling the API, and may they do this? Callers present a bearer token: the admin token
//! (`OTTER_TOKEN` or `<data-dir>/admin-token`) or a scoped API token made with `otter token create`.
//! A scope allows what the scopes below it allow: `read` looks, `operate` runs rollouts (firmware,
//! verification, campaigns, tags), `admin` changes identities (products, devices, secrets, keys,
//! tokens). The required scope is decided here, from the method and path, for every route at once.

use super::{ApiError, ApiState};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
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
    if segments.first() == Some(&"tokens") {
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

/// Middleware: a valid token with enough scope, or 401/403; the caller is kept for the audit log.
pub async fn require_scope(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = bearer(request.headers());
    let path = request.uri().path().to_owned();
    let Some(caller) = authenticate(&state, presented).await else {
        tracing::warn!(%path, "API request with a missing or wrong token");
        return Err(ApiError::Unauthorized);
    };
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
