//! otter-mqtt: what Otter needs from an MQTT broker, whichever runs it.
//!
//! The device engine speaks to brokers only through this contract: a [`Gate`] turns a CONNECT
//! into a [`Grant`] of exact topics, the broker reports [`BrokerEvent`]s, and Otter sends
//! through [`Publish`]. The embedded broker (otter-broker, on rmqtt) and the client of an
//! external broker ([`external`], on rumqttc) both fulfil it.
//!
//! Architecture Invariant: no MQTT server engine here (rmqtt stays in otter-broker), so crates
//! that need the contract (the engine, the HTTP surface's broker hooks) never link one.

pub mod external;

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;

/// What a client presented in its CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The MQTT client identifier (may be far longer than 23 characters).
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// The client's TCP peer address (`0.0.0.0:0` if the transport has none).
    pub peer: SocketAddr,
    /// The common name (CN) of the client certificate the TLS listener verified against its
    /// client CA; `None` on plaintext connections and when no client CA is configured.
    pub cert_identity: Option<String>,
}

/// What an authenticated client may do. Topics are exact names, no wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<I> {
    /// Who the client is, handed back in every [`BrokerEvent`].
    pub identity: I,
    /// Topics the client may PUBLISH to; anything else is dropped.
    pub publish_topics: Vec<String>,
    /// Topics the client receives (implicitly subscribed on connect).
    pub receive_topics: Vec<String>,
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// CONNACK return code 4: bad user name or password.
    BadCredentials,
    /// CONNACK return code 5: not authorized.
    NotAuthorized,
}

/// Caller-supplied authentication: turns a [`Login`] into a [`Grant`].
pub trait Gate: Send + Sync + 'static {
    /// Identity attached to a connected client's events. Sessions are keyed on it: a login
    /// only ever replaces the live session of its own identity, whatever client id it presents.
    type Identity: Clone + Eq + std::hash::Hash + Send + Sync + std::fmt::Debug + 'static;

    /// Decides whether the client may connect, and with which topics.
    fn authenticate(
        &self,
        login: Login,
    ) -> impl Future<Output = Result<Grant<Self::Identity>, Refusal>> + Send;
}

/// Something Otter needs to know about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent<I> {
    /// The client completed CONNECT and is online.
    Connected(I),
    /// The client's connection ended (or was taken over by a newer one).
    Disconnected(I),
    /// The client published to one of its granted publish topics.
    Message {
        from: I,
        topic: String,
        payload: Bytes,
    },
}

/// Sends a message to the devices that receive `topic` (QoS 0 or 1). Dyn-compatible, so the
/// engine holds whichever broker the server chose.
#[async_trait::async_trait]
pub trait Publish: Send + Sync + 'static {
    async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), BrokerError>;
}

/// Errors from starting the broker or publishing through it.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot set up TLS on {addr}: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    #[error("external broker {url}: {reason}")]
    External { url: String, reason: String },
    #[error("unsupported QoS {0} (only 0 and 1)")]
    InvalidQos(u8),
    #[error("invalid topic name {0:?}")]
    InvalidTopic(String),
    #[error("publish failed: {0}")]
    Publish(String),
}
