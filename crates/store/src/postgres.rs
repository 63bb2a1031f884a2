//! The PostgreSQL engine, for several nodes sharing one database: the query code of `sql/` over
//! `sqlx::Postgres`.

pub(crate) type Db = sqlx::Postgres;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// `(SELECT value FROM <the JSON array of strings bound at $n>)`.
macro_rules! text_array {
    ($param:literal) => {
        concat!(
            "(SELECT value FROM json_array_elements_text(CAST(",
            $param,
            " AS json)))"
        )
    };
}

/// `<rows> AS x` with columns p, d, m, v, t: version reports bound at $n as a JSON array of
/// `{"p","d","m","v","t"}` objects.
macro_rules! report_rows {
    ($param:literal) => {
        concat!(
            "json_to_recordset(CAST(",
            $param,
            " AS json)) AS x(p TEXT, d TEXT, m TEXT, v TEXT, t BIGINT)"
        )
    };
}

// Deliberately the same files in both engines: one set of queries, compiled per engine.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
pub(crate) use sql::Engine;
