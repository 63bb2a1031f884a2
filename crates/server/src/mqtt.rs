//! Where device MQTT goes: the embedded broker (one node, the default), or an existing broker
//! that several nodes share (`--broker mqtt://…`). The engine only publishes through otter-mqtt's
//! `Publish` and consumes `BrokerEvent`s; which broker that is is decided here, at start-up.

use bytes::Bytes;
use otter_broker::{Broker, BrokerError};
use otter_engine::gate::DeviceIdentity;
use otter_mqtt::external::ExternalBroker;
use std::net::SocketAddr;

pub(crate) enum Mqtt {
    Embedded(Broker<DeviceIdentity>),
    External(ExternalBroker),
}

#[async_trait::async_trait]
impl otter_mqtt::Publish for Mqtt {
    async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError> {
        match self {
            Self::Embedded(b) => b.publish(topic, payload, qos).await,
            Self::External(b) => b.publish(topic, payload, qos).await,
        }
    }
}

impl Mqtt {
    /// The embedded broker, if that is what runs.
    pub fn embedded(&self) -> Option<&Broker<DeviceIdentity>> {
        match self {
            Self::Embedded(b) => Some(b),
            Self::External(_) => None,
        }
    }

    /// The embedded broker's plaintext address; unspecified (port 0) with an external broker.
    pub fn local_addr(&self) -> SocketAddr {
        self.embedded()
            .map(Broker::local_addr)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Whether the node can reach its devices: the embedded broker always, an external one while
    /// the connection is up.
    pub fn is_connected(&self) -> bool {
        match self {
            Self::Embedded(_) => true,
            Self::External(b) => b.is_connected(),
        }
    }

    pub async fn shutdown(&self) {
        match self {
            Self::Embedded(b) => b.clone().shutdown().await,
            Self::External(b) => b.clone().shutdown().await,
        }
    }
}
