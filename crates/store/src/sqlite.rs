//! The SQLite engine, the embedded default: the query code of `sql/` over `sqlx::Sqlite`.

pub(crate) type Db = sqlx::Sqlite;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// `(SELECT value FROM <the JSON array of strings bound at $n>)`.
macro_rules! text_array {
    ($param:literal) => {
        concat!("(SELECT value FROM json_each(", $param, "))")
    };
}

// Deliberately the same files in both engines: one set of queries, compiled per engine.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
pub(crate) use sql::Engine;
