//! otter-broker: Otter's embedded MQTT broker facade.
//!
//! Devices speak MQTT 3.1 / 3.1.1 to this broker; Otter itself talks to it in
//! process. The broker knows nothing of vendor dialects: the caller supplies a
//! [`Gate`] that authenticates a CONNECT and grants exact topic names the
//! client may publish to and receive from. Everything else is enforced here:
//!
//! - a refused CONNECT gets CONNACK 4 or 5;
//! - only PUBLISHes to granted topics become [`BrokerEvent::Message`], all
//!   others are dropped with a warning and reach nobody;
//! - SUBSCRIBE is always acknowledged with the requested QoS (capped at 1), but
//!   a client only ever receives [`Broker::publish`]ed messages on its own
//!   receive topics — delivered exactly once, subscribed or not.
//!
//! The MQTT engine underneath is an implementation detail of this crate and
//! never appears in its public API.

mod hooks;
mod registry;
mod server;

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;

pub use server::Broker;

/// Log filter directives that keep the MQTT engine's own logging quiet.
///
/// The engine logs through the `log` facade (connection refusals at `info`);
/// append these to an `EnvFilter` when `log` records are bridged into tracing.
pub const ENGINE_LOG_DIRECTIVES: &str =
    "rmqtt=warn,rmqtt_net=warn,rmqtt_codec=warn,rmqtt_utils=warn";

/// What a client presented in its CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The MQTT client identifier (may be far longer than 23 characters).
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// The client's TCP peer address (`0.0.0.0:0` if the transport has none).
    pub peer: SocketAddr,
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
    /// Identity attached to a connected client's events.
    type Identity: Clone + Send + Sync + std::fmt::Debug + 'static;

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

/// How to run a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Address to listen on; port 0 picks a free port (see [`Broker::local_addr`]).
    pub listen: SocketAddr,
    /// Largest accepted MQTT packet (remaining length) in bytes; bigger
    /// packets disconnect the sender.
    pub max_packet_size: usize,
}

impl BrokerConfig {
    /// Default maximum packet size: 256 KiB.
    pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024;

    /// A config listening on `listen` with the default packet size limit.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_packet_size: Self::DEFAULT_MAX_PACKET_SIZE,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::new(SocketAddr::from(([0, 0, 0, 0], 1883)))
    }
}

/// Errors from starting the broker or publishing through it.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("unsupported QoS {0} (only 0 and 1)")]
    InvalidQos(u8),
    #[error("invalid topic name {0:?}")]
    InvalidTopic(String),
    #[error("publish failed: {0}")]
    Publish(String),
}
