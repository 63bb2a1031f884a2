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
use std::time::Duration;

use bytes::Bytes;
use rmqtt::codec::types::Publish as CodecPublish;
use rmqtt::context::ServerContext;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, From, Id, Publish, QoS, TopicName};
use rmqtt::utils::timestamp_millis;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::hooks::{self, Hooks};
use crate::registry::Registry;
use crate::{BrokerConfig, BrokerError, BrokerEvent, Gate, TlsListen};

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
    tls_local_addr: Option<SocketAddr>,
    proxied_local_addr: Option<SocketAddr>,
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

impl<I: Clone + Eq + std::hash::Hash + Send + Sync + std::fmt::Debug + 'static> Broker<I> {
    /// Binds `cfg.listen` and starts serving MQTT; events go to `events`.
    pub async fn start<G: Gate<Identity = I>>(
        cfg: BrokerConfig,
        gate: Arc<G>,
        events: mpsc::Sender<BrokerEvent<I>>,
    ) -> Result<Self, BrokerError> {
        let (listener, local_addr) = bind(&cfg, cfg.listen, Kind::Plain)?;
        let tls = match &cfg.tls {
            Some(tls) => Some(bind(&cfg, tls.listen, Kind::Tls(tls))?),
            None => None,
        };
        let proxied = match cfg.proxied {
            Some(addr) => Some(bind(&cfg, addr, Kind::Proxied)?),
            None => None,
        };
        let tls_local_addr = tls.as_ref().map(|(_, addr)| *addr);
        let proxied_local_addr = proxied.as_ref().map(|(_, addr)| *addr);

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
        let registry = Arc::new(Registry::with_limit(cfg.publish_limit));
        let handler = Hooks {
            gate,
            registry: registry.clone(),
            events,
            sender: sender.clone(),
        };
        hooks::register(&scx, handler).await;

        let mut server = MqttServer::new(scx.clone()).listener_by_id(listener, local_addr.port());
        if let Some((l, addr)) = tls {
            server = server.listener_by_id(l, addr.port());
            info!(%addr, "mqtt over tls listening");
        }
        if let Some((l, addr)) = proxied {
            server = server.listener_by_id(l, addr.port());
            info!(%addr, "mqtt listening for tls terminators (proxy protocol)");
        }
        let server = server.build();
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
                tls_local_addr,
                proxied_local_addr,
                server,
            }),
        })
    }

    /// The address actually bound (the real port when `listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The address the TLS listener actually bound, when one is configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.inner.tls_local_addr
    }

    /// The address the PROXY-protocol listener for terminators actually bound, if any.
    pub fn proxied_local_addr(&self) -> Option<SocketAddr> {
        self.inner.proxied_local_addr
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

/// Which kind of engine listener to bind.
enum Kind<'a> {
    Plain,
    Tls(&'a TlsListen),
    Proxied,
}

/// Binds one engine listener and reports the address it got.
fn bind(
    cfg: &BrokerConfig,
    addr: SocketAddr,
    kind: Kind<'_>,
) -> Result<(Listener, SocketAddr), BrokerError> {
    let builder = listener_config(cfg, addr);
    let listener = match kind {
        Kind::Plain => builder
            .bind()
            .and_then(|l| l.tcp())
            .map_err(bind_error(addr))?,
        Kind::Proxied => builder
            .proxy_protocol(true)
            .bind()
            .and_then(|l| l.tcp())
            .map_err(bind_error(addr))?,
        Kind::Tls(tls) => {
            let listener = with_tls(builder, tls).bind().map_err(bind_error(addr))?;
            // The PEM files are read here: a bad file is a TLS error, not a bind error.
            listener.tls().map_err(|e| BrokerError::Tls {
                addr,
                reason: format!("{e:#}"),
            })?
        }
    };
    let local = listener.local_addr().map_err(bind_error(addr))?;
    Ok((listener, local))
}

fn bind_error(addr: SocketAddr) -> impl Fn(rmqtt::Error) -> BrokerError {
    move |e| BrokerError::Bind {
        addr,
        reason: e.to_string(),
    }
}

/// The engine's listener settings derived from our config.
fn listener_config(cfg: &BrokerConfig, addr: SocketAddr) -> Builder {
    Builder::new()
        .name("otter")
        .laddr(addr)
        .reuseaddr(Some(true))
        .nodelay(true)
        .max_packet_size(u32::try_from(cfg.max_packet_size).unwrap_or(u32::MAX))
        // A connection that has not sent its CONNECT by then is closed (the engine's version
        // probe is bounded by it too: vendor/rmqtt-net/VENDORED.md).
        .handshake_timeout(cfg.connect_timeout)
        .proxy_protocol_timeout(cfg.connect_timeout.min(Duration::from_secs(5)))
        // Every CONNECT, with or without a user name, goes through the gate.
        .allow_anonymous(false)
        .max_qos_allowed(QoS::AtLeastOnce)
}

/// TLS settings: with a client CA, client certificates are required and their subject is
/// handed to the hooks (never substituted for the user name).
fn with_tls(builder: Builder, tls: &TlsListen) -> Builder {
    let path = |p: &std::path::Path| Some(p.to_string_lossy().into_owned());
    let mut builder = builder;
    builder.tls_cert = path(&tls.cert);
    builder.tls_key = path(&tls.key);
    if let Some(ca) = &tls.client_ca {
        builder.tls_client_ca_certs = path(ca);
        builder.tls_cross_certificate = true;
        builder.collect_cert_info = true;
    }
    builder
}

#[async_trait::async_trait]
impl<I: Clone + Eq + std::hash::Hash + Send + Sync + std::fmt::Debug + 'static> otter_mqtt::Publish
    for Broker<I>
{
    async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError> {
        Broker::publish(self, topic, payload, qos).await
    }
}
