//! Otter's persistent state: products, devices, firmware, campaigns and device upgrades.
//!
//! Architecture invariant: this is the only crate that writes SQL. It speaks otter-core's types, so
//! callers never see rows or strings that were not validated. Two engines run the same queries:
//! SQLite (the embedded default) and PostgreSQL (several nodes sharing one database). The query
//! code in `sql/` is written once with `$n` placeholders and portable SQL, and compiled once per
//! engine (the `sqlite` and `postgres` modules below); `Store` forwards each call to the engine
//! it opened. The few differences in SQL are the dialect macros each engine module defines.

mod idle;
mod postgres;
mod records;
mod sqlite;
mod store;

pub use records::*;
pub use store::{Store, backup_sqlite};

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
    #[error("database file: {0}")]
    File(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
