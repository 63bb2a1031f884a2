//! The store's queries, written once and compiled once per engine: lib.rs includes this module
//! under `sqlite` and `postgres`, each with its own `Db` (the sqlx database) and dialect macros
//! (`text_array!`). Only records and errors live outside; types defined here exist per engine.

use super::Db;
use crate::*;
use otter_core::Timestamp;
use otter_core::{DeviceName, Dialect, Module, ProductId, Version, VersionScheme};
use sqlx::{FromRow, Pool, Row};

/// Appends the live upgrade states to a query, keeping it a `&'static str`. Must match
/// `UpgradeState::is_live` and the partial index in the migrations.
macro_rules! live_states {
    ($sql:literal) => {
        concat!(
            $sql,
            "('queued', 'pending', 'pushed', 'downloading', 'burning')"
        )
    };
}

pub(crate) mod audit;
mod campaigns;
pub(crate) mod console;
mod health;
mod nodes;
mod operators;
mod retire;
mod secrets;
mod signing;
pub(crate) mod tokens;

/// One engine's connection pool; `crate::Store` forwards every call to one of these.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    /// Every write, and reads that must see this connection's own transaction.
    pub(crate) pool: Pool<Db>,
    /// Hot reads that can run beside a write (SQLite: read-only connections; PostgreSQL: the
    /// same pool).
    pub(crate) reads: Pool<Db>,
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Maps a uniqueness violation to a clear conflict, anything else to a database error.
pub(crate) fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Database(e),
    }
}

#[derive(FromRow)]
struct ProductRow {
    id: String,
    dialect: String,
    name: String,
    version_scheme: String,
    created_at: i64,
}

pub(crate) fn parse_dialect(s: &str) -> Result<Dialect> {
    s.parse().map_err(corrupt)
}

pub(crate) fn parse_scheme(s: &str) -> Result<VersionScheme> {
    VersionScheme::parse(s).ok_or_else(|| corrupt(format!("version scheme {s:?}")))
}

impl TryFrom<ProductRow> for Product {
    type Error = StoreError;
    fn try_from(r: ProductRow) -> Result<Self> {
        Ok(Product {
            id: ProductId::parse(r.id).map_err(corrupt)?,
            dialect: parse_dialect(&r.dialect)?,
            name: r.name,
            version_scheme: parse_scheme(&r.version_scheme)?,
            created_at: r.created_at.into(),
        })
    }
}

#[derive(FromRow)]
struct DeviceRow {
    product_id: String,
    name: String,
    secret: String,
    online: bool,
    last_seen: Option<i64>,
    created_at: i64,
}

impl TryFrom<DeviceRow> for Device {
    type Error = StoreError;
    fn try_from(r: DeviceRow) -> Result<Self> {
        Ok(Device {
            product: ProductId::parse(r.product_id).map_err(corrupt)?,
            name: DeviceName::parse(r.name).map_err(corrupt)?,
            secret: r.secret,
            online: r.online,
            last_seen: r.last_seen.map(Timestamp::from),
            created_at: r.created_at.into(),
        })
    }
}

#[derive(FromRow)]
struct FirmwareRow {
    id: i64,
    product_id: String,
    module: String,
    version: String,
    size: i64,
    md5: String,
    sha256: String,
    state: String,
    created_at: i64,
}

impl TryFrom<FirmwareRow> for Firmware {
    type Error = StoreError;
    fn try_from(r: FirmwareRow) -> Result<Self> {
        Ok(Firmware {
            id: r.id,
            product: ProductId::parse(r.product_id).map_err(corrupt)?,
            module: Module::parse(r.module).map_err(corrupt)?,
            version: Version::parse(r.version).map_err(corrupt)?,
            size: u64::try_from(r.size).map_err(corrupt)?,
            md5: r.md5,
            sha256: r.sha256,
            state: FirmwareState::parse(&r.state)
                .ok_or_else(|| corrupt(format!("firmware state {:?}", r.state)))?,
            created_at: r.created_at.into(),
        })
    }
}

pub(crate) fn convert<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

