//! Signing keys and firmware signatures (`0004_signing.sql`): the public half of signed
//! firmware. The rules (who may add a key, whether a signature verifies) are the server's;
//! this only stores and reads.

use super::{Engine, conflict_or, convert, corrupt};
use crate::{FirmwareSignature, ProductKey, Result, StoreError, now_ms};
use otter_core::ProductId;
use sqlx::FromRow;

#[derive(FromRow)]
struct KeyRow {
    product_id: String,
    key_id: String,
    public_key: String,
    signed_by: Option<String>,
    announcement: Option<String>,
    created_at: i64,
}

impl TryFrom<KeyRow> for ProductKey {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> Result<Self> {
        Ok(ProductKey {
            product: ProductId::parse(r.product_id).map_err(corrupt)?,
            key_id: r.key_id,
            public_key: r.public_key,
            signed_by: r.signed_by,
            announcement: r.announcement,
            created_at: r.created_at.into(),
        })
    }
}

#[derive(FromRow)]
struct SignatureRow {
    firmware_id: i64,
    key_id: String,
    sig: String,
    issued: i64,
    expires: i64,
    downgrade: bool,
    signed_at: i64,
}

impl From<SignatureRow> for FirmwareSignature {
    fn from(r: SignatureRow) -> Self {
        FirmwareSignature {
            firmware_id: r.firmware_id,
            key_id: r.key_id,
            sig: r.sig,
            issued: r.issued,
            expires: r.expires,
            downgrade: r.downgrade,
            signed_at: r.signed_at.into(),
        }
    }
}

impl Engine {
    /// Registers a public key of a product (the caller checked its announcement).
    pub async fn add_product_key(
        &self,
        product: &ProductId,
        key_id: &str,
        public_key: &str,
        announced: Option<(&str, &str)>,
    ) -> Result<ProductKey> {
        self.product(product).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO product_keys (product_id, key_id, public_key, signed_by, announcement, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(product.as_str())
        .bind(key_id)
        .bind(public_key)
        .bind(announced.map(|a| a.0))
        .bind(announced.map(|a| a.1))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("key {key_id} of {product} already exists")))?;
        Ok(ProductKey {
            product: product.clone(),
            key_id: key_id.into(),
            public_key: public_key.into(),
            signed_by: announced.map(|a| a.0.to_owned()),
            announcement: announced.map(|a| a.1.to_owned()),
            created_at: now.into(),
        })
    }

    /// A product's keys, oldest first.
    pub async fn product_keys(&self, product: &ProductId) -> Result<Vec<ProductKey>> {
        convert(
            sqlx::query_as::<_, KeyRow>(
                "SELECT * FROM product_keys WHERE product_id = $1 ORDER BY created_at, key_id",
            )
            .bind(product.as_str())
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Records (or replaces) the signature of a firmware image.
    pub async fn set_firmware_signature(&self, s: &FirmwareSignature) -> Result<()> {
        self.firmware(s.firmware_id).await?;
        sqlx::query(
            "INSERT INTO firmware_signatures (firmware_id, key_id, sig, issued, expires, downgrade, signed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (firmware_id) DO UPDATE SET key_id = excluded.key_id, sig = excluded.sig, issued = excluded.issued,
                 expires = excluded.expires, downgrade = excluded.downgrade, signed_at = excluded.signed_at",
        )
        .bind(s.firmware_id)
        .bind(&s.key_id)
        .bind(&s.sig)
        .bind(s.issued)
        .bind(s.expires)
        .bind(s.downgrade)
        .bind(s.signed_at.as_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The signature of a firmware image, if it is signed.
    pub async fn firmware_signature(&self, firmware_id: i64) -> Result<Option<FirmwareSignature>> {
        let row: Option<SignatureRow> =
            sqlx::query_as("SELECT * FROM firmware_signatures WHERE firmware_id = $1")
                .bind(firmware_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    /// The signatures of a product's firmware images.
    pub async fn firmware_signatures(&self, product: &ProductId) -> Result<Vec<FirmwareSignature>> {
        let rows: Vec<SignatureRow> = sqlx::query_as(
            "SELECT s.* FROM firmware_signatures s JOIN firmware f ON f.id = s.firmware_id WHERE f.product_id = $1",
        )
        .bind(product.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
