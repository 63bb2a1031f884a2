//! Building and running the whole server: `Application::build` binds every listener and opens
//! every store (so start-up errors surface before anything runs), `run_until_stopped` serves.

use crate::config::ExternalBrokerConfig;
use crate::config::ServeConfig;
use crate::data_dir;
use crate::keys;
use crate::mqtt::Mqtt;
use crate::readiness::Readiness;
use crate::transport::{self, HttpListeners};
use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use otter_broker::Broker;
use otter_core::{DeviceName, ProductId};
use otter_download::{DownloadState, UrlSigner};
use otter_engine::external::Membership;
use otter_engine::gate::{DeviceGate, DeviceIdentity};
use otter_engine::links::{Links, PublicBase};
use otter_engine::secrets::{SEALED_PREFIX, SecretBox, SecretError};
use otter_engine::{Engine, EngineConfig};
use otter_http::{ApiState, BrokerHooks};
use otter_mqtt::BrokerEvent;
use otter_mqtt::external::{ExternalBroker, ExternalConfig};
use otter_store::Store;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub struct Application {
    http: HttpListeners,
    /// The operators' own listener (`--admin-listen`) and what it serves.
    admin: Option<(tokio::net::TcpListener, Router)>,
    psk: Option<otter_psk::PskTerminator>,
    router: Router,
    mqtt: Arc<Mqtt>,
    external_broker: Option<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    engine: Arc<Engine>,
    /// Held while this process serves the embedded database (see [`data_dir::own`]).
    _owner: Option<std::fs::File>,
    admin_token: String,
}

