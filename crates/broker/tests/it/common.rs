//! Shared test fixtures: a HashMap gate, broker start-up, and an MQTT client
//! wrapper that surfaces incoming packets on a channel.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use otter_broker::{Broker, BrokerConfig, BrokerEvent, Gate, Grant, Login, Refusal};
use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(5);
pub const QUIET: Duration = Duration::from_millis(600);

/// A client id far beyond MQTT 3.1's 23 characters, as vendors use them.
pub fn long_id() -> String {
    format!(
        "pk123.device-0001|securemode=2,signmethod=hmacsha256,timestamp=1700000000000|{}",
        "x".repeat(120)
    )
}

struct Device {
    secret: String,
    identity: String,
    publish: Vec<String>,
    receive: Vec<String>,
}

/// Gate backed by a map of client ids to secrets and topics.
pub struct MapGate {
    devices: HashMap<String, Device>,
}

impl MapGate {
    pub fn standard() -> Self {
        let mut devices = HashMap::new();
        for (client_id, identity, secret, up, down) in [
            ("dev-a".to_owned(), "A", "sa", "up/a", "down/a"),
            ("dev-b".to_owned(), "B", "sb", "up/b", "down/b"),
            (long_id(), "L", "sl", "up/l", "down/l"),
        ] {
            let device = Device {
                secret: secret.to_owned(),
                identity: identity.to_owned(),
                publish: vec![up.to_owned()],
                receive: vec![down.to_owned()],
            };
            devices.insert(client_id, device);
        }
        Self { devices }
    }
}

impl Gate for MapGate {
    type Identity = String;

    async fn authenticate(&self, login: Login) -> Result<Grant<String>, Refusal> {
        let device = self
            .devices
            .get(&login.client_id)
            .ok_or(Refusal::NotAuthorized)?;
        if login.password.as_deref() != Some(device.secret.as_bytes()) {
            return Err(Refusal::BadCredentials);
        }
        assert!(login.peer.ip().is_loopback(), "peer address is reported");
        Ok(Grant {
            identity: device.identity.clone(),
            publish_topics: device.publish.clone(),
            receive_topics: device.receive.clone(),
        })
    }
}

pub struct TestBroker {
    pub broker: Broker<String>,
    pub events: mpsc::Receiver<BrokerEvent<String>>,
}

pub async fn start() -> TestBroker {
    start_with(BrokerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))).await
}

pub async fn start_with(cfg: BrokerConfig) -> TestBroker {
    let (tx, events) = mpsc::channel(64);
    let broker = Broker::start(cfg, Arc::new(MapGate::standard()), tx)
        .await
        .expect("broker starts");
    assert_ne!(broker.local_addr().port(), 0, "real port is reported");
    TestBroker { broker, events }
}

impl TestBroker {
    pub async fn next_event(&mut self) -> BrokerEvent<String> {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("broker event within timeout")
            .expect("event channel open")
    }

    pub async fn assert_no_event(&mut self) {
        if let Ok(ev) = tokio::time::timeout(QUIET, self.events.recv()).await {
            panic!("unexpected broker event: {ev:?}");
        }
    }

    /// Connects and consumes the resulting `Connected` event.
    pub async fn online(&mut self, client_id: &str, secret: &str) -> Client {
        let client = connect(self.broker.local_addr(), client_id, secret, None)
            .await
            .expect("connects");
        assert!(matches!(self.next_event().await, BrokerEvent::Connected(_)));
        client
    }
}

/// An MQTT 3.1.1 client whose incoming packets arrive on `incoming`.
pub struct Client {
    pub client: AsyncClient,
    pub incoming: mpsc::UnboundedReceiver<Packet>,
    pub driver: JoinHandle<ConnectionError>,
}

pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    secret: &str,
    will: Option<LastWill>,
) -> Result<Client, ConnectionError> {
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_credentials(client_id, secret);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    if let Some(will) = will {
        opts.set_last_will(will);
    }
    let (client, mut eventloop) = otter_testkit::mqtt::connect(opts, WAIT).await?;
    let (tx, incoming) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    let _ = tx.send(packet);
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => return e,
            }
        }
    });
    Ok(Client {
        client,
        incoming,
        driver,
    })
}

impl Client {
    /// The next PUBLISH received, or `None` if none arrives within `wait`.
    pub async fn next_publish(&mut self, wait: Duration) -> Option<rumqttc::Publish> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(Packet::Publish(p))) => return Some(p),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Subscribes and returns the granted QoS codes from the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe queued");
        // Tencent SDKs give up after ~2 s without a SUBACK.
        let next = tokio::time::timeout(Duration::from_secs(2), self.incoming.recv()).await;
        match next {
            Ok(Some(Packet::SubAck(ack))) => ack.return_codes,
            Ok(Some(other)) => panic!("unexpected packet before SUBACK: {other:?}"),
            Ok(None) => panic!("connection closed before SUBACK"),
            Err(_) => panic!("no SUBACK within 2 s"),
        }
    }

    /// Asserts exactly one PUBLISH arrives and returns it.
    pub async fn expect_once(&mut self) -> rumqttc::Publish {
        let first = self.next_publish(WAIT).await.expect("a publish arrives");
        if let Some(dup) = self.next_publish(QUIET).await {
            panic!("delivered twice: {first:?} then {dup:?}");
        }
        first
    }
}

pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}
