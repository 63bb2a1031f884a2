//! `Store`, the one handle callers hold: it opens the engine a URL names and forwards every call
//! to it. The list below is the store's whole API; each entry's body is in `sql/`.

use crate::*;
use otter_core::campaign::{CampaignState, Strategy};
use otter_core::{DeviceName, Dialect, Module, ProductId, UpgradeState, Version, VersionScheme};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

/// Read-only SQLite connections beside the one writer.
const READERS: u32 = 2;

#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
    /// Devices known to have no live upgrade (SQLite only: one process owns the file, so this
    /// process sees every write that could start one; see `idle.rs`).
    idle: Option<std::sync::Arc<crate::idle::IdleDevices>>,
}

#[derive(Clone, Debug)]
enum Engine {
    Sqlite(crate::sqlite::Engine),
    Postgres(crate::postgres::Engine),
}

impl Store {
    /// Opens the database `target` names, bringing its schema up to date: a PostgreSQL URL
    /// (`postgres://` or `postgresql://`), a SQLite URL (`sqlite://otter.db`, `sqlite::memory:`),
    /// or else the path of a SQLite file.
    pub async fn open(target: &str) -> Result<Self> {
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            Self::open_postgres(target).await
        } else if target.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(target)?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            Self::connect_sqlite(options).await
        } else {
            Self::open_sqlite(std::path::Path::new(target)).await
        }
    }

    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Self> {
        private_files(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect_sqlite(options).await
    }

    async fn connect_sqlite(options: SqliteConnectOptions) -> Result<Self> {
        // One writer connection: SQLite serializes writers anyway, and a single connection makes
        // every read-then-write sequence atomic without BUSY retries.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        crate::sqlite::MIGRATOR.run(&pool).await?;
        // Hot reads (every device message asks for its live upgrade; operators poll campaign
        // counts) get their own read-only connections, so they do not queue behind a write
        // transaction: in WAL mode readers see every commit made before they start. An
        // in-memory database exists per connection, so it reads on the writer.
        let in_memory = options
            .get_filename()
            .to_string_lossy()
            .contains(":memory:");
        let reads = match in_memory {
            true => pool.clone(),
            false => {
                SqlitePoolOptions::new()
                    .max_connections(READERS)
                    .connect_with(options.read_only(true))
                    .await?
            }
        };
        let engine = Engine::Sqlite(crate::sqlite::Engine { pool, reads });
        let idle = Some(std::sync::Arc::default());
        Ok(Self { engine, idle })
    }

    /// Connects to the PostgreSQL database at `url`. Several nodes may share it: migrations take
    /// an advisory lock, and every claim of work is a conditional update (see `transition`).
    pub async fn open_postgres(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        crate::postgres::MIGRATOR.run(&pool).await?;
        let reads = pool.clone();
        let engine = Engine::Postgres(crate::postgres::Engine { pool, reads });
        // Other nodes start upgrades in the shared database: no idle cache.
        Ok(Self { engine, idle: None })
    }

    /// The engine's name, for logs: `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }
}

/// Calls the same method on whichever engine the store has.
macro_rules! on_engine {
    ($store:expr, $name:ident($($arg:expr),*)) => {
        match &$store.engine {
            Engine::Sqlite(e) => e.$name($($arg),*).await,
            Engine::Postgres(e) => e.$name($($arg),*).await,
        }
    };
}

impl Store {
    /// Creates a campaign and its device upgrades (queued) in one transaction. A device already in
    /// a live upgrade of the module refuses the whole campaign with an error naming it, unless
    /// `supersede`, which cancels that other upgrade.
    pub async fn create_campaign(&self, c: &NewCampaign) -> Result<Campaign> {
        let _starting = self.idle.as_ref().map(|i| i.starting_upgrades());
        on_engine!(self, create_campaign(c))
    }

    /// Planner-driven transitions of several devices of one campaign, in one transaction: each
    /// device moves to `to` only if it is in one of `from`. `released_at` set means a release
    /// (attempts + 1). Returns the devices that moved.
    pub async fn transition(
        &self,
        campaign_id: i64,
        product: &ProductId,
        devices: &[DeviceName],
        change: &Transition<'_>,
    ) -> Result<Vec<DeviceName>> {
        // A retry moves a finished upgrade back to `queued`: live again.
        let _starting = self.idle.as_ref().map(|i| i.starting_upgrades());
        on_engine!(self, transition(campaign_id, product, devices, change))
    }