impl Application {
    pub async fn build(config: ServeConfig) -> Result<Self> {
        transport::validate(&config.tls)?;
        let dir = &config.data_dir;
        data_dir::private_dir(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        // The embedded database is this process's alone; PostgreSQL nodes coordinate themselves.
        let owner = match config.database {
            None => Some(data_dir::own(dir)?),
            Some(_) => None,
        };
        let store = match &config.database {
            Some(url) => Store::open(url)
                .await
                .with_context(|| format!("opening the database {}", without_password(url))),
            None => {
                let path = dir.join("otter.db");
                Store::open_sqlite(&path)
                    .await
                    .with_context(|| format!("opening the database {}", path.display()))
            }
        }?;
        let blobs = open_blobs(&config)?;
        // A store that cannot be used refuses the start here, not at the first upload.
        blobs
            .probe()
            .await
            .context("the blob store (--blobs) cannot be used")?;
        sweep_staging(&blobs).await;
        settle_withdrawn(&blobs, &store).await;
        let admin_token = match &config.admin_token {
            Some(token) if !token.is_empty() => token.clone(),
            _ => generated_token(dir)?,
        };

        let http = HttpListeners::bind(&config).await?;
        let http_addr = http.primary_addr();
        let admin_listener = match config.admin_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the admin listener on {addr}"))?,
            ),
            None => None,
        };
        // Links never carry the scheme's default port (Alibaba's C SDK cannot dial `host:80`).
        let public_url = match config.public_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => url.to_owned(),
            _ => http.default_public_url(),
        };
        let public_url = Arc::new(PublicBase::parse(&public_url)?);
        warn_of_link_port(&store, &public_url).await?;
        let signer = Arc::new(download_signer(dir, public_url.as_str())?);
        let links = Links::new(Arc::clone(&signer), blobs.clone(), config.download_mode)
            .map_err(anyhow::Error::msg)?;
        let (secrets, key_path) = secret_box(&config)?;
        let secrets = Arc::new(secrets);
        // Before sealing anything with it: a foreign key would seal plain secrets no other node
        // can open.
        check_secret_key(&store, &secrets, &key_path).await?;
        seal_stored_secrets(&store, &secrets).await?;

        let (events_tx, events_rx) = mpsc::channel(4096);
        let (mqtt, psk, mut tasks) = match &config.broker {
            None => {
                store.reset_online().await?;
                let (broker, psk) = start_embedded(&config, &store, &secrets, events_tx).await?;
                (Mqtt::Embedded(broker), psk, Vec::new())
            }
            Some(external) => {
                let (mqtt, tasks) = connect_external(external, &config, &store, events_tx).await?;
                (mqtt, None, tasks)
            }
        };
        let mqtt = Arc::new(mqtt);
        let (engine, engine_tasks) = Engine::start(
            EngineConfig {
                store: store.clone(),
                broker: Arc::clone(&mqtt) as Arc<dyn otter_mqtt::Publish>,
                links,
                url_ttl: config.url_ttl,
                clock: Arc::clone(&config.clock),
                tick: config.tick,
            },
            events_rx,
        );

        let broker_hooks = config.broker_secret.as_deref().map(|secret| BrokerHooks {
            secret: secret.into(),
            gate: Arc::new(DeviceGate::new(
                store.clone(),
                Arc::clone(&secrets),
                config.login_throttle,
            )),
        });
        let api_state = ApiState {
            broker_hooks,
            engine: Arc::clone(&engine),
            blobs: blobs.clone(),
            admin_token: admin_token.clone().into(),
            secrets,
            max_firmware_size: config.max_firmware_size,
            public_url: Arc::clone(&public_url),
            signing_key_dir: config.signing_key_dir.clone(),
            console_session_ttl: config.console_session_ttl,
        };
        let readiness = Readiness::new(store.clone(), blobs.clone(), Arc::clone(&mqtt));
        let readyz = get(move || readiness.clone().answer());
        let prometheus = crate::telemetry::prometheus();
        // The operators' surface: the API, the console and the metrics.
        let admin = Router::new()
            .route(
                "/metrics",
                get(move || std::future::ready(prometheus.render())),
            )
            .merge(otter_http::admin_router(api_state.clone()));
        // The devices' surface: downloads, the health check and the broker's auth hooks.
        let devices = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", readyz.clone())
            .merge(otter_http::device_router(&api_state))
            .merge(otter_download::router(DownloadState { blobs, signer }));
        let trace = tower_http::trace::TraceLayer::new_for_http();
        let (router, admin) = match admin_listener {
            None => (devices.merge(admin).layer(trace), None),
            Some(listener) => {
                let admin = admin
                    .route("/healthz", get(|| async { "ok" }))
                    .route("/readyz", readyz)
                    .layer(trace.clone());
                (devices.layer(trace), Some((listener, admin)))
            }
        };
        let admin_addr = admin.as_ref().map(|(l, _)| l.local_addr()).transpose()?;

        tasks.extend(engine_tasks);
        match admin_addr {
            Some(admin) => {
                info!(mqtt = %mqtt.local_addr(), http = %http_addr, %admin, %public_url, data_dir = %dir.display(), "otter is up (devices on http, the API, console and metrics on admin)")
            }
            None => {
                info!(mqtt = %mqtt.local_addr(), http = %http_addr, %public_url, data_dir = %dir.display(), "otter is up")
            }
        }
        Ok(Self {
            http,
            admin,
            psk,
            router,
            mqtt,
            external_broker: config.broker.as_ref().map(|b| b.url.clone()),
            tasks,
            engine,
            _owner: owner,
            admin_token,
        })
    }

    /// The plaintext HTTP address, or the HTTPS one when plaintext HTTP is off.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.primary_addr()
    }

    /// The operators' own listener (`--admin-listen`), when it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The HTTPS address, when HTTPS is served.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.http.https_addr
    }

    /// The broker's plaintext address (loopback-only when plaintext MQTT is off).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt.local_addr()
    }

    /// The MQTT-over-TLS address, when configured.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.mqtt.embedded().and_then(Broker::tls_local_addr)
    }

    /// The MQTT-over-TLS-PSK address, when configured.
    pub fn mqtt_psk_addr(&self) -> Option<SocketAddr> {
        self.psk.as_ref().map(otter_psk::PskTerminator::local_addr)
    }

    /// The external broker this node uses, if not the embedded one.
    pub fn external_broker(&self) -> Option<&str> {
        self.external_broker.as_deref()
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Serves until `shutdown` resolves, then stops the broker and drains the engine.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        // Both HTTP servers stop on the one shutdown signal.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin = self.admin.map(|(listener, router)| {
            tokio::spawn(otter_download::serve_all(
                Some(listener),
                None,
                router,
                stopped(stop_rx.clone()),
            ))
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let served = otter_download::serve_all(
            self.http.plain,
            self.http.https,
            self.router,
            stopped(stop_rx),
        )
        .await;
        if let Some(admin) = admin {
            admin
                .await
                .context("admin HTTP server")?
                .context("admin HTTP server")?;
        }
        served.context("HTTP server")?;
        drop(self.psk);
        self.mqtt.shutdown().await;
        self.engine.drain().await;
        self.tasks.iter().for_each(|t| t.abort());
        info!("otter stopped");
        Ok(())
    }
}

