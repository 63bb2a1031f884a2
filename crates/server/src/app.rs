//! Building and running the whole server: `Application::build` binds every listener and opens
//! every store (so start-up errors surface before anything runs), `run_until_stopped` serves.

use crate::api::{self, ApiState};
use crate::campaigns::Campaigns;
use crate::config::ServeConfig;
use crate::engine::Engine;
use crate::gate::{DeviceGate, DeviceIdentity};
use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use otter_blobs::Blobs;
use otter_broker::{Broker, BrokerConfig};
use otter_download::{DownloadState, UrlSigner};
use otter_store::Store;
use rand::RngCore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::info;

pub struct Application {
    http: TcpListener,
    http_addr: SocketAddr,
    router: Router,
    broker: Broker<DeviceIdentity>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    admin_token: String,
}

impl Application {
    pub async fn build(config: ServeConfig) -> Result<Self> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        let store = match &config.database {
            Some(url) => Store::open(url).await,
            None => Store::open_sqlite(&dir.join("otter.db")).await,
        }
        .context("opening the database")?;
        store.reset_online().await?;
        let blobs =
            Blobs::open(&dir.join("blobs").to_string_lossy()).context("opening the blob store")?;
        let admin_token = match &config.admin_token {
            Some(token) if !token.is_empty() => token.clone(),
            _ => generated_token(dir)?,
        };

        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http_listen))?;
        let http_addr = http.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{http_addr}"));
        let signer = Arc::new(UrlSigner::new(
            &secret_key(dir, "download-key")?,
            &public_url,
        ));

        let (events_tx, events_rx) = mpsc::channel(4096);
        let gate = Arc::new(DeviceGate {
            store: store.clone(),
        });
        let broker_config = BrokerConfig {
            listen: config.mqtt_listen,
            max_packet_size: config.max_packet_size,
        };
        let broker = Broker::start(broker_config, gate, events_tx)
            .await
            .with_context(|| format!("starting MQTT on {}", config.mqtt_listen))?;
        let engine = Engine::new(
            store.clone(),
            broker.clone(),
            Arc::clone(&signer),
            config.url_ttl,
        );
        let engine_task = engine.spawn(events_rx);
        let campaigns = Arc::new(Campaigns {
            store: store.clone(),
            engine,
            clock: Arc::clone(&config.clock),
        });
        let planner_task = Arc::clone(&campaigns).spawn(config.tick);

        let api_state = ApiState {
            store,
            blobs: blobs.clone(),
            campaigns,
            admin_token: admin_token.clone().into(),
        };
        let prometheus = crate::telemetry::prometheus();
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/metrics",
                get(move || std::future::ready(prometheus.render())),
            )
            .merge(api::router(api_state.clone()))
            .merge(crate::console::router(api_state))
            .merge(otter_download::router(DownloadState { blobs, signer }))
            .layer(tower_http::trace::TraceLayer::new_for_http());

        info!(mqtt = %broker.local_addr(), http = %http_addr, %public_url, data_dir = %dir.display(), "otter is up");
        Ok(Self {
            http,
            http_addr,
            router,
            broker,
            tasks: vec![engine_task, planner_task],
            admin_token,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Serves until `shutdown` resolves, then stops the broker and drains the engine.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        otter_download::serve(self.http, self.router, shutdown)
            .await
            .context("HTTP server")?;
        self.broker.shutdown().await;
        self.tasks.iter().for_each(|t| t.abort());
        info!("otter stopped");
        Ok(())
    }
}

/// The admin token kept in `<data_dir>/admin-token` (mode 0600), made on first start.
fn generated_token(dir: &Path) -> Result<String> {
    let token = hex::encode(secret_key(dir, "admin-token")?);
    info!(path = %dir.join("admin-token").display(), "no OTTER_TOKEN set: using the admin token stored in this file");
    Ok(token)
}

/// A random 32-byte secret persisted under `dir/name` so it survives restarts.
fn secret_key(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()));
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    write_private(&path, &hex::encode(key))?;
    Ok(key.to_vec())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
