//! `otter serve`: settings come from flags, then environment (`OTTER_*`), then a TOML file
//! (`--config`), then the embedded defaults — in that order of precedence.

use anyhow::{Context, Result};
use clap::Args;
use otter_broker::PublishLimit;
use otter_server::{Application, ExternalBrokerConfig, ServeConfig, ThrottleConfig, TlsConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML file with any of: data_dir, database, mqtt_listen, http_listen, admin_listen, console_session_ttl, public_url, url_ttl_secs, max_packet_size, mqtt_connect_timeout_secs,
    /// mqtt_tls_listen, mqtt_psk_listen, http_tls_listen, tls_cert, tls_key, tls_client_ca, no_plain_mqtt, no_plain_http,
    /// secret_key_file, login_failures_per_address, login_failures_per_device, max_firmware_size, max_publish_rate,
    /// broker, broker_username, broker_ca, node_id, no_shared_subscriptions.
    /// S3 blobs (docs/s3.md): blobs, s3_endpoint, s3_region, s3_access_key_id, s3_secret_access_key, download_mode.
    #[arg(long, env = "OTTER_CONFIG")]
    config: Option<PathBuf>,
    /// Folder for the database, firmware blobs, keys and the generated admin token [default: ./otter-data].
    #[arg(long, env = "OTTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: postgres://user@host/db for PostgreSQL [default: SQLite in <data-dir>/otter.db].
    #[arg(long, env = "OTTER_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// MQTT listen address [default: 127.0.0.1:1883].
    #[arg(long, env = "OTTER_MQTT_LISTEN")]
    mqtt_listen: Option<SocketAddr>,
    /// HTTP listen address for the API, console, metrics and downloads [default: 127.0.0.1:8080].
    #[arg(long, env = "OTTER_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// A listener of its own for operators: the API, the web console and /metrics are then served only there, and --http-listen serves devices only (downloads /dl, /healthz, the broker hooks). The CLI's --server then names this address [default: off, everything on --http-listen].
    #[arg(long, env = "OTTER_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// How long a console sign-in lasts: seconds, or a number with s, m, h or d (e.g. 30m, 12h) [default: 12h].
    #[arg(long, env = "OTTER_CONSOLE_SESSION_TTL")]
    console_session_ttl: Option<String>,
    /// Base URL devices download firmware from (for a proxy, CDN or port 80); the scheme's default port is never written into links. Tencent and Alibaba devices need links on 80/443: a warning says when they are not [default: http://<http-listen>].
    #[arg(long, env = "OTTER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Lifetime of download links, in seconds [default: 86400].
    #[arg(long, env = "OTTER_URL_TTL_SECS")]
    url_ttl_secs: Option<u64>,
    /// Largest MQTT packet accepted, in bytes [default: 262144].
    #[arg(long, env = "OTTER_MAX_PACKET_SIZE")]
    max_packet_size: Option<usize>,
    /// Seconds a new MQTT connection has to send its CONNECT, on every MQTT listener; a silent socket is closed [default: 10].
    #[arg(long, env = "OTTER_MQTT_CONNECT_TIMEOUT_SECS")]
    mqtt_connect_timeout_secs: Option<u64>,
    /// Admin API token; when unset, one is generated into <data-dir>/admin-token.
    #[arg(long = "token", env = "OTTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// MQTT over TLS listen address, e.g. 0.0.0.0:8883 (needs --tls-cert and --tls-key) [default: off].
    #[arg(long, env = "OTTER_MQTT_TLS_LISTEN")]
    mqtt_tls_listen: Option<SocketAddr>,
    /// MQTT over TLS-PSK listen address for Tencent C SDK devices (PSK identity = client id, key = device secret) [default: off].
    #[arg(long, env = "OTTER_MQTT_PSK_LISTEN")]
    mqtt_psk_listen: Option<SocketAddr>,
    /// HTTPS listen address for the API, console, metrics and downloads (needs --tls-cert and --tls-key) [default: off].
    #[arg(long, env = "OTTER_HTTP_TLS_LISTEN")]
    http_tls_listen: Option<SocketAddr>,
    /// PEM certificate chain (leaf first) of the MQTT TLS and HTTPS listeners.
    #[arg(long, env = "OTTER_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "OTTER_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle for device certificates: the MQTT TLS listener then requires a client certificate, whose CN `{productId}/{deviceName}` identifies the device without a secret.
    #[arg(long, env = "OTTER_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Do not serve plaintext MQTT on --mqtt-listen (the broker keeps a loopback-only listener on a free port).
    #[arg(long, env = "OTTER_NO_PLAIN_MQTT")]
    no_plain_mqtt: bool,
    /// Do not serve plaintext HTTP on --http-listen (needs --http-tls-listen).
    #[arg(long, env = "OTTER_NO_PLAIN_HTTP")]
    no_plain_http: bool,
    /// Folder of per-product firmware signing keys (`<product>.pem`); uploads without an offline signature are signed with them (docs/signing.md).
    #[arg(long, env = "OTTER_SIGNING_KEY_DIR")]
    signing_key_dir: Option<PathBuf>,
    /// Where firmware blobs live: a folder, or s3://bucket[/prefix] shared by several nodes (docs/s3.md) [default: <data-dir>/blobs].
    #[arg(long, env = "OTTER_BLOBS")]
    blobs: Option<String>,
    /// Endpoint of an S3-compatible service for s3:// blobs, e.g. http://minio:9000 (path-style requests; http:// allows plain HTTP) [default: $AWS_ENDPOINT_URL, else AWS].
    #[arg(long, env = "OTTER_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Region S3 requests are signed for [default: $AWS_REGION, else us-east-1].
    #[arg(long, env = "OTTER_S3_REGION")]
    s3_region: Option<String>,
    /// S3 access key id; checked at start, with the bucket (docs/s3.md) [default: $AWS_ACCESS_KEY_ID, else on AWS the instance profile; required with --s3-endpoint].
    #[arg(long, env = "OTTER_S3_ACCESS_KEY_ID")]
    s3_access_key_id: Option<String>,
    /// S3 secret access key [default: $AWS_SECRET_ACCESS_KEY].
    #[arg(long, env = "OTTER_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// URLs pushes carry: `otter` (Otter's signed links, which every device SDK can use) or `presigned` (S3 presigned URLs, s3:// blobs only; an URL too long for Tencent devices falls back to an Otter link) [default: otter].
    #[arg(long, env = "OTTER_DOWNLOAD_MODE")]
    download_mode: Option<otter_server::DownloadMode>,
    /// File with the 32-byte hex key that seals device secrets in the database; keep it off the database host's backups [default: <data-dir>/secret-key, generated].
    #[arg(long, env = "OTTER_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// Ceiling of failed MQTT logins per client IP address per minute, beyond which the address is refused (CONNACK 5) for the rest of the minute; far above what a fleet behind one NAT address fails; 0 = no ceiling [default: 1000].
    #[arg(long, env = "OTTER_LOGIN_FAILURES_PER_ADDRESS")]
    login_failures_per_address: Option<u32>,
    /// Wrong secrets per minute for one device from one address (and logins per minute for one unknown device) before further logins under that key are slowed: checked one at a time, a second apart; a right secret still connects; 0 = no limit [default: 30].
    #[arg(long, env = "OTTER_LOGIN_FAILURES_PER_DEVICE")]
    login_failures_per_device: Option<u32>,
    /// MQTT messages a device may publish per second on average (bursts of 5× allowed); a device over it is disconnected; 0 = no limit [default: 20].
    #[arg(long, env = "OTTER_MAX_PUBLISH_RATE")]
    max_publish_rate: Option<u32>,
    /// Largest firmware upload accepted, in bytes [default: 4294967296].
    #[arg(long, env = "OTTER_MAX_FIRMWARE_SIZE")]
    max_firmware_size: Option<u64>,
    /// Use an existing MQTT broker instead of the embedded one, e.g. mqtt://10.0.0.5:1883 or mqtts://broker:8883; several nodes on one --database share it (DEPLOYMENT.md) [default: embedded broker].
    #[arg(long, env = "OTTER_BROKER")]
    broker: Option<String>,
    /// User name this node logs into --broker with (the broker must treat it as a superuser) [default: otter-node].
    #[arg(long, env = "OTTER_BROKER_USERNAME")]
    broker_username: Option<String>,
    /// Password this node logs into --broker with [default: the broker secret].
    #[arg(long, env = "OTTER_BROKER_PASSWORD", hide_env_values = true)]
    broker_password: Option<String>,
    /// Shared secret of the MQTT broker and Otter: the broker's auth hooks/plugin send it to /api/v1/broker/authn and /authz (docs/external-broker.md) [default: hooks off].
    #[arg(long, env = "OTTER_BROKER_SECRET", hide_env_values = true)]
    broker_secret: Option<String>,
    /// PEM CA bundle that signed an mqtts:// --broker's certificate.
    #[arg(long, env = "OTTER_BROKER_CA")]
    broker_ca: Option<PathBuf>,
    /// This node's name among the nodes (its MQTT client id) [default: otter-node-<random>].
    #[arg(long, env = "OTTER_NODE_ID")]
    node_id: Option<String>,
    /// Subscribe plainly to every topic, for brokers without shared subscriptions (each node then handles its partition of all devices).
    #[arg(long, env = "OTTER_NO_SHARED_SUBSCRIPTIONS")]
    no_shared_subscriptions: bool,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    mqtt_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    console_session_ttl: Option<String>,
    public_url: Option<String>,
    url_ttl_secs: Option<u64>,
    max_packet_size: Option<usize>,
    mqtt_connect_timeout_secs: Option<u64>,
    mqtt_tls_listen: Option<SocketAddr>,
    mqtt_psk_listen: Option<SocketAddr>,
    http_tls_listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    no_plain_mqtt: Option<bool>,
    no_plain_http: Option<bool>,
    secret_key_file: Option<PathBuf>,
    blobs: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    download_mode: Option<String>,
    login_failures_per_address: Option<u32>,
    login_failures_per_device: Option<u32>,
    max_firmware_size: Option<u64>,
    max_publish_rate: Option<u32>,
    broker: Option<String>,
    broker_username: Option<String>,
    broker_ca: Option<PathBuf>,
    node_id: Option<String>,
    no_shared_subscriptions: Option<bool>,
}

