//! otter-broker: Otter's embedded MQTT broker (rmqtt underneath), one fulfilment of the
//! broker contract in otter-mqtt.
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

use std::net::SocketAddr;
use std::path::PathBuf;

pub use registry::PublishLimit;
pub use server::Broker;

// The contract every broker fulfils (otter-mqtt), re-exported for this crate's users.
pub use otter_mqtt::{BrokerError, BrokerEvent, Gate, Grant, Login, Publish, Refusal};

/// Log filter directives that keep the MQTT engine's own logging quiet.
///
/// The engine logs through the `log` facade (connection refusals at `info`);
/// append these to an `EnvFilter` when `log` records are bridged into tracing.
pub const ENGINE_LOG_DIRECTIVES: &str =
    "rmqtt=warn,rmqtt_net=warn,rmqtt_codec=warn,rmqtt_utils=warn";

/// How to run a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Address of the plaintext listener; port 0 picks a free port (see [`Broker::local_addr`]).
    /// There is always one: when devices must not use plaintext, bind it to loopback so only
    /// in-process TLS terminators (such as the TLS-PSK one) reach it.
    pub listen: SocketAddr,
    /// An additional MQTT-over-TLS listener.
    pub tls: Option<TlsListen>,
    /// An additional plaintext listener for TLS terminators running in front of the broker
    /// (such as otter-psk): every connection must open with a PROXY protocol (v1 or v2) header
    /// naming the device's real address, which the gate then sees as [`Login::peer`]. Bind it
    /// to loopback: whoever can reach it can claim any peer address.
    pub proxied: Option<SocketAddr>,
    /// Largest accepted MQTT packet (remaining length) in bytes; bigger
    /// packets disconnect the sender.
    pub max_packet_size: usize,
    /// Publishes allowed per client; a client over it is disconnected. `None`: unlimited.
    pub publish_limit: Option<PublishLimit>,
    /// How long a new connection may take to complete its CONNECT, on every listener (TLS
    /// handshake, PROXY header and CONNECT packet each within it); a socket that stays silent
    /// is closed.
    pub connect_timeout: std::time::Duration,
}

impl BrokerConfig {
    /// Default maximum packet size: 256 KiB.
    pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024;
    /// Default CONNECT deadline: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    /// A config listening on `listen` with the default packet size limit.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            tls: None,
            proxied: None,
            max_packet_size: Self::DEFAULT_MAX_PACKET_SIZE,
            publish_limit: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::new(SocketAddr::from(([0, 0, 0, 0], 1883)))
    }
}

/// An MQTT-over-TLS listener (rustls; TLS 1.2 and 1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// Address to listen on (8883 by convention); port 0 picks a free port.
    pub listen: SocketAddr,
    /// PEM certificate chain of the server, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the server (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of CAs that issue device certificates. When set, every client of this
    /// listener must present a certificate they issued (the engine cannot make it optional),
    /// and its CN reaches the [`Gate`] as [`Login::cert_identity`].
    pub client_ca: Option<PathBuf>,
}

impl TlsListen {
    /// Conventional MQTT-over-TLS port.
    pub const DEFAULT_PORT: u16 = 8883;
}
