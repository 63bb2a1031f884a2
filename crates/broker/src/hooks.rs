//! The MQTT engine hooks that enforce Otter's broker rules.
//!
//! One handler is registered for five hook points:
//! - `ClientAuthenticate`: asks the [`Gate`]; refusals become CONNACK 4 / 5.
//! - `ClientConnected` / `ClientDisconnected`: online state and takeover.
//! - `MessagePublishCheckAcl`: the publish ACL *and* the only place messages
//!   are ingested — the engine's `MessagePublish` hook runs before the ACL, so
//!   ingesting there would let refused messages through.
//! - `MessageExpiryCheck`: runs for every delivery to a client; anything that
//!   is not an in-process publish on one of the receiver's own topics is
//!   dropped here, so wildcard or overlapping subscriptions can never leak
//!   another client's traffic nor duplicate a message.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, From, FromType, Id, Publish, PublishAclResult, Reason,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::registry::{ClientIdTaken, Denied, Registry};
use crate::{BrokerEvent, Gate, Login, Refusal};

/// Substring of the engine's decode error for an over-limit packet.
const TOO_LARGE: &str = "Max size exceeded";

/// The hook handler; cheap to clone (one clone per registered hook point).
pub(crate) struct Hooks<G: Gate> {
    pub gate: Arc<G>,
    pub registry: Arc<Registry<Id, G::Identity>>,
    pub events: mpsc::Sender<BrokerEvent<G::Identity>>,
    /// Sender id of in-process publishes; the only origin ever delivered.
    pub sender: Id,
}

impl<G: Gate> Clone for Hooks<G> {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            registry: self.registry.clone(),
            events: self.events.clone(),
            sender: self.sender.clone(),
        }
    }
}

/// Registers and enables the handler on the engine's hook manager.
pub(crate) async fn register<G: Gate>(scx: &ServerContext, hooks: Hooks<G>) {
    let register = scx.extends.hook_mgr().register();
    for typ in [
        Type::ClientAuthenticate,
        Type::ClientConnected,
        Type::ClientDisconnected,
        Type::MessagePublishCheckAcl,
        Type::MessageExpiryCheck,
    ] {
        register.add(typ, Box::new(hooks.clone())).await;
    }
    register.start().await;
}

#[async_trait]
impl<G: Gate> Handler for Hooks<G> {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => self.authenticate(info).await,
            Parameter::ClientConnected(session) => {
                self.connected(session).await;
                (true, acc)
            }
            Parameter::ClientDisconnected(session, reason) => {
                self.disconnected(session, reason).await;
                (true, acc)
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                self.publish_acl(session, publish).await
            }
            Parameter::MessageExpiryCheck(session, from, publish) => {
                self.delivery_check(session, from, publish, acc)
            }
            _ => (true, acc),
        }
    }
}

impl<G: Gate> Hooks<G> {
    async fn authenticate(&self, info: &ConnectInfo) -> ReturnType {
        let login = Login {
            client_id: info.client_id().to_string(),
            username: info.username().map(|u| u.to_string()),
            password: info.password().map(|p| p.to_vec()),
            peer: info
                .ipaddress()
                .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            // Present only when the TLS listener verified a client certificate.
            cert_identity: info.cert().and_then(|c| c.common_name.clone()),
        };
        let client_id = login.client_id.clone();
        let result = match self.gate.authenticate(login).await {
            Ok(grant) => {
                let identity = grant.identity.clone();
                match self
                    .registry
                    .authenticated(info.id().clone(), &client_id, grant)
                {
                    Ok(()) => {
                        debug!(client_id, ?identity, "mqtt client authenticated");
                        AuthResult::Allow(false, None)
                    }
                    // The engine replaces sessions by client id: accepting this login would
                    // disconnect another device.
                    Err(ClientIdTaken(holder)) => {
                        warn!(
                            client_id,
                            ?identity,
                            ?holder,
                            "mqtt connect refused: the client id is another device's live session"
                        );
                        AuthResult::NotAuthorized
                    }
                }
            }
            Err(Refusal::BadCredentials) => {
                info!(client_id, "mqtt connect refused: bad credentials");
                AuthResult::BadUsernameOrPassword
            }
            Err(Refusal::NotAuthorized) => {
                info!(client_id, "mqtt connect refused: not authorized");
                AuthResult::NotAuthorized
            }
        };
        (false, Some(HookResult::AuthResult(result)))
    }

