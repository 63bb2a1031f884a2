//! Device secrets as stored values. The store never interprets them: the server seals each
//! secret with its own key before it gets here (see otter-server `secrets`), so these functions
//! only move opaque text — for rotation and for sealing databases written before sealing existed.

use super::Engine;
use crate::*;
use otter_core::{DeviceName, ProductId};

impl Engine {
    /// Replaces a device's stored secret.
    pub async fn set_device_secret(
        &self,
        product: &ProductId,
        name: &DeviceName,
        secret: &str,
    ) -> Result<()> {
        let done =
            sqlx::query("UPDATE devices SET secret = $1 WHERE product_id = $2 AND name = $3")
                .bind(secret)
                .bind(product.as_str())
                .bind(name.as_str())
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("device {product}/{name}")));
        }
        Ok(())
    }

    /// Every device whose stored secret does not start with `prefix`, as (product, device,
    /// stored secret): the ones a sealing pass still has to seal.
    pub async fn device_secrets_without_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT product_id, name, secret FROM devices WHERE substr(secret, 1, length($1)) <> $1",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One device whose stored secret starts with `prefix`, as (product, device, stored
    /// secret), or `None` when there is none.
    pub async fn device_secret_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT product_id, name, secret FROM devices WHERE substr(secret, 1, length($1)) = $1 LIMIT 1",
        )
        .bind(prefix)
        .fetch_optional(&self.reads)
        .await?)
    }

    /// A trivial query: the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        Ok(())
    }
}
