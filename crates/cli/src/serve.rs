//! `otter serve`: settings come from flags, then environment (`OTTER_*`), then a TOML file
//! (`--config`), then the embedded defaults — in that order of precedence.

use anyhow::{Context, Result};
use clap::Args;
use otter_server::{Application, ServeConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML file with any of: data_dir, database, mqtt_listen, http_listen, public_url, url_ttl_secs, max_packet_size.
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
    /// Base URL devices download firmware from (for a proxy, CDN or port 80) [default: http://<http-listen>].
    #[arg(long, env = "OTTER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Lifetime of download links, in seconds [default: 86400].
    #[arg(long, env = "OTTER_URL_TTL_SECS")]
    url_ttl_secs: Option<u64>,
    /// Largest MQTT packet accepted, in bytes [default: 262144].
    #[arg(long, env = "OTTER_MAX_PACKET_SIZE")]
    max_packet_size: Option<usize>,
    /// Admin API token; when unset, one is generated into <data-dir>/admin-token.
    #[arg(long = "token", env = "OTTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    mqtt_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    public_url: Option<String>,
    url_ttl_secs: Option<u64>,
    max_packet_size: Option<usize>,
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
        admin_token: args.token,
        database: args.database.or(file.database),
        ..defaults
    })
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let app = Application::build(resolve(args)?).await?;
    eprintln!(
        "otter: MQTT on {}, HTTP on http://{}",
        app.mqtt_addr(),
        app.http_addr()
    );
    app.run_until_stopped(crate::shutdown_signal()).await
}