/// The embedded broker with its gate, and the TLS-PSK terminator in front of it when configured.
async fn start_embedded(
    config: &ServeConfig,
    store: &Store,
    secrets: &Arc<SecretBox>,
    events: mpsc::Sender<BrokerEvent<DeviceIdentity>>,
) -> Result<(Broker<DeviceIdentity>, Option<otter_psk::PskTerminator>)> {
    let gate = Arc::new(DeviceGate::new(
        store.clone(),
        Arc::clone(secrets),
        config.login_throttle,
    ));
    let broker = Broker::start(transport::broker_config(config)?, gate, events)
        .await
        .context("starting MQTT")?;
    let psk = transport::start_psk(config, &broker, store.clone(), Arc::clone(secrets)).await?;
    Ok((broker, psk))
}

/// Joins the nodes sharing an external broker: connects, and routes what it receives.
async fn connect_external(
    external: &ExternalBrokerConfig,
    config: &ServeConfig,
    store: &Store,
    events: mpsc::Sender<BrokerEvent<DeviceIdentity>>,
) -> Result<(Mqtt, Vec<tokio::task::JoinHandle<()>>)> {
    // Brokers recognise nodes by a client id starting with `otter-node` (docs/external-broker.md).
    let node_id = match external.node_id.clone() {
        Some(id) if id.starts_with("otter-node") => id,
        Some(id) => format!("otter-node-{id}"),
        None => random_node_id(),
    };
    let membership = Membership::new(node_id.clone());
    let (received_tx, received_rx) = mpsc::channel(4096);
    let client = ExternalBroker::connect(
        ExternalConfig {
            url: external.url.clone(),
            ca: external.ca.clone(),
            client_id: node_id.clone(),
            username: external.username.clone(),
            password: external.password.clone(),
            subscriptions: otter_engine::external::subscriptions(external.shared_subscriptions),
            max_packet_size: config.max_packet_size.max(1 << 20),
        },
        received_tx,
    )
    .await
    .with_context(|| format!("connecting to the MQTT broker {}", external.url))?;
    let tasks = vec![
        membership.spawn_heartbeat(store.clone()),
        otter_engine::external::spawn_router(
            store.clone(),
            Arc::clone(&membership),
            received_rx,
            events,
        ),
    ];
    info!(node = %node_id, broker = %external.url, "running as a node of an external broker");
    Ok((Mqtt::External(client), tasks))
}

/// `otter-node-<8 hex>`: the MQTT client id and membership name of this process.
fn random_node_id() -> String {
    format!("otter-node-{:08x}", rand::random::<u32>())
}

/// Warns (once, at start) when download links carry a port that the device SDKs of some of the
/// products cannot dial (Tencent's and Alibaba's C SDKs): those devices would be pushed and
/// never download. Products created later are warned about when they are created.
async fn warn_of_link_port(store: &Store, public_url: &PublicBase) -> Result<()> {
    let Some(port) = public_url.port() else {
        return Ok(());
    };
    let products = store.products().await?;
    if let Some(problem) = public_url.port_problem(products.iter().map(|p| p.dialect)) {
        let products: Vec<&str> = products
            .iter()
            .filter(|p| !p.dialect.sdks_dial_link_ports())
            .map(|p| p.id.as_str())
            .collect();
        warn!(%public_url, port, ?products, "{problem}");
    }
    Ok(())
}

/// The admin token kept in `<data_dir>/admin-token` (mode 0600), made on first start.
fn generated_token(dir: &Path) -> Result<String> {
    let path = dir.join(keys::ADMIN_TOKEN);
    let token = hex::encode(keys::secret_file(&path)?);
    info!(path = %path.display(), "no OTTER_TOKEN set: using the admin token stored in this file");
    Ok(token)
}

/// The link signer: the current download key, and retired keys still in their grace period.
fn download_signer(dir: &Path, public_url: &str) -> Result<UrlSigner> {
    let keys = keys::download_keys(&dir.join(keys::DOWNLOAD_KEY), unix_now())?;
    Ok(keys.retired.iter().fold(
        UrlSigner::new(&keys.current, public_url),
        |s, (key, until)| s.accept_retired(key, *until),
    ))
}

/// The key that seals device secrets: `--secret-key-file`, or `<data_dir>/secret-key`; and
/// the file it came from.
fn secret_box(config: &ServeConfig) -> Result<(SecretBox, std::path::PathBuf)> {
    let path = config
        .secret_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(keys::SECRET_KEY));
    let key = keys::secret_file(&path)?;
    let secrets =
        SecretBox::new(&key).with_context(|| format!("the secret key in {}", path.display()))?;
    Ok((secrets, path))
}

