//! Otter's persistent state: products, devices, firmware, campaigns and device upgrades.
//!
//! Architecture invariant: this is the only crate that writes SQL. It speaks otter-core's types, so
//! callers never see rows or strings that were not validated. SQLite is the embedded default;
//! queries use `$n` placeholders and portable SQL so the PostgreSQL engine can reuse them.

mod records;
mod sqlite;

pub use records::*;
pub use sqlite::Store;
pub use sqlite::tokens::ApiToken;

/// Milliseconds since the Unix epoch: the store's one time unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