    async fn connected(&self, session: &Session) {
        let client_id = session.id.client_id.as_ref();
        let Some(arrival) = self.registry.connected(client_id, &session.id) else {
            warn!(client_id, "mqtt session connected without a grant");
            return;
        };
        if let Some(old) = arrival.kick {
            // The same device's older session under another client id: the engine only
            // replaces sessions by client id, so end it here.
            debug!(client_id, old = ?old, "mqtt session replaced by its device's new login");
            let scx = session.scx.clone();
            tokio::spawn(async move {
                let mut entry = scx.extends.shared().await.entry(old);
                if let Err(e) = entry.kick(true, true, true).await {
                    debug!(error = %e, "ending a replaced session failed");
                }
            });
        }
        for old in arrival.replaced {
            debug!(client_id, "mqtt session taken over");
            self.emit(BrokerEvent::Disconnected(old)).await;
        }
        debug!(client_id, identity = ?arrival.identity, "mqtt client connected");
        self.emit(BrokerEvent::Connected(arrival.identity)).await;
    }

    async fn disconnected(&self, session: &Session, reason: &Reason) {
        let client_id = session.id.client_id.as_ref();
        let reason = reason.to_string();
        if reason.contains(TOO_LARGE) {
            warn!(
                client_id,
                reason, "mqtt client disconnected: packet too large"
            );
        } else {
            debug!(client_id, reason, "mqtt client disconnected");
        }
        if let Some(identity) = self.registry.disconnected(client_id, &session.id) {
            self.emit(BrokerEvent::Disconnected(identity)).await;
        }
    }

    async fn publish_acl(&self, session: &Session, publish: &Publish) -> ReturnType {
        let client_id = session.id.client_id.as_ref();
        let topic: &str = publish.topic.as_ref();
        let verdict = match self.registry.may_publish(client_id, &session.id, topic) {
            Ok(from) => {
                let payload = publish.payload.clone();
                let event = BrokerEvent::Message {
                    from,
                    topic: topic.to_owned(),
                    payload,
                };
                self.emit(event).await;
                PublishAclResult::allow()
            }
            Err(Denied::Topic(identity)) => {
                warn!(
                    client_id,
                    ?identity,
                    topic,
                    "mqtt publish to a topic not granted, dropped"
                );
                PublishAclResult::rejected(false, None)
            }
            Err(Denied::Flooding(identity)) => {
                warn!(
                    client_id,
                    ?identity,
                    "mqtt client over its publish rate: disconnected"
                );
                PublishAclResult::rejected(true, None)
            }
            Err(Denied::NotOnline) => {
                warn!(
                    client_id,
                    topic, "mqtt publish from a stale session, dropped"
                );
                PublishAclResult::rejected(false, None)
            }
        };
        (false, Some(HookResult::PublishAclResult(verdict)))
    }

    /// Lets a delivery through only if it is an in-process publish on one of
    /// the receiver's own topics; everything else is dropped as "expired".
    fn delivery_check(
        &self,
        session: &Session,
        from: &From,
        publish: &Publish,
        acc: Option<HookResult>,
    ) -> ReturnType {
        let client_id = session.id.client_id.as_ref();
        let topic: &str = publish.topic.as_ref();
        let ours = matches!(from.typ(), FromType::System) && from.id == self.sender;
        if ours && self.registry.may_receive(client_id, &session.id, topic) {
            return (true, acc);
        }
        debug!(client_id, topic, from = %from.id, "mqtt delivery suppressed");
        (false, Some(HookResult::MessageExpiry))
    }

    async fn emit(&self, event: BrokerEvent<G::Identity>) {
        if self.events.send(event).await.is_err() {
            debug!("broker event receiver is gone; event dropped");
        }
    }
}