/// Refuses a key that does not open the device secrets already sealed in the database (a node
/// started with a fresh key on a shared database would otherwise refuse every device).
async fn check_secret_key(store: &Store, secrets: &SecretBox, path: &Path) -> Result<()> {
    let Some((product, device, sealed)) = store.device_secret_with_prefix(SEALED_PREFIX).await?
    else {
        return Ok(());
    };
    match secrets.open(&product, &device, &sealed) {
        Ok(_) => Ok(()),
        Err(SecretError::WrongKey) => anyhow::bail!(
            "the secret key in {} does not open the device secrets stored in the database (device {product}/{device}): \
             it is not the key they were sealed with. Every node on one database needs the same secret key: \
             copy the first node's secret-key file (or its --secret-key-file) to this node",
            path.display()
        ),
        // One damaged value is that device's problem, not the key's.
        Err(e) => {
            warn!(product, device, error = %e, "a stored device secret cannot be read");
            Ok(())
        }
    }
}

/// Seals secrets stored before sealing existed (or imported in plain text), once, at start.
async fn seal_stored_secrets(store: &Store, secrets: &SecretBox) -> Result<()> {
    let plain = store.device_secrets_without_prefix(SEALED_PREFIX).await?;
    for (product, device, secret) in &plain {
        let sealed = secrets.seal(product, device, secret);
        let (product, device) = (ProductId::parse(product)?, DeviceName::parse(device)?);
        store.set_device_secret(&product, &device, &sealed).await?;
    }
    if !plain.is_empty() {
        info!(
            devices = plain.len(),
            "sealed device secrets that were stored in plain text"
        );
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Uploads cut short by a crash leave staging objects behind; they are removed at start. A local
/// folder is this process's alone, so everything in its staging is a leftover; a store shared by
/// several nodes may hold another node's upload in progress, so only day-old objects go.
async fn sweep_staging(blobs: &otter_blobs::Blobs) {
    let older_than = if blobs.is_local() {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs(24 * 3600)
    };
    match blobs.sweep_staging(older_than).await {
        Ok(0) => {}
        Ok(n) => info!(
            removed = n,
            "removed unfinished uploads left by an earlier run"
        ),
        Err(e) => warn!(error = %e, "could not sweep unfinished uploads"),
    }
}

/// Blob removal (ARCHITECTURE.md, "Retiring") moves a blob aside before its last check; a process
/// stopped in between leaves it there. At start each such blob is put back if a firmware row
/// names it, else deleted. As with staging, a shared store's entries younger than a day may be
/// another node's removal in progress, and are left to it.
async fn settle_withdrawn(blobs: &otter_blobs::Blobs, store: &Store) {
    let older_than = if blobs.is_local() {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs(24 * 3600)
    };
    let withdrawn = match blobs.withdrawn(older_than).await {
        Ok(withdrawn) => withdrawn,
        Err(e) => return warn!(error = %e, "could not list blobs left half-removed"),
    };
    for blob in withdrawn {
        let sha = blob.sha256().to_owned();
        let settled = match store.blob_referenced(&sha).await {
            Ok(true) => blobs.restore(blob).await,
            Ok(false) => blobs.discard(blob).await,
            Err(e) => return warn!(error = %e, "could not settle blobs left half-removed"),
        };
        if let Err(e) = settled {
            warn!(sha256 = %sha, error = %e, "could not settle a blob left half-removed");
        }
    }
}

/// `url` with any password replaced by `***` (in its user info or a `password=` parameter), for
/// messages and logs.
fn without_password(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL (a file path): nothing to hide.
        return url.to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| match k == "password" {
                true => (k.into_owned(), "***".to_owned()),
                false => (k.into_owned(), v.into_owned()),
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// The blob store: `--blobs` (a folder or `s3://…`), or `<data_dir>/blobs`.
fn open_blobs(config: &ServeConfig) -> anyhow::Result<otter_blobs::Blobs> {
    let spec = match &config.blobs {
        Some(spec) if !spec.trim().is_empty() => spec.clone(),
        _ => config.data_dir.join("blobs").to_string_lossy().into_owned(),
    };
    let blobs = otter_blobs::Blobs::open_with(&spec, &config.s3)
        .with_context(|| format!("opening the blob store {spec}"))?;
    tracing::info!(blobs = %spec, download_mode = %config.download_mode, "blob store");
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn database_urls_lose_their_password() {
        assert_eq!(
            without_password("postgres://otter:hunter2@db:5432/otter"),
            "postgres://otter:***@db:5432/otter"
        );
        assert_eq!(
            without_password("postgres://otter@db/otter?sslmode=require&password=hunter2"),
            "postgres://otter@db/otter?sslmode=require&password=***"
        );
        assert_eq!(
            without_password("postgres://db/otter"),
            "postgres://db/otter"
        );
        assert_eq!(without_password("/srv/otter.db"), "/srv/otter.db");
    }
}
