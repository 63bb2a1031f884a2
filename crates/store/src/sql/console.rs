//! Read-only queries of the web console: filtered, paged device lists and per-product counts,
//! computed in SQL so pages of a 20,000-device fleet never load the fleet.

use super::{Engine, corrupt};
use crate::*;
use otter_core::Timestamp;
use otter_core::{DeviceName, Module, ProductId, Version};
use sqlx::Row;

/// `SELECT <columns> FROM <the filtered device list> <tail>`, kept a `&'static str`. The name
/// search folds case itself: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
macro_rules! filtered {
    ($columns:literal, $tail:literal) => {
        concat!(
            "SELECT ", $columns, " FROM devices d
             LEFT JOIN device_versions v ON v.product_id = d.product_id AND v.device_name = d.name AND v.module = $2
             WHERE d.product_id = $1
               AND ($3 IS NULL OR lower(d.name) LIKE lower($3) ESCAPE '\\')
               AND ($4 = 0 OR ($5 IS NULL AND v.version IS NULL) OR v.version = $5)
               AND ($6 IS NULL OR d.online = $6)
               AND ($7 IS NULL OR EXISTS (SELECT 1 FROM device_tags t WHERE t.product_id = d.product_id AND t.device_name = d.name AND t.tag = $7)) ",
            $tail
        )
    };
}

/// `%part%` with LIKE's wildcards escaped.
fn like_pattern(part: &str) -> String {
    let mut out = String::from("%");
    for c in part.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Engine {
    /// One page of a product's devices matching `filter`, by name, and how many match in all.
    pub async fn device_page(
        &self,
        product: &ProductId,
        module: &Module,
        filter: &DeviceFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<DeviceSummary>)> {
        let search = filter.search.as_deref().map(like_pattern);
        let version = filter.version.clone().flatten();
        let bind = |sql: &'static str| {
            sqlx::query(sql)
                .bind(product.as_str())
                .bind(module.as_str())
                .bind(search.clone())
                .bind(i64::from(filter.version.is_some()))
                .bind(version.clone())
                .bind(filter.online)
                .bind(filter.tag.clone())
        };
        let total: i64 = bind(filtered!("COUNT(*) AS n", ""))
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let page = filtered!(
            "d.name, d.online, d.last_seen, d.created_at, v.version,
             (SELECT string_agg(t.tag, '\n' ORDER BY t.tag) FROM device_tags t WHERE t.product_id = d.product_id AND t.device_name = d.name) AS tags",
            "ORDER BY d.name LIMIT $8 OFFSET $9"
        );
        let rows = bind(page)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let devices = rows
            .into_iter()
            .map(|r| {
                let version: Option<String> = r.try_get("version")?;
                let tags: Option<String> = r.try_get("tags")?;
                Ok(DeviceSummary {
                    name: DeviceName::parse(r.try_get::<String, _>("name")?).map_err(corrupt)?,
                    online: r.try_get("online")?,
                    last_seen: r
                        .try_get::<Option<i64>, _>("last_seen")?
                        .map(Timestamp::from),
                    created_at: Timestamp::from(r.try_get::<i64, _>("created_at")?),
                    version: version.map(Version::parse).transpose().map_err(corrupt)?,
                    tags: tags
                        .map(|t| t.lines().map(str::to_owned).collect())
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((total, devices))
    }

    /// How many devices of the product run each version of `module`; `None` counts the devices
    /// that never reported one. Most common first.
    pub async fn version_counts(
        &self,
        product: &ProductId,
        module: &Module,
    ) -> Result<Vec<(Option<Version>, i64)>> {
        let rows = sqlx::query(
            "SELECT v.version, COUNT(*) AS n FROM devices d
             LEFT JOIN device_versions v ON v.product_id = d.product_id AND v.device_name = d.name AND v.module = $2
             WHERE d.product_id = $1 GROUP BY v.version ORDER BY n DESC, v.version NULLS FIRST",
        )
        .bind(product.as_str())
        .bind(module.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let version: Option<String> = r.try_get("version")?;
                Ok((
                    version.map(Version::parse).transpose().map_err(corrupt)?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Every product with its device, online, firmware and live-campaign counts.
    pub async fn product_summaries(&self) -> Result<Vec<ProductSummary>> {
        let rows = sqlx::query(
            "SELECT p.id, p.dialect, p.name, p.version_scheme, p.created_at,
                (SELECT COUNT(*) FROM devices d WHERE d.product_id = p.id) AS devices,
                (SELECT COUNT(*) FROM devices d WHERE d.product_id = p.id AND d.online) AS online,
                (SELECT COUNT(*) FROM firmware f WHERE f.product_id = p.id) AS firmware,
                (SELECT COUNT(*) FROM campaigns c WHERE c.product_id = p.id AND c.state IN ('scheduled', 'running', 'paused')) AS live
             FROM products p ORDER BY p.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ProductSummary {
                    product: Product {
                        id: ProductId::parse(r.try_get::<String, _>("id")?).map_err(corrupt)?,
                        dialect: super::parse_dialect(r.try_get("dialect")?)?,
                        name: r.try_get("name")?,
                        version_scheme: super::parse_scheme(r.try_get("version_scheme")?)?,
                        created_at: Timestamp::from(r.try_get::<i64, _>("created_at")?),
                    },
                    devices: r.try_get("devices")?,
                    online: r.try_get("online")?,
                    firmware: r.try_get("firmware")?,
                    live_campaigns: r.try_get("live")?,
                })
            })
            .collect()
    }
}
