//! Which listeners `otter serve` opens, from [`TlsConfig`]: plaintext and/or TLS for HTTP and
//! MQTT, and the TLS-PSK terminator for Tencent devices (docs/tls.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use otter_broker::{Broker, BrokerConfig, TlsListen};
use otter_download::HttpsListener;
use otter_psk::{PskConfig, PskTerminator};
use otter_store::Store;
use tokio::net::TcpListener;

use crate::config::{ServeConfig, TlsConfig};
use crate::psk::TencentPsk;
use otter_engine::gate::DeviceIdentity;
use otter_engine::secrets::SecretBox;

/// Where the broker's plaintext listener goes when plaintext MQTT is off: loopback only, for
/// nothing but local tools (the PSK terminator has its own listener).
const LOOPBACK_ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Refuses contradictory settings before anything is bound.
pub(crate) fn validate(tls: &TlsConfig) -> Result<()> {
    let needs_cert = tls.mqtt_listen.is_some() || tls.https_listen.is_some();
    if needs_cert && (tls.cert.is_none() || tls.key.is_none()) {
        bail!("TLS listeners need both --tls-cert and --tls-key");
    }
    if tls.client_ca.is_some() && tls.mqtt_listen.is_none() {
        bail!("--tls-client-ca needs --mqtt-tls-listen");
    }
    if tls.no_plain_http && tls.https_listen.is_none() {
        bail!("--no-plain-http needs --http-tls-listen");
    }
    if tls.no_plain_mqtt && tls.mqtt_listen.is_none() && tls.mqtt_psk_listen.is_none() {
        bail!("--no-plain-mqtt needs --mqtt-tls-listen or --mqtt-psk-listen");
    }
    Ok(())
}

/// The certificate and key paths (checked by [`validate`]).
fn cert_and_key(tls: &TlsConfig) -> Result<(PathBuf, PathBuf)> {
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Ok((cert.clone(), key.clone())),
        _ => bail!("TLS listeners need both --tls-cert and --tls-key"),
    }
}

/// The HTTP side's listeners.
pub(crate) struct HttpListeners {
    pub plain: Option<TcpListener>,
    pub https: Option<HttpsListener>,
    pub plain_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
}

impl HttpListeners {
    pub async fn bind(config: &ServeConfig) -> Result<Self> {
        let plain = match config.tls.no_plain_http {
            true => None,
            false => Some(
                TcpListener::bind(config.http_listen)
                    .await
                    .with_context(|| format!("binding HTTP on {}", config.http_listen))?,
            ),
        };
        let https = match config.tls.https_listen {
            Some(addr) => {
                let (cert, key) = cert_and_key(&config.tls)?;
                Some(
                    HttpsListener::bind(addr, &cert, &key)
                        .await
                        .with_context(|| format!("starting HTTPS on {addr}"))?,
                )
            }
            None => None,
        };
        Ok(Self {
            plain_addr: plain.as_ref().map(TcpListener::local_addr).transpose()?,
            https_addr: https.as_ref().map(HttpsListener::local_addr).transpose()?,
            plain,
            https,
        })
    }

    /// The address callers should use: HTTPS when plaintext is off.
    pub fn primary_addr(&self) -> SocketAddr {
        self.plain_addr
            .or(self.https_addr)
            .unwrap_or(LOOPBACK_ANY_PORT)
    }

    /// The base of download links when no public URL is configured: HTTPS when it is served.
    pub fn default_public_url(&self) -> String {
        match (self.https_addr, self.plain_addr) {
            (Some(addr), _) => format!("https://{addr}"),
            (None, Some(addr)) => format!("http://{addr}"),
            (None, None) => String::new(),
        }
    }
}

/// The broker's listeners: plaintext (or loopback-only), TLS, and the PROXY-protocol one the
/// PSK terminator feeds.
pub(crate) fn broker_config(config: &ServeConfig) -> Result<BrokerConfig> {
    let tls = &config.tls;
    let listen = match tls.no_plain_mqtt {
        true => LOOPBACK_ANY_PORT,
        false => config.mqtt_listen,
    };
    let tls_listen = match tls.mqtt_listen {
        Some(addr) => {
            let (cert, key) = cert_and_key(tls)?;
            Some(TlsListen {
                listen: addr,
                cert,
                key,
                client_ca: tls.client_ca.clone(),
            })
        }
        None => None,
    };
    Ok(BrokerConfig {
        listen,
        tls: tls_listen,
        proxied: tls.mqtt_psk_listen.map(|_| LOOPBACK_ANY_PORT),
        max_packet_size: config.max_packet_size,
        publish_limit: config.publish_limit,
        connect_timeout: config.mqtt_connect_timeout,
    })
}

/// Starts the TLS-PSK terminator when configured, piping into the broker's proxied listener.
pub(crate) async fn start_psk(
    config: &ServeConfig,
    broker: &Broker<DeviceIdentity>,
    store: Store,
    secrets: Arc<SecretBox>,
) -> Result<Option<PskTerminator>> {
    let (Some(listen), Some(upstream)) = (config.tls.mqtt_psk_listen, broker.proxied_local_addr())
    else {
        return Ok(None);
    };
    let mut psk = PskConfig::new(listen, upstream);
    psk.max_packet_size = config.max_packet_size;
    psk.handshake_timeout = config.mqtt_connect_timeout;
    let lookup = Arc::new(TencentPsk { store, secrets });
    let terminator = PskTerminator::start(psk, lookup)
        .await
        .with_context(|| format!("starting MQTT TLS-PSK on {listen}"))?;
    Ok(Some(terminator))
}
