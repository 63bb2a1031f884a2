//! Where device MQTT goes: the embedded broker (one node, the default), or an existing broker
//! that several nodes share (`--broker mqtt://…`). The engine only publishes through [`Mqtt`]
//! and consumes `BrokerEvent`s; which of the two produced them is decided here, at start-up.

use crate::gate::DeviceIdentity;
use bytes::Bytes;
use otter_broker::external::ExternalBroker;
use otter_broker::{Broker, BrokerError};
use std::net::SocketAddr;

pub(crate) enum Mqtt {
    Embedded(Broker<DeviceIdentity>),
    External(ExternalBroker),
}

impl Mqtt {
    pub async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError> {
        match self {
            Self::Embedded(b) => b.publish(topic, payload, qos).await,
            Self::External(b) => b.publish(topic, payload, qos).await,
        }
    }

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

    pub async fn shutdown(&self) {
        match self {
            Self::Embedded(b) => b.clone().shutdown().await,
            Self::External(b) => b.clone().shutdown().await,
        }
    }
}