fn resolve(args: ServeArgs) -> Result<ServeConfig> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let defaults = ServeConfig::new(
        args.data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("otter-data")),
    );
    Ok(ServeConfig {
        mqtt_listen: args
            .mqtt_listen
            .or(file.mqtt_listen)
            .unwrap_or(defaults.mqtt_listen),
        http_listen: args
            .http_listen
            .or(file.http_listen)
            .unwrap_or(defaults.http_listen),
        admin_listen: args.admin_listen.or(file.admin_listen),
        console_session_ttl: match args.console_session_ttl.or(file.console_session_ttl) {
            Some(text) => {
                parse_duration(&text).with_context(|| format!("--console-session-ttl {text:?}"))?
            }
            None => defaults.console_session_ttl,
        },
        public_url: args.public_url.or(file.public_url),
        url_ttl: args
            .url_ttl_secs
            .or(file.url_ttl_secs)
            .map(Duration::from_secs)
            .unwrap_or(defaults.url_ttl),
        max_packet_size: args
            .max_packet_size
            .or(file.max_packet_size)
            .unwrap_or(defaults.max_packet_size),
        mqtt_connect_timeout: args
            .mqtt_connect_timeout_secs
            .or(file.mqtt_connect_timeout_secs)
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(defaults.mqtt_connect_timeout),
        admin_token: args.token,
        signing_key_dir: args.signing_key_dir,
        secret_key_file: args.secret_key_file.or(file.secret_key_file),
        login_throttle: ThrottleConfig {
            per_address: args
                .login_failures_per_address
                .or(file.login_failures_per_address)
                .unwrap_or(defaults.login_throttle.per_address),
            per_device: args
                .login_failures_per_device
                .or(file.login_failures_per_device)
                .unwrap_or(defaults.login_throttle.per_device),
            ..defaults.login_throttle
        },
        publish_limit: match args.max_publish_rate.or(file.max_publish_rate) {
            None => defaults.publish_limit,
            Some(0) => None,
            Some(per_sec) => Some(PublishLimit {
                per_sec,
                burst: per_sec.saturating_mul(5),
            }),
        },
        max_firmware_size: args
            .max_firmware_size
            .or(file.max_firmware_size)
            .unwrap_or(defaults.max_firmware_size),
        tls: TlsConfig {
            cert: args.tls_cert.or(file.tls_cert),
            key: args.tls_key.or(file.tls_key),
            client_ca: args.tls_client_ca.or(file.tls_client_ca),
            mqtt_listen: args.mqtt_tls_listen.or(file.mqtt_tls_listen),
            mqtt_psk_listen: args.mqtt_psk_listen.or(file.mqtt_psk_listen),
            https_listen: args.http_tls_listen.or(file.http_tls_listen),
            // A flag can only switch plaintext off; the file may say either.
            no_plain_mqtt: args.no_plain_mqtt || file.no_plain_mqtt.unwrap_or(false),
            no_plain_http: args.no_plain_http || file.no_plain_http.unwrap_or(false),
        },
        database: args.database.or(file.database),
        blobs: args.blobs.or(file.blobs),
        s3: {
            let s3 = otter_server::S3Options {
                endpoint: args.s3_endpoint.or(file.s3_endpoint),
                region: args.s3_region.or(file.s3_region),
                access_key_id: args.s3_access_key_id.or(file.s3_access_key_id),
                secret_access_key: args.s3_secret_access_key.or(file.s3_secret_access_key),
                allow_http: false,
            }
            .or_aws_env(|key| std::env::var(key).ok());
            // An http:// endpoint is the operator's explicit choice of plain HTTP.
            let plain = s3
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
            otter_server::S3Options {
                allow_http: plain,
                ..s3
            }
        },
        download_mode: match (args.download_mode, file.download_mode) {
            (Some(mode), _) => mode,
            (None, Some(mode)) => mode.parse().map_err(anyhow::Error::msg)?,
            (None, None) => defaults.download_mode,
        },
        broker_secret: args.broker_secret.clone().filter(|s| !s.is_empty()),
        broker: match args.broker.or(file.broker) {
            None => None,
            Some(url) => Some(ExternalBrokerConfig {
                url,
                ca: match args.broker_ca.or(file.broker_ca) {
                    Some(path) => Some(
                        std::fs::read(&path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    ),
                    None => None,
                },
                username: args
                    .broker_username
                    .or(file.broker_username)
                    .unwrap_or_else(|| "otter-node".into()),
                password: args
                    .broker_password
                    .or_else(|| args.broker_secret.clone())
                    .unwrap_or_default(),
                node_id: args.node_id.or(file.node_id),
                shared_subscriptions: !(args.no_shared_subscriptions
                    || file.no_shared_subscriptions.unwrap_or(false)),
            }),
        },
        ..defaults
    })
}

