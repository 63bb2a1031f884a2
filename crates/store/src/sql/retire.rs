//! Retiring devices, products and firmware: each delete is one transaction that first refuses
//! (a conflict naming them) while a live campaign needs what would go, then removes the rows
//! that depend on it, children first. Campaign history is deleted only with what it is the
//! history of (a product), or when the caller asks (`purge` of a firmware image).

use super::{Db, Engine};
use crate::*;
use otter_core::{DeviceName, Module, ProductId, Version};
use sqlx::Transaction;

/// Appends the campaign states that no longer need devices and firmware, keeping the query a
/// `&'static str`: every other state (a future one too) counts as live.
macro_rules! not_live {
    ($sql:literal) => {
        concat!($sql, "('finished', 'canceled', 'aborted')")
    };
}

/// `#3 (running), #5 (paused)`.
fn describe(campaigns: &[(i64, String)]) -> String {
    campaigns
        .iter()
        .map(|(id, state)| format!("#{id} ({state})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Engine {
    /// Deletes a device with its versions, tags, counters and its rows in finished campaigns;
    /// refused while a live campaign targets it.
    pub async fn delete_device(&self, product: &ProductId, name: &DeviceName) -> Result<Removed> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM devices WHERE product_id = $1 AND name = $2")
                .bind(product.as_str())
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("device {product}/{name}")));
        }
        let live: Vec<(i64, String)> = sqlx::query_as(concat!(
            not_live!(
                "SELECT DISTINCT c.id, c.state FROM campaigns c JOIN upgrades u ON u.campaign_id = c.id
                 WHERE u.product_id = $1 AND u.device_name = $2 AND c.state NOT IN "
            ),
            " ORDER BY c.id"
        ))
        .bind(product.as_str())
        .bind(name.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !live.is_empty() {
            return Err(StoreError::Conflict(format!(
                "device {product}/{name} is in live campaign{} {}: cancel {} or wait for {} to finish",
                plural(live.len()),
                describe(&live),
                if live.len() == 1 { "it" } else { "them" },
                if live.len() == 1 { "it" } else { "them" },
            )));
        }
        for sql in [
            "DELETE FROM upgrade_events WHERE product_id = $1 AND device_name = $2",
            "DELETE FROM upgrades WHERE product_id = $1 AND device_name = $2",
            "DELETE FROM device_versions WHERE product_id = $1 AND device_name = $2",
            "DELETE FROM device_tags WHERE product_id = $1 AND device_name = $2",
            "DELETE FROM device_counters WHERE product_id = $1 AND device_name = $2",
        ] {
            sqlx::query(sql)
                .bind(product.as_str())
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM devices WHERE product_id = $1 AND name = $2")
            .bind(product.as_str())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| busy(e, || format!("device {product}/{name}")))?;
        tx.commit().await?;
        Ok(Removed {
            devices: 1,
            ..Removed::default()
        })
    }

    /// Deletes a product and everything of it: devices, campaigns (all finished), firmware,
    /// signatures and keys; refused while it has a live campaign.
    pub async fn delete_product(&self, product: &ProductId) -> Result<Removed> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM products WHERE id = $1")
            .bind(product.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("product {product}")));
        }
        let live: Vec<(i64, String)> = sqlx::query_as(concat!(
            not_live!("SELECT id, state FROM campaigns WHERE product_id = $1 AND state NOT IN "),
            " ORDER BY id"
        ))
        .bind(product.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if !live.is_empty() {
            return Err(StoreError::Conflict(format!(
                "product {product} has live campaign{} {}: cancel {} or wait for {} to finish",
                plural(live.len()),
                describe(&live),
                if live.len() == 1 { "it" } else { "them" },
                if live.len() == 1 { "it" } else { "them" },
            )));
        }
        let campaigns: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM campaigns WHERE product_id = $1 ORDER BY id")
                .bind(product.as_str())
                .fetch_all(&mut *tx)
                .await?;
        let shas: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT sha256 FROM firmware WHERE product_id = $1")
                .bind(product.as_str())
                .fetch_all(&mut *tx)
                .await?;
        let p = product.as_str();
        let statements = [
            "DELETE FROM campaign_bakes WHERE campaign_id IN (SELECT id FROM campaigns WHERE product_id = $1)",
            "DELETE FROM upgrade_events WHERE product_id = $1",
            "DELETE FROM upgrade_events WHERE campaign_id IN (SELECT id FROM campaigns WHERE product_id = $1)",
            "DELETE FROM upgrades WHERE product_id = $1",
            "DELETE FROM campaigns WHERE product_id = $1",
            "DELETE FROM firmware_signatures WHERE firmware_id IN (SELECT id FROM firmware WHERE product_id = $1)",
            "DELETE FROM device_versions WHERE product_id = $1",
            "DELETE FROM device_tags WHERE product_id = $1",
            "DELETE FROM device_counters WHERE product_id = $1",
            "DELETE FROM product_keys WHERE product_id = $1",
        ];
        for sql in statements {
            sqlx::query(sql).bind(p).execute(&mut *tx).await?;
        }
        let firmware = sqlx::query("DELETE FROM firmware WHERE product_id = $1")
            .bind(p)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let devices = sqlx::query("DELETE FROM devices WHERE product_id = $1")
            .bind(p)
            .execute(&mut *tx)
            .await
            .map_err(|e| busy(e, || format!("product {product}")))?
            .rows_affected();
        sqlx::query("DELETE FROM products WHERE id = $1")
            .bind(p)
            .execute(&mut *tx)
            .await
            .map_err(|e| busy(e, || format!("product {product}")))?;
        let unreferenced_blobs = unreferenced(&mut tx, shas).await?;
        tx.commit().await?;
        Ok(Removed {
            devices,
            firmware,
            campaigns,
            unreferenced_blobs,
        })
    }

    /// Deletes a firmware image (and its signature). Refused while a live campaign uses it; a
    /// finished campaign that used it is its history, kept unless `purge`, which deletes those
    /// campaigns too.
    pub async fn delete_firmware(
        &self,
        product: &ProductId,
        module: &Module,
        version: &Version,
        purge: bool,
    ) -> Result<Removed> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, sha256 FROM firmware WHERE product_id = $1 AND module = $2 AND version = $3",
        )
        .bind(product.as_str())
        .bind(module.as_str())
        .bind(version.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, sha256)) = found else {
            return Err(StoreError::NotFound(format!(
                "firmware {product} {version} (module {module})"
            )));
        };
        let subject = format!("firmware {product} {version} (module {module})");
        let used: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, state FROM campaigns WHERE firmware_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let live: Vec<(i64, String)> = used
            .iter()
            .filter(|(_, state)| !matches!(state.as_str(), "finished" | "canceled" | "aborted"))
            .cloned()
            .collect();
        if !live.is_empty() {
            return Err(StoreError::Conflict(format!(
                "{subject} is used by live campaign{} {}: cancel {} or wait for {} to finish",
                plural(live.len()),
                describe(&live),
                if live.len() == 1 { "it" } else { "them" },
                if live.len() == 1 { "it" } else { "them" },
            )));
        }
        if !used.is_empty() && !purge {
            return Err(StoreError::Conflict(format!(
                "{subject} is the history of finished campaign{} {}: delete with purge (`otter firmware delete --purge`) to delete {} too",
                plural(used.len()),
                describe(&used),
                if used.len() == 1 { "it" } else { "them" },
            )));
        }
        let campaigns: Vec<i64> = used.iter().map(|(id, _)| *id).collect();
        let statements = [
            "DELETE FROM campaign_bakes WHERE campaign_id IN (SELECT id FROM campaigns WHERE firmware_id = $1)",
            "DELETE FROM upgrade_events WHERE campaign_id IN (SELECT id FROM campaigns WHERE firmware_id = $1)",
            "DELETE FROM upgrades WHERE campaign_id IN (SELECT id FROM campaigns WHERE firmware_id = $1)",
            "DELETE FROM campaigns WHERE firmware_id = $1",
            "DELETE FROM firmware_signatures WHERE firmware_id = $1",
        ];
        for sql in statements {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM firmware WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| busy(e, || subject.clone()))?;
        let unreferenced_blobs = unreferenced(&mut tx, vec![sha256]).await?;
        tx.commit().await?;
        Ok(Removed {
            firmware: 1,
            campaigns,
            unreferenced_blobs,
            ..Removed::default()
        })
    }

    /// Whether any firmware row names the blob `sha256`.
    pub async fn blob_referenced(&self, sha256: &str) -> Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM firmware WHERE sha256 = $1 LIMIT 1")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }
}

/// The blobs of `shas` that no firmware row references (as seen by `tx`).
async fn unreferenced(tx: &mut Transaction<'static, Db>, shas: Vec<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for sha in shas {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM firmware WHERE sha256 = $1 LIMIT 1")
                .bind(&sha)
                .fetch_optional(&mut **tx)
                .await?;
        if found.is_none() {
            out.push(sha);
        }
    }
    Ok(out)
}

/// A foreign-key violation on a delete means a row that needs it was added meanwhile (another
/// node started a campaign between the check and the delete): a conflict, tried again later.
fn busy(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Conflict(format!(
                "{} is now in use by a campaign started meanwhile; try again",
                what()
            ))
        }
        _ => StoreError::Database(e),
    }
}