impl Engine {
    // ---- products

    pub async fn create_product(
        &self,
        id: &ProductId,
        dialect: Dialect,
        name: &str,
        version_scheme: VersionScheme,
    ) -> Result<Product> {
        let now = now_ms();
        sqlx::query("INSERT INTO products (id, dialect, name, version_scheme, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.as_str())
            .bind(dialect.as_str())
            .bind(name)
            .bind(version_scheme.as_str())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_or(e, || format!("product {id} already exists")))?;
        Ok(Product {
            id: id.clone(),
            dialect,
            name: name.into(),
            version_scheme,
            created_at: now.into(),
        })
    }

    /// Changes how the product's versions are ordered (live campaigns judge by it from now on).
    pub async fn set_version_scheme(
        &self,
        id: &ProductId,
        scheme: VersionScheme,
    ) -> Result<Product> {
        let done = sqlx::query("UPDATE products SET version_scheme = $1 WHERE id = $2")
            .bind(scheme.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("product {id}")));
        }
        self.product(id).await
    }

    pub async fn product(&self, id: &ProductId) -> Result<Product> {
        let row: Option<ProductRow> = sqlx::query_as("SELECT * FROM products WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.reads)
            .await?;
        row.ok_or_else(|| StoreError::NotFound(format!("product {id}")))?
            .try_into()
    }

    pub async fn products(&self) -> Result<Vec<Product>> {
        convert(
            sqlx::query_as::<_, ProductRow>("SELECT * FROM products ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    // ---- devices

    pub async fn create_device(
        &self,
        product: &ProductId,
        name: &DeviceName,
        secret: &str,
    ) -> Result<Device> {
        self.product(product).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO devices (product_id, name, secret, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(product.as_str())
        .bind(name.as_str())
        .bind(secret)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("device {product}/{name} already exists")))?;
        Ok(Device {
            product: product.clone(),
            name: name.clone(),
            secret: secret.into(),
            online: false,
            last_seen: None,
            created_at: now.into(),
        })
    }

    pub async fn device(&self, product: &ProductId, name: &DeviceName) -> Result<Device> {
        let row: Option<DeviceRow> =
            sqlx::query_as("SELECT * FROM devices WHERE product_id = $1 AND name = $2")
                .bind(product.as_str())
                .bind(name.as_str())
                .fetch_optional(&self.reads)
                .await?;
        row.ok_or_else(|| StoreError::NotFound(format!("device {product}/{name}")))?
            .try_into()
    }

    pub async fn devices(
        &self,
        product: &ProductId,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Device>> {
        convert(
            sqlx::query_as::<_, DeviceRow>(
                "SELECT * FROM devices WHERE product_id = $1 ORDER BY name LIMIT $2 OFFSET $3",
            )
            .bind(product.as_str())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Many connects and disconnects in one statement (the rows travel as one JSON parameter):
    /// each device's online flag and last-seen time. At most one entry per device.
    pub async fn set_online_many(&self, changes: &[OnlineChange]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| serde_json::json!({ "p": c.product.as_str(), "d": c.device.as_str(), "o": c.online, "n": c.connects, "t": c.at }))
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        const SQL: &str = concat!(
            "UPDATE devices SET online = x.o, connects = devices.connects + x.n,
                    last_seen = CASE WHEN devices.last_seen > x.t THEN devices.last_seen ELSE x.t END
             FROM ",
            online_rows!("$1"),
            " WHERE devices.product_id = x.p AND devices.name = x.d"
        );
        sqlx::query(SQL)
            .bind(rows.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every device offline: at start-up no device is connected to this node yet.
    pub async fn reset_online(&self) -> Result<()> {
        sqlx::query("UPDATE devices SET online = FALSE WHERE online")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores many version reports in one transaction of two statements (the rows travel as
    /// one JSON parameter), also moving each device's `last_seen` forward. Reports of devices
    /// deleted meanwhile are skipped. Later reports of the same module win.
    pub async fn record_versions(&self, reports: &[VersionReport]) -> Result<()> {
        if reports.is_empty() {
            return Ok(());
        }
        // One row per module (a second conflict on one row in one INSERT is an error in
        // PostgreSQL): the latest report wins, and the last of equals.
        let mut latest: std::collections::HashMap<(&str, &str, &str), &VersionReport> =
            std::collections::HashMap::new();
        for r in reports {
            let key = (r.product.as_str(), r.device.as_str(), r.module.as_str());
            match latest.get(&key) {
                Some(seen) if seen.at > r.at => {}
                _ => {
                    latest.insert(key, r);
                }
            }
        }
        let rows: Vec<serde_json::Value> = latest
            .values()
            .map(|r| {
                serde_json::json!({ "p": r.product.as_str(), "d": r.device.as_str(),
                    "m": r.module.as_str(), "v": r.version.as_str(), "t": r.at })
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        const VERSIONS: &str = concat!(
            "INSERT INTO device_versions (product_id, device_name, module, version, reported_at)
             SELECT x.p, x.d, x.m, x.v, x.t FROM ",
            report_rows!("$1"),
            " WHERE EXISTS (SELECT 1 FROM devices WHERE product_id = x.p AND name = x.d)
             ON CONFLICT (product_id, device_name, module) DO UPDATE
             SET version = excluded.version, reported_at = excluded.reported_at
             WHERE excluded.reported_at >= device_versions.reported_at"
        );
        const LAST_SEEN: &str = concat!(
            "UPDATE devices SET last_seen = s.t FROM (SELECT x.p, x.d, MAX(x.t) AS t FROM ",
            report_rows!("$1"),
            " GROUP BY x.p, x.d) AS s
             WHERE devices.product_id = s.p AND devices.name = s.d
               AND (devices.last_seen IS NULL OR devices.last_seen < s.t)"
        );
        let mut tx = self.pool.begin().await?;
        sqlx::query(VERSIONS)
            .bind(rows.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(LAST_SEEN)
            .bind(rows.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn versions(
        &self,
        product: &ProductId,
        name: &DeviceName,
    ) -> Result<Vec<ModuleVersion>> {
        let rows = sqlx::query("SELECT module, version, reported_at FROM device_versions WHERE product_id = $1 AND device_name = $2 ORDER BY module")
            .bind(product.as_str())
            .bind(name.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ModuleVersion {
                    module: Module::parse(r.try_get::<String, _>("module")?).map_err(corrupt)?,
                    version: Version::parse(r.try_get::<String, _>("version")?).map_err(corrupt)?,
                    reported_at: Timestamp::from(r.try_get::<i64, _>("reported_at")?),
                })
            })
            .collect()
    }

    // ---- firmware

    pub async fn create_firmware(&self, fw: &NewFirmware) -> Result<Firmware> {
        self.product(&fw.product).await?;
        let now = now_ms();
        let size = i64::try_from(fw.size)
            .map_err(|_| StoreError::Conflict("firmware too large".into()))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO firmware (product_id, module, version, size, md5, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(fw.product.as_str())
        .bind(fw.module.as_str())
        .bind(fw.version.as_str())
        .bind(size)
        .bind(&fw.md5)
        .bind(&fw.sha256)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("firmware {} {} (module {}) already exists", fw.product, fw.version, fw.module)))?;
        self.firmware(id).await
    }

    pub async fn firmware(&self, id: i64) -> Result<Firmware> {
        let row: Option<FirmwareRow> = sqlx::query_as("SELECT * FROM firmware WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.ok_or_else(|| StoreError::NotFound(format!("firmware #{id}")))?
            .try_into()
    }

    pub async fn firmware_by_version(
        &self,
        product: &ProductId,
        module: &Module,
        version: &Version,
    ) -> Result<Firmware> {
        let row: Option<FirmwareRow> = sqlx::query_as(
            "SELECT * FROM firmware WHERE product_id = $1 AND module = $2 AND version = $3",
        )
        .bind(product.as_str())
        .bind(module.as_str())
        .bind(version.as_str())
        .fetch_optional(&self.reads)
        .await?;
        row.ok_or_else(|| {
            StoreError::NotFound(format!("firmware {product} {version} (module {module})"))
        })?
        .try_into()
    }

    pub async fn firmware_list(&self, product: &ProductId) -> Result<Vec<Firmware>> {
        convert(
            sqlx::query_as::<_, FirmwareRow>(
                "SELECT * FROM firmware WHERE product_id = $1 ORDER BY created_at, id",
            )
            .bind(product.as_str())
            .fetch_all(&self.pool)
            .await?,
        )
    }

    pub async fn set_firmware_state(&self, id: i64, state: FirmwareState) -> Result<()> {
        sqlx::query("UPDATE firmware SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- tags

    /// Adds and removes tags of a device; returns its tags afterwards.
    pub async fn set_tags(
        &self,
        product: &ProductId,
        name: &DeviceName,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>> {
        self.device(product, name).await?;
        let mut tx = self.pool.begin().await?;
        for tag in add {
            sqlx::query("INSERT INTO device_tags (product_id, device_name, tag) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(product.as_str())
                .bind(name.as_str())
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        for tag in remove {
            sqlx::query(
                "DELETE FROM device_tags WHERE product_id = $1 AND device_name = $2 AND tag = $3",
            )
            .bind(product.as_str())
            .bind(name.as_str())
            .bind(tag)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.tags(product, name).await
    }

    pub async fn tags(&self, product: &ProductId, name: &DeviceName) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT tag FROM device_tags WHERE product_id = $1 AND device_name = $2 ORDER BY tag",
        )
        .bind(product.as_str())
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every device of a product with its version of `module` and its tags: the input of
    /// campaign targeting, which is pure logic in the caller.
    pub async fn fleet(&self, product: &ProductId, module: &Module) -> Result<Vec<FleetDevice>> {
        let rows = sqlx::query(
            "SELECT d.name, d.online, v.version,
                    (SELECT string_agg(t.tag, '\n' ORDER BY t.tag) FROM device_tags t WHERE t.product_id = d.product_id AND t.device_name = d.name) AS tags
             FROM devices d LEFT JOIN device_versions v ON v.product_id = d.product_id AND v.device_name = d.name AND v.module = $2
             WHERE d.product_id = $1 ORDER BY d.name",
        )
        .bind(product.as_str())
        .bind(module.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let version: Option<String> = r.try_get("version")?;
                let tags: Option<String> = r.try_get("tags")?;
                Ok(FleetDevice {
                    name: DeviceName::parse(r.try_get::<String, _>("name")?).map_err(corrupt)?,
                    online: r.try_get("online")?,
                    version: version.map(Version::parse).transpose().map_err(corrupt)?,
                    tags: tags
                        .map(|t| t.lines().map(str::to_owned).collect())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The named devices' online flag and running version of `module` (tags left empty): what
    /// a release needs to judge each device, in one query whatever the wave's size.
    pub async fn fleet_members(
        &self,
        product: &ProductId,
        module: &Module,
        names: &[DeviceName],
    ) -> Result<Vec<FleetDevice>> {
        let names: Vec<&str> = names.iter().map(DeviceName::as_str).collect();
        let names = serde_json::to_string(&names).map_err(corrupt)?;
        const SQL: &str = concat!(
            "SELECT d.name, d.online, v.version
             FROM devices d LEFT JOIN device_versions v ON v.product_id = d.product_id AND v.device_name = d.name AND v.module = $2
             WHERE d.product_id = $1 AND d.name IN ",
            text_array!("$3")
        );
        let rows = sqlx::query(SQL)
            .bind(product.as_str())
            .bind(module.as_str())
            .bind(names)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let version: Option<String> = r.try_get("version")?;
                Ok(FleetDevice {
                    name: DeviceName::parse(r.try_get::<String, _>("name")?).map_err(corrupt)?,
                    online: r.try_get("online")?,
                    version: version.map(Version::parse).transpose().map_err(corrupt)?,
                    tags: Vec::new(),
                })
            })
            .collect()
    }
}
