//! Device authentication and ACL for an external MQTT broker (docs/external-broker.md): EMQX 5's
//! HTTP authn/authz request and response shapes, answered by the same [`DeviceGate`] decision
//! the embedded broker uses. The Mosquitto plugin (crates/mosquitto-auth) calls these too.
//!
//! Not behind the API's bearer tokens: the broker proves itself with the shared broker secret
//! (`--broker-secret`), and without one these routes do not exist (404).

use super::ApiState;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use otter_api::ErrorBody;
use otter_api::broker::{AuthnRequest, AuthnResponse, AuthzRequest, AuthzResponse, Outcome};
use otter_engine::gate::DeviceGate;
use otter_mqtt::Gate as _;
use otter_mqtt::Login;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tracing::warn;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The MQTT user name Otter nodes log into the broker with; their password is the broker secret
/// and their client id starts with it too.
pub const NODE_USERNAME: &str = "otter-node";

/// Settings of the hooks, handed over in [`ApiState`].
#[derive(Clone)]
pub struct BrokerHooks {
    /// What the broker sends as `Authorization: Bearer …`, and the nodes' MQTT password.
    pub secret: Arc<str>,
    /// The device gate (with its failed-login throttle), as for the embedded broker.
    pub gate: Arc<DeviceGate>,
}

#[derive(Clone)]
pub struct Hooks {
    secret: Arc<str>,
    gate: Arc<DeviceGate>,
}

/// `POST /broker/authn` and `/broker/authz` (under `/api/v1`), or nothing when no secret is set.
pub fn routes(state: &ApiState) -> Router {
    let Some(config) = &state.broker_hooks else {
        return Router::new();
    };
    let hooks = Hooks {
        secret: Arc::clone(&config.secret),
        gate: Arc::clone(&config.gate),
    };
    let (router, _) = documented().with_state(hooks).split_for_parts();
    router
}

/// The routes and their documentation, from the handlers' annotations.
pub fn documented() -> OpenApiRouter<Hooks> {
    OpenApiRouter::default()
        .routes(routes!(authn))
        .routes(routes!(authz))
}

#[utoipa::path(post, path = "/broker/authn", tag = "broker", request_body = AuthnRequest,
    security(("broker_secret" = [])),
    responses((status = 200, description = "the decision", body = AuthnResponse), (status = 401, description = "missing or wrong broker secret", body = ErrorBody)))]
async fn authn(
    State(hooks): State<Hooks>,
    headers: HeaderMap,
    body: Result<Json<AuthnRequest>, JsonRejection>,
) -> Response {
    if !hooks.caller_is_broker(&headers) {
        return unauthorized();
    }
    let req = match body {
        Ok(Json(req)) => req,
        Err(rejection) => return rejection.into_response(),
    };
    let username = non_empty(req.username);
    if username.as_deref() == Some(NODE_USERNAME) {
        let ok = hooks.is_node(&req.clientid, req.password.as_deref());
        if !ok {
            warn!(client_id = %req.clientid, peer = ?req.peerhost, "broker login as an Otter node refused: wrong secret or client id");
        }
        return authn_answer(ok, ok);
    }
    let login = Login {
        client_id: req.clientid,
        username,
        password: req.password.map(String::into_bytes),
        peer: peer_addr(req.peerhost.as_deref()),
        cert_identity: None,
    };
    // The gate logs refusals and counts them for its throttle.
    let ok = hooks.gate.authenticate(login).await.is_ok();
    authn_answer(ok, false)
}

#[utoipa::path(post, path = "/broker/authz", tag = "broker", request_body = AuthzRequest,
    security(("broker_secret" = [])),
    responses((status = 200, description = "the decision", body = AuthzResponse), (status = 401, description = "missing or wrong broker secret", body = ErrorBody)))]
async fn authz(
    State(hooks): State<Hooks>,
    headers: HeaderMap,
    body: Result<Json<AuthzRequest>, JsonRejection>,
) -> Response {
    if !hooks.caller_is_broker(&headers) {
        return unauthorized();
    }
    let req = match body {
        Ok(Json(req)) => req,
        Err(rejection) => return rejection.into_response(),
    };
    let username = non_empty(req.username);
    // Only a node that passed authn (with the secret) can be connected under this user name.
    if username.as_deref() == Some(NODE_USERNAME) && req.clientid.starts_with(NODE_USERNAME) {
        return authz_answer(true);
    }
    let allowed = match hooks
        .gate
        .identify(&req.clientid, username.as_deref())
        .await
    {
        Ok(grant) => match req.action.as_str() {
            "publish" => grant.publish_topics.contains(&req.topic),
            // Exact topic names only: a wildcard filter never equals one.
            "subscribe" => grant.receive_topics.contains(&req.topic),
            _ => false,
        },
        Err(_) => false,
    };
    if !allowed {
        warn!(client_id = %req.clientid, peer = ?req.peerhost, action = %req.action, topic = %req.topic, "broker ACL check refused");
    }
    authz_answer(allowed)
}

impl Hooks {
    /// The request carries `Authorization: Bearer <broker secret>`.
    fn caller_is_broker(&self, headers: &HeaderMap) -> bool {
        let ok = secret_eq(super::auth::bearer(headers), &self.secret);
        if !ok {
            warn!("broker hook called without the right broker secret");
        }
        ok
    }

    fn is_node(&self, client_id: &str, password: Option<&str>) -> bool {
        client_id.starts_with(NODE_USERNAME) && password.is_some_and(|p| secret_eq(p, &self.secret))
    }
}

fn secret_eq(presented: &str, secret: &str) -> bool {
    !secret.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            presented.as_bytes(),
            secret.as_bytes(),
        ))
}

/// EMQX sends `""` for a placeholder the client did not fill (e.g. no user name).
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The device's address as the broker saw it, for the throttle; `0.0.0.0:0` when unknown.
fn peer_addr(peerhost: Option<&str>) -> SocketAddr {
    let ip = peerhost
        .and_then(|h| h.parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, 0)
}

fn authn_answer(allow: bool, is_superuser: bool) -> Response {
    let result = if allow { Outcome::Allow } else { Outcome::Deny };
    Json(AuthnResponse {
        result,
        is_superuser,
    })
    .into_response()
}

fn authz_answer(allow: bool) -> Response {
    let result = if allow { Outcome::Allow } else { Outcome::Deny };
    Json(AuthzResponse { result }).into_response()
}

/// 401: EMQX treats it as "ignore" (next authenticator, or its default deny).
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(ErrorBody {
            error: "missing or wrong broker secret".into(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addr_parses_ipv4_and_ipv6_and_defaults() {
        assert_eq!(peer_addr(Some("10.1.2.3")).ip().to_string(), "10.1.2.3");
        assert_eq!(peer_addr(Some("::1")).ip().to_string(), "::1");
        assert!(peer_addr(Some("nonsense")).ip().is_unspecified());
        assert!(peer_addr(None).ip().is_unspecified());
    }

    #[test]
    fn empty_secret_never_matches() {
        assert!(!secret_eq("", ""));
        assert!(secret_eq("s3", "s3"));
        assert!(!secret_eq("s3x", "s3"));
    }

    #[test]
    fn outcome_serializes_lowercase() {
        let v = serde_json::to_value(AuthnResponse {
            result: Outcome::Allow,
            is_superuser: false,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"result": "allow", "is_superuser": false})
        );
    }
}
