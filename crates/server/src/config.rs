//! Settings of `otter serve`, already merged from flags, environment and config file by the CLI.

use otter_broker::PublishLimit;
use otter_engine::clock::{Clock, SystemClock};
use otter_engine::throttle::ThrottleConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Folder of the embedded database, blobs and generated admin token.
    pub data_dir: PathBuf,
    /// Database URL (`postgres://…` for PostgreSQL, shared by several nodes); `None` is the
    /// embedded SQLite file `<data_dir>/otter.db`.
    pub database: Option<String>,
    /// Embedded MQTT broker listen address.
    pub mqtt_listen: SocketAddr,
    /// HTTP (API, downloads, metrics) listen address.
    pub http_listen: SocketAddr,
    /// A listener of its own for the operators' surface (the API, the console and `/metrics`);
    /// `http_listen` then serves devices only (downloads, `/healthz`, the broker hooks). `None`:
    /// everything on `http_listen`.
    pub admin_listen: Option<SocketAddr>,
    /// How long a console session lasts after sign-in.
    pub console_session_ttl: Duration,
    /// Base URL put in download links sent to devices; defaults to `http://{http_listen}`. Parsed
    /// at start (`links::PublicBase`): http or https, the scheme's default port dropped.
    pub public_url: Option<String>,
    /// Admin bearer token; generated into `<data_dir>/admin-token` when absent.
    pub admin_token: Option<String>,
    /// How long a download link stays valid.
    pub url_ttl: Duration,
    /// Largest MQTT packet accepted from a device.
    pub max_packet_size: usize,
    /// How long a new MQTT connection may take to send its CONNECT (on every listener) before
    /// it is closed.
    pub mqtt_connect_timeout: Duration,
    /// How often the campaign planner runs.
    pub tick: Duration,
    /// The planner's clock (a manual one in tests).
    pub clock: Arc<dyn Clock>,
    /// Key that seals device secrets at rest; `<data_dir>/secret-key` when absent.
    pub secret_key_file: Option<PathBuf>,
    /// Failed-login limits per client address and per device.
    pub login_throttle: ThrottleConfig,
    /// Largest firmware upload accepted, in bytes.
    pub max_firmware_size: u64,
    /// An existing MQTT broker to use instead of the embedded one (several nodes share it).
    pub broker: Option<ExternalBrokerConfig>,
    /// MQTT publishes allowed per device; a device over it is disconnected. `None`: unlimited.
    pub publish_limit: Option<PublishLimit>,
    /// Transport security: TLS listeners, client certificates, plaintext switches (docs/tls.md).
    pub tls: TlsConfig,
    /// Where firmware blobs live: a folder, or `s3://bucket[/prefix]` (docs/s3.md); `None` is
    /// `<data_dir>/blobs`.
    pub blobs: Option<String>,
    /// How to reach the S3 service of `s3://` blobs.
    pub s3: otter_blobs::S3Options,
    /// What download URLs pushes carry: Otter links (default) or S3 presigned URLs.
    pub download_mode: otter_engine::links::DownloadMode,
    /// Folder of per-product firmware signing keys (`{product}.pem`), kept out of the database;
    /// uploads without an offline signature are signed with them (docs/signing.md).
    pub signing_key_dir: Option<PathBuf>,
    /// Shared secret of the MQTT broker and Otter: an external broker sends it as a bearer token
    /// to the device auth hooks (`/api/v1/broker/*`, docs/external-broker.md), and Otter nodes
    /// log into the broker with it. `None`: the hooks are off.
    pub broker_secret: Option<String>,
}

/// TLS listeners of `otter serve`. All TLS listeners share one certificate and key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) for every TLS listener.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM bundle of the CAs that issue device certificates; makes the MQTT TLS listener require
    /// one, whose CN `{productId}/{deviceName}` then identifies the device without its secret.
    pub client_ca: Option<PathBuf>,
    /// MQTT over TLS listen address (conventionally port 8883).
    pub mqtt_listen: Option<SocketAddr>,
    /// MQTT over TLS-PSK listen address, for Tencent C SDK devices (identity = client id,
    /// key = the device secret). Needs no certificate.
    pub mqtt_psk_listen: Option<SocketAddr>,
    /// HTTPS listen address for the API, console, metrics and downloads.
    pub https_listen: Option<SocketAddr>,
    /// Do not serve plaintext MQTT to the network: the broker's plaintext listener is bound to
    /// 127.0.0.1 on a free port instead of `mqtt_listen`.
    pub no_plain_mqtt: bool,
    /// Do not serve plaintext HTTP at all (needs `https_listen`).
    pub no_plain_http: bool,
}

impl ServeConfig {
    /// The embedded defaults of DESIGN.md, rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: None,
            mqtt_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            console_session_ttl: Duration::from_secs(12 * 3600),
            public_url: None,
            admin_token: None,
            url_ttl: Duration::from_secs(24 * 3600),
            max_packet_size: 256 * 1024,
            mqtt_connect_timeout: otter_broker::BrokerConfig::DEFAULT_CONNECT_TIMEOUT,
            tick: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
            secret_key_file: None,
            login_throttle: ThrottleConfig::default(),
            max_firmware_size: 4 << 30,
            broker: None,
            publish_limit: Some(PublishLimit {
                per_sec: 20,
                burst: 100,
            }),
            tls: TlsConfig::default(),
            blobs: None,
            s3: otter_blobs::S3Options::default(),
            download_mode: otter_engine::links::DownloadMode::Otter,
            signing_key_dir: None,
            broker_secret: None,
        }
    }

    /// Ephemeral ports on loopback: what tests use.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            mqtt_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::new(data_dir)
        }
    }
}

/// External broker mode: this node logs into `url` as a privileged client (the broker's auth
/// must accept it as a superuser: Otter's hooks and plugin accept `otter-node` with the broker
/// secret), and shares the work with the other nodes on the same database.
#[derive(Debug, Clone)]
pub struct ExternalBrokerConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// PEM CA bundle that signed an `mqtts://` broker's certificate.
    pub ca: Option<Vec<u8>>,
    pub username: String,
    pub password: String,
    /// Client id and membership name; `otter-node-<random>` when absent.
    pub node_id: Option<String>,
    /// Subscribe to non-`$` topics as `$share/otter/…` (one node per message); turn off for
    /// brokers without shared subscriptions.
    pub shared_subscriptions: bool,
}