    /// The device's live upgrade of `module`, if any (at most one, by a unique index). Every
    /// device message asks this; for a device known idle it costs no query.
    pub async fn live_upgrade(
        &self,
        product: &ProductId,
        device: &DeviceName,
        module: &Module,
    ) -> Result<Option<Upgrade>> {
        let Some(idle) = &self.idle else {
            return on_engine!(self, live_upgrade(product, device, module));
        };
        let key = (product.clone(), device.clone(), module.clone());
        let Some(asked) = idle.ask(&key) else {
            return Ok(None);
        };
        let found = on_engine!(self, live_upgrade(product, device, module))?;
        if found.is_none() {
            idle.remember(key, asked);
        }
        Ok(found)
    }
}

/// Generates `Store`'s methods, each forwarding its arguments to the same method of the engine.
macro_rules! forward {
    ($($(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.engine {
                        Engine::Sqlite(e) => e.$name($($arg),*).await,
                        Engine::Postgres(e) => e.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

forward! {
    // ---- products, devices, firmware, tags
    pub async fn create_product(&self, id: &ProductId, dialect: Dialect, name: &str, version_scheme: VersionScheme) -> Result<Product>;
    pub async fn set_version_scheme(&self, id: &ProductId, scheme: VersionScheme) -> Result<Product>;
    pub async fn product(&self, id: &ProductId) -> Result<Product>;
    pub async fn products(&self) -> Result<Vec<Product>>;
    pub async fn create_device(&self, product: &ProductId, name: &DeviceName, secret: &str) -> Result<Device>;
    pub async fn device(&self, product: &ProductId, name: &DeviceName) -> Result<Device>;
    pub async fn devices(&self, product: &ProductId, limit: i64, offset: i64) -> Result<Vec<Device>>;
    /// Many connects and disconnects at once (the engine's write-behind); one per device.
    pub async fn set_online_many(&self, changes: &[OnlineChange]) -> Result<()>;
    /// Marks every device offline: at start-up no device is connected to this node yet.
    pub async fn reset_online(&self) -> Result<()>;
    /// Many reports in one transaction (the engine's write-behind of what devices report).
    pub async fn record_versions(&self, reports: &[VersionReport]) -> Result<()>;
    pub async fn versions(&self, product: &ProductId, name: &DeviceName) -> Result<Vec<ModuleVersion>>;
    pub async fn create_firmware(&self, fw: &NewFirmware) -> Result<Firmware>;
    pub async fn firmware(&self, id: i64) -> Result<Firmware>;
    pub async fn firmware_by_version(&self, product: &ProductId, module: &Module, version: &Version) -> Result<Firmware>;
    pub async fn firmware_list(&self, product: &ProductId) -> Result<Vec<Firmware>>;
    pub async fn set_firmware_state(&self, id: i64, state: FirmwareState) -> Result<()>;
    /// Adds and removes tags of a device; returns its tags afterwards.
    pub async fn set_tags(&self, product: &ProductId, name: &DeviceName, add: &[String], remove: &[String]) -> Result<Vec<String>>;
    pub async fn tags(&self, product: &ProductId, name: &DeviceName) -> Result<Vec<String>>;
    /// Every device of a product with its version of `module` and its tags: the input of
    /// campaign targeting, which is pure logic in the caller.
    pub async fn fleet(&self, product: &ProductId, module: &Module) -> Result<Vec<FleetDevice>>;
    /// The named devices' online flag and running version of `module` (no tags).
    pub async fn fleet_members(&self, product: &ProductId, module: &Module, names: &[DeviceName]) -> Result<Vec<FleetDevice>>;
    // ---- retiring (each refused while a live campaign needs what would go)
    /// Deletes a device, its versions, tags, counters and rows in finished campaigns.
    pub async fn delete_device(&self, product: &ProductId, name: &DeviceName) -> Result<Removed>;
    /// Deletes a product with its devices, finished campaigns, firmware and keys.
    pub async fn delete_product(&self, product: &ProductId) -> Result<Removed>;
    /// Deletes a firmware image; campaigns that used it are deleted too only when `purge`.
    pub async fn delete_firmware(&self, product: &ProductId, module: &Module, version: &Version, purge: bool) -> Result<Removed>;
    /// Whether any firmware row names the blob `sha256` (blob collection checks before and after
    /// it takes a blob away).
    pub async fn blob_referenced(&self, sha256: &str) -> Result<bool>;
    // ---- campaigns
    pub async fn campaign(&self, id: i64) -> Result<Campaign>;
    pub async fn campaigns(&self, product: Option<&ProductId>) -> Result<Vec<Campaign>>;
    /// Campaigns the planner still has work for.
    pub async fn live_campaigns(&self) -> Result<Vec<i64>>;
    pub async fn set_campaign_state(&self, id: i64, state: CampaignState, reason: Option<&str>) -> Result<()>;
    /// Replaces the stored strategy (an operator overriding the success gate on resume).
    pub async fn set_campaign_strategy(&self, id: i64, strategy: &Strategy) -> Result<()>;
    pub async fn campaign_counts(&self, id: i64) -> Result<StateCounts>;
    /// A campaign's device upgrades in rollout order, optionally only those in `state`.
    pub async fn campaign_upgrades(&self, id: i64, state: Option<UpgradeState>, limit: i64, offset: i64) -> Result<Vec<Upgrade>>;
    /// The device's most recent upgrade, live or not, for `device show`.
    pub async fn latest_upgrade(&self, product: &ProductId, device: &DeviceName) -> Result<Option<Upgrade>>;
    /// Device-driven changes in one transaction (the engine's group commit), each written only
    /// while its upgrade is still in the state it was decided on (a late report never revives a
    /// finished or canceled upgrade), with its push counted in the same statement; per change,
    /// whether it was written. At most one change per upgrade in a batch.
    pub async fn update_upgrades(&self, updates: &[UpgradeUpdate]) -> Result<Vec<bool>>;
    /// The names of the product's devices that are online now.
    pub async fn online_devices(&self, product: &ProductId) -> Result<std::collections::HashSet<DeviceName>>;
    /// How many devices of the campaign are in each state for each reason Otter gave.
    pub async fn campaign_reasons(&self, id: i64) -> Result<Vec<ReasonCount>>;
    // ---- health gates
    /// Adds a device's reported health counters to its totals.
    pub async fn add_device_counters(&self, product: &ProductId, device: &DeviceName, counters: &std::collections::BTreeMap<String, u64>) -> Result<()>;
    /// A device's health counters, totals so far.
    pub async fn device_counters(&self, product: &ProductId, device: &DeviceName) -> Result<std::collections::BTreeMap<String, i64>>;
    /// What a health gate after `wave` is judged on (cumulative counts).
    pub async fn health_facts(&self, campaign_id: i64, wave: u32) -> Result<HealthFacts>;
    /// Starts the bake after `wave` once; whether this call did.
    pub async fn start_bake(&self, campaign_id: i64, wave: u32, at: i64, baseline: &HealthFacts) -> Result<bool>;
    /// Judges the bake after `wave` once; whether this call did.
    pub async fn judge_bake(&self, campaign_id: i64, wave: u32, at: i64, verdict: otter_core::health::Verdict, evaluation: &serde_json::Value) -> Result<bool>;
    /// Accepts the verdicts that held a campaign (the operator resumed it).
    pub async fn accept_bakes(&self, campaign_id: i64) -> Result<()>;
    pub async fn campaign_bakes(&self, campaign_id: i64) -> Result<Vec<BakeRecord>>;
    /// The device's upgrade history, newest first.
    pub async fn device_events(&self, product: &ProductId, device: &DeviceName, limit: i64) -> Result<Vec<UpgradeEvent>>;
    // ---- audit
    /// Appends one entry; returns its id.
    pub async fn record_audit(&self, actor: &str, action: &str, subject: &str, detail: &serde_json::Value) -> Result<i64>;
    /// Entries newest first, optionally only actions starting with `action_prefix`.
    pub async fn audit_log(&self, action_prefix: Option<&str>, limit: i64, offset: i64) -> Result<Vec<AuditEntry>>;
    /// How many entries `audit_log` would page through.
    pub async fn audit_count(&self, action_prefix: Option<&str>) -> Result<i64>;
    // ---- console
    /// One page of a product's devices matching `filter`, by name, and how many match in all.
    pub async fn device_page(&self, product: &ProductId, module: &Module, filter: &DeviceFilter, limit: i64, offset: i64) -> Result<(i64, Vec<DeviceSummary>)>;
    /// How many devices of the product run each version of `module`; `None` counts the devices
    /// that never reported one. Most common first.
    pub async fn version_counts(&self, product: &ProductId, module: &Module) -> Result<Vec<(Option<Version>, i64)>>;
    /// Every product with its device, online, firmware and live-campaign counts.
    pub async fn product_summaries(&self) -> Result<Vec<ProductSummary>>;
    // ---- security: API tokens and device secrets as stored (sealed by the server)
    /// Stores a new token by its hash; returns its listing.
    pub async fn create_api_token(&self, name: &str, scope: &str, token_hash: &str) -> Result<ApiToken>;
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>>;
    /// The live (not revoked) token with this hash, marking it used now.
    pub async fn use_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    /// Revokes a token for good; revoking twice is a no-op that still succeeds.
    pub async fn revoke_api_token(&self, id: i64) -> Result<ApiToken>;
    // ---- operators and console sessions
    /// Stores a new operator with its password hash (argon2id PHC); a taken name is a conflict.
    pub async fn create_operator(&self, name: &str, scope: &str, password_hash: &str) -> Result<Operator>;
    /// Every operator, disabled ones too, by name.
    pub async fn operators(&self) -> Result<Vec<Operator>>;
    /// A live (not disabled) operator and its password hash, to check a sign-in.
    pub async fn operator_login(&self, name: &str) -> Result<Option<(Operator, String)>>;
    /// Disables an operator and ends its console sessions; disabling twice keeps the first time.
    pub async fn disable_operator(&self, name: &str) -> Result<Operator>;
    /// Opens a console session (stored by the hash of its id).
    pub async fn create_console_session(&self, session: &NewConsoleSession<'_>) -> Result<()>;
    /// The session with this hash if it is live at `now` (ms): not revoked, not expired, its
    /// operator not disabled, its API token not revoked.
    pub async fn console_session(&self, session_hash: &str, now: i64) -> Result<Option<ConsoleSession>>;
    /// Ends a session (sign-out); whether a live one was ended.
    pub async fn revoke_console_session(&self, session_hash: &str) -> Result<bool>;
    /// Replaces a device's stored secret.
    pub async fn set_device_secret(&self, product: &ProductId, name: &DeviceName, secret: &str) -> Result<()>;
    /// Every device whose stored secret does not start with `prefix`, as (product, device, stored
    /// secret): the ones a sealing pass still has to seal.
    pub async fn device_secrets_without_prefix(&self, prefix: &str) -> Result<Vec<(String, String, String)>>;
    /// One device whose stored secret starts with `prefix`, as (product, device, stored secret),
    /// or `None` when there is none: enough to check that the server's key opens them.
    pub async fn device_secret_with_prefix(&self, prefix: &str) -> Result<Option<(String, String, String)>>;
    /// A trivial query: the database answers (readiness checks).
    pub async fn ping(&self) -> Result<()>;
    // ---- node membership (several nodes on one database)
    /// Records that node `id` is alive at `now` (ms); returns the sorted ids of every node seen
    /// since `live_since`.
    pub async fn node_heartbeat(&self, id: &str, now: i64, live_since: i64) -> Result<Vec<String>>;
    /// Takes node `id` out of the live set at once (a clean shutdown).
    pub async fn node_leave(&self, id: &str) -> Result<()>;
    // ---- signing keys and firmware signatures
    /// Registers a product's public key; `announced` is (signing key id, announcement signature).
    pub async fn add_product_key(&self, product: &ProductId, key_id: &str, public_key: &str, announced: Option<(&str, &str)>) -> Result<ProductKey>;
    pub async fn product_keys(&self, product: &ProductId) -> Result<Vec<ProductKey>>;
    /// Stores (or replaces) the signature of a firmware image.
    pub async fn set_firmware_signature(&self, s: &FirmwareSignature) -> Result<()>;
    pub async fn firmware_signature(&self, firmware_id: i64) -> Result<Option<FirmwareSignature>>;
    pub async fn firmware_signatures(&self, product: &ProductId) -> Result<Vec<FirmwareSignature>>;
}

/// The database and its WAL and shared-memory files are readable by their owner only (0600):
/// they hold the fleet's state and sealed secrets. SQLite gives the WAL and SHM files the mode
/// of the database file, so the database is created 0600 before SQLite opens it; files left
/// more open by an earlier version are narrowed.
#[cfg(unix)]
fn private_files(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !path.exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let mut name = path.as_os_str().to_owned();
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        name.push(suffix);
        files.push(std::path::PathBuf::from(&name));
        name = path.as_os_str().to_owned();
    }
    for file in files {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                tracing::info!(file = %file.display(), "narrowing the database file's mode to 0600");
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_files(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes a consistent copy of the embedded database at `db` to `to` (a new file), while a
/// server may be writing to it: `VACUUM INTO` reads one snapshot of the WAL database on a
/// read-only connection of its own, so the copy holds every transaction committed before it
/// started and none after. The copy is compact and needs no WAL file.
pub async fn backup_sqlite(db: &std::path::Path, to: &std::path::Path) -> Result<()> {
    use sqlx::ConnectOptions;
    if !db.is_file() {
        return Err(StoreError::NotFound(format!("database {}", db.display())));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    sqlx::query("VACUUM INTO $1")
        .bind(to.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await?;
    private_files(to)?;
    Ok(())
}
