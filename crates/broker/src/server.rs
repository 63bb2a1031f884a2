//! The broker handle: starting the MQTT engine, in-process publish, shutdown.
//!
//! Each [`Broker`] owns its own engine context (sessions, router, hooks), so
//! several brokers can run in one process. In-process publishes are not routed
//! through subscriptions: they are addressed to each online client whose
//! grant lists the topic, which is what makes receive topics "implicitly
//! subscribed" and guarantees exactly-once delivery however the client
//! subscribed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rmqtt::codec::types::Publish as CodecPublish;
use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, From, Id, Publish, QoS, TopicName};
use rmqtt::utils::timestamp_millis;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::hooks::{self, Hooks};
use crate::registry::Registry;
use crate::{BrokerConfig, BrokerError, BrokerEvent, Gate};

/// Client id of the in-process publisher (never a real MQTT client).
const SENDER_CLIENT_ID: &str = "$otter/broker";

/// Handle to a running broker; clones share the same broker.
pub struct Broker<I> {
    inner: Arc<Inner<I>>,
}

impl<I> Clone for Broker<I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<I> {
    scx: ServerContext,
    registry: Arc<Registry<Id, I>>,
    sender: Id,
    local_addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl<I> Drop for Inner<I> {
    /// Dropping the last handle stops accepting connections.
    fn drop(&mut self) {
        if let Some(task) = take_task(&self.server) {
            task.abort();
        }
    }
}

fn take_task(slot: &Mutex<Option<JoinHandle<()>>>) -> Option<JoinHandle<()>> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

impl<I: Clone + Send + Sync + std::fmt::Debug + 'static> Broker<I> {
    /// Binds `cfg.listen` and starts serving MQTT; events go to `events`.
    pub async fn start<G: Gate<Identity = I>>(
        cfg: BrokerConfig,
        gate: Arc<G>,
        events: mpsc::Sender<BrokerEvent<I>>,
    ) -> Result<Self, BrokerError> {
        let bind_err = |e: rmqtt::Error| BrokerError::Bind {
            addr: cfg.listen,
            reason: e.to_string(),
        };
        let listener = listener_config(&cfg)
            .bind()
            .and_then(|l| l.tcp())
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;

        // No busy check: it samples system CPU load in a background loop.
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        let sender = Id::new(
            scx.node.id(),
            0,
            None,
            None,
            ClientId::from(SENDER_CLIENT_ID),
            None,
        );
        let registry = Arc::new(Registry::new());
        let handler = Hooks {
            gate,
            registry: registry.clone(),
            events,
            sender: sender.clone(),
        };
        hooks::register(&scx, handler).await;

        let server = MqttServer::new(scx.clone())
            .listener_by_id(listener, local_addr.port())
            .build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                warn!(error = %e, "mqtt broker stopped");
            }
        });
        info!(%local_addr, "mqtt broker listening");
        let server = Mutex::new(Some(task));
        Ok(Self {
            inner: Arc::new(Inner {
                scx,
                registry,
                sender,
                local_addr,
                server,
            }),
        })
    }

    /// The address actually bound (the real port when `listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Publishes `payload` on `topic` to every online client whose grant
    /// lists `topic` as a receive topic. No such client is not an error.
    pub async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError> {
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => return Err(BrokerError::InvalidQos(other)),
        };
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            return Err(BrokerError::InvalidTopic(topic.to_owned()));
        }
        let recipients = self.inner.registry.receivers(topic);
        if recipients.is_empty() {
            debug!(topic, "in-process publish has no online recipient");
        }
        let from = From::from_system(self.inner.sender.clone());
        for client_id in recipients {
            let publish = Publish::new(
                Box::new(CodecPublish {
                    dup: false,
                    retain: false,
                    qos,
                    topic: TopicName::from(topic),
                    packet_id: None,
                    payload: payload.clone(),
                    properties: Some(Default::default()),
                }),
                Some(ClientId::from(client_id)),
                None,
                Some(timestamp_millis()),
            );
            SessionState::forwards(&self.inner.scx, from.clone(), publish, false, None)
                .await
                .map_err(|e| BrokerError::Publish(e.to_string()))?;
        }
        Ok(())
    }

    /// Stops accepting connections and disconnects every client.
    ///
    /// `Disconnected` events for the dropped clients may still arrive shortly
    /// after this returns.
    pub async fn shutdown(self) {
        if let Some(task) = take_task(&self.inner.server) {
            task.abort();
            let _ = task.await;
        }
        let ids: Vec<Id> = self
            .inner
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|entry| entry.id())
            .collect();
        for id in ids {
            let mut entry = self.inner.scx.extends.shared().await.entry(id);
            if let Err(e) = entry.kick(true, true, true).await {
                debug!(error = %e, "kicking a session at shutdown failed");
            }
        }
        info!(local_addr = %self.inner.local_addr, "mqtt broker stopped");
    }
}

/// The engine's listener settings derived from our config.
fn listener_config(cfg: &BrokerConfig) -> Builder {
    Builder::new()
        .name("otter")
        .laddr(cfg.listen)
        .reuseaddr(Some(true))
        .nodelay(true)
        .max_packet_size(u32::try_from(cfg.max_packet_size).unwrap_or(u32::MAX))
        // Every CONNECT, with or without a user name, goes through the gate.
        .allow_anonymous(false)
        .max_qos_allowed(QoS::AtLeastOnce)
}
