//! A client of an existing MQTT broker (Mosquitto, EMQX, VerneMQ, HiveMQ), for running Otter
//! nodes behind one broker or cluster instead of the embedded engine.
//!
//! Otter connects as one privileged client, subscribes to the devices' upstream topic filters
//! and publishes their downstream topics. Filters marked `shared` are subscribed as
//! `$share/otter/<filter>` so each message reaches one node of a group; plain ones reach every
//! node, and the caller decides which node handles what. Device authentication and ACL are the
//! external broker's job here (Otter's HTTP hooks or Mosquitto plugin); this client only moves
//! messages and reconnects (with backoff) when the broker goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::BrokerError;

/// Name of the shared-subscription group all Otter nodes join.
pub const SHARE_GROUP: &str = "otter";

/// How to reach the external broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// PEM CA bundle to verify an `mqtts://` broker with.
    pub ca: Option<Vec<u8>>,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub subscriptions: Vec<Subscription>,
    pub max_packet_size: usize,
}

/// One topic filter to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    /// Subscribe as `$share/otter/<filter>`: each message reaches one node.
    pub shared: bool,
}

impl Subscription {
    fn wire_filter(&self) -> String {
        if self.shared {
            format!("$share/{SHARE_GROUP}/{}", self.filter)
        } else {
            self.filter.clone()
        }
    }
}

/// A message a device published, as the broker delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
}

/// Handle to the connection; clones share it.
#[derive(Clone)]
pub struct ExternalBroker {
    client: AsyncClient,
    task: std::sync::Arc<JoinHandle<()>>,
    /// Whether the connection is up (its last event was not an error): readiness checks.
    connected: std::sync::Arc<AtomicBool>,
}

impl ExternalBroker {
    /// Connects (waiting for the first CONNACK, so bad settings fail at start-up), subscribes,
    /// and forwards every message to `messages` until shut down.
    pub async fn connect(
        cfg: ExternalConfig,
        messages: mpsc::Sender<Received>,
    ) -> Result<Self, BrokerError> {
        let options = options(&cfg)?;
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        first_connack(&mut eventloop, &cfg.url).await?;
        subscribe_all(&client, &cfg.subscriptions).await?;
        info!(url = %cfg.url, client_id = %cfg.client_id, "connected to the external MQTT broker");
        let resubscribe = client.clone();
        let connected = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(run(
            eventloop,
            resubscribe,
            cfg.subscriptions,
            messages,
            Arc::clone(&connected),
        ));
        Ok(Self {
            client,
            task: Arc::new(task),
            connected,
        })
    }

    /// Whether the connection to the broker is up now (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Publishes to a device topic (QoS 0 or 1).
    pub async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError> {
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => return Err(BrokerError::InvalidQos(other)),
        };
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            return Err(BrokerError::InvalidTopic(topic.to_owned()));
        }
        self.client
            .publish_bytes(topic, qos, false, payload)
            .await
            .map_err(|e| BrokerError::Publish(e.to_string()))
    }

    /// Disconnects cleanly.
    pub async fn shutdown(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

fn options(cfg: &ExternalConfig) -> Result<MqttOptions, BrokerError> {
    let bad = |reason: String| BrokerError::External {
        url: cfg.url.clone(),
        reason,
    };
    let (tls, rest) = if let Some(rest) = cfg.url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = cfg.url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(bad("expected mqtt://host:port or mqtts://host:port".into()));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .map_err(|_| bad(format!("bad port {port:?}")))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad("no host".into()));
    }
    let mut options = MqttOptions::new(&cfg.client_id, host, port);
    options.set_credentials(&cfg.username, &cfg.password);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    options.set_max_packet_size(cfg.max_packet_size, cfg.max_packet_size);
    options.set_inflight(1000);
    if tls {
        let ca = cfg
            .ca
            .clone()
            .ok_or_else(|| bad("mqtts:// needs a CA bundle (--broker-ca)".into()))?;
        // rustls needs a process-wide crypto provider; ring is the one already in the tree.
        let _ = rustls::crypto::ring::default_provider().install_default();
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            },
        ));
    }
    Ok(options)
}

async fn first_connack(eventloop: &mut EventLoop, url: &str) -> Result<(), BrokerError> {
    let err = |reason: String| BrokerError::External {
        url: url.to_owned(),
        reason,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| err("no CONNACK within 10 s".into()))?;
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                return Ok(());
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return Err(err(refusal(ack.code)));
            }
            Ok(_) => continue,
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                return Err(err(refusal(code)));
            }
            Err(rumqttc::ConnectionError::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                return Err(err(format!(
                    "connection refused (nothing listens there?): {e}"
                )));
            }
            Err(e) => return Err(err(e.to_string())),
        }
    }
}

/// A CONNACK refusal, in words.
fn refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => "refused the login: bad user name or password (--broker-username, --broker-password or --broker-secret)".into(),
        ConnectReturnCode::NotAuthorized => "refused the login: not authorized (--broker-username, --broker-password or --broker-secret)".into(),
        ConnectReturnCode::BadClientId => "refused the client id (--node-id)".into(),
        ConnectReturnCode::ServiceUnavailable => "refused the connection: service unavailable".into(),
        ConnectReturnCode::RefusedProtocolVersion => "refused the connection: MQTT 3.1.1 not supported".into(),
        other => format!("refused the connection: {other:?}"),
    }
}

async fn subscribe_all(client: &AsyncClient, subs: &[Subscription]) -> Result<(), BrokerError> {
    for sub in subs {
        client
            .subscribe(sub.wire_filter(), QoS::AtLeastOnce)
            .await
            .map_err(|e| BrokerError::Publish(e.to_string()))?;
    }
    Ok(())
}

/// Polls the connection forever: forwards publishes, resubscribes after every reconnect.
async fn run(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subs: Vec<Subscription>,
    messages: mpsc::Sender<Received>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let event = eventloop.poll().await;
        connected.store(event.is_ok(), Ordering::Relaxed);
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                backoff = Duration::from_millis(200);
                let received = Received {
                    topic: p.topic,
                    payload: p.payload,
                };
                if messages.send(received).await.is_err() {
                    debug!("external broker messages have no receiver; stopping");
                    return;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!("reconnected to the external MQTT broker");
                if let Err(e) = subscribe_all(&client, &subs).await {
                    warn!(error = %e, "resubscribing failed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "external MQTT broker connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::Publish for ExternalBroker {
    async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError> {
        ExternalBroker::publish(self, topic, payload, qos).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ExternalConfig {
        ExternalConfig {
            url: url.into(),
            ca: None,
            client_id: "otter-node-1".into(),
            username: "otter-node".into(),
            password: "s".into(),
            subscriptions: vec![],
            max_packet_size: 1 << 20,
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            options(&cfg("mqtt://h:1884")).unwrap().broker_address(),
            ("h".into(), 1884)
        );
        assert_eq!(
            options(&cfg("mqtt://h")).unwrap().broker_address(),
            ("h".into(), 1883)
        );
        for bad in ["http://h", "mqtt://", "mqtt://h:x", "mqtts://h"] {
            assert!(options(&cfg(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_filters() {
        let s = Subscription {
            filter: "/ota/device/inform/+/+".into(),
            shared: true,
        };
        assert_eq!(s.wire_filter(), "$share/otter//ota/device/inform/+/+");
    }
}
