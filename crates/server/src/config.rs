//! Settings of `otter serve`, already merged from flags, environment and config file by the CLI.

use crate::clock::{Clock, SystemClock};
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
    /// Base URL put in download links sent to devices; defaults to `http://{http_listen}`.
    pub public_url: Option<String>,
    /// Admin bearer token; generated into `<data_dir>/admin-token` when absent.
    pub admin_token: Option<String>,
    /// How long a download link stays valid.
    pub url_ttl: Duration,
    /// Largest MQTT packet accepted from a device.
    pub max_packet_size: usize,
    /// How often the campaign planner runs.
    pub tick: Duration,
    /// The planner's clock (a manual one in tests).
    pub clock: Arc<dyn Clock>,
}

impl ServeConfig {
    /// The embedded defaults of DESIGN.md, rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: None,
            mqtt_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            admin_token: None,
            url_ttl: Duration::from_secs(24 * 3600),
            max_packet_size: 256 * 1024,
            tick: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
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