/// A duration: whole seconds, or a number followed by `s`, `m`, `h` or `d`; at least a second.
fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .context("expected a number of seconds, or a number with s, m, h or d")?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        other => anyhow::bail!("unknown unit {other:?}: use s, m, h or d"),
    };
    if secs == 0 {
        anyhow::bail!("must be at least one second");
    }
    Ok(Duration::from_secs(secs))
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let app = Application::build(resolve(args)?).await?;
    eprintln!("otter: {}", listening(&app));
    app.run_until_stopped(crate::shutdown_signal()).await
}

/// One line naming every listener, for the operator.
fn listening(app: &Application) -> String {
    let mut parts = vec![match app.external_broker() {
        Some(url) => format!("MQTT via {url}"),
        None => format!("MQTT on {}", app.mqtt_addr()),
    }];
    if let Some(addr) = app.mqtt_tls_addr() {
        parts.push(format!("MQTT/TLS on {addr}"));
    }
    if let Some(addr) = app.mqtt_psk_addr() {
        parts.push(format!("MQTT/TLS-PSK on {addr}"));
    }
    if app.https_addr() != Some(app.http_addr()) {
        parts.push(format!("HTTP on http://{}", app.http_addr()));
    }
    if let Some(addr) = app.https_addr() {
        parts.push(format!("HTTPS on https://{addr}"));
    }
    if let Some(addr) = app.admin_addr() {
        parts.push(format!("admin (API, console, metrics) on http://{addr}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ttls() {
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
