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

/// `<rows> AS x` with columns c (campaign), p, d, f (from state), s (state), pc (percent), rc,
/// rm (result code, message), r (reason), n (pushes to add), t: upgrade changes bound at $n as
/// a JSON array of objects.
macro_rules! upgrade_rows {
    ($param:literal) => {
        concat!(
            "json_to_recordset(CAST(",
            $param,
            " AS json)) AS x(c BIGINT, p TEXT, d TEXT, f TEXT, s TEXT, pc BIGINT, rc BIGINT, rm TEXT, r TEXT, n BIGINT, t BIGINT)"
        )
    };
}

/// `<rows> AS x` with columns p, d, o (online), n (connects to add), t: connects and disconnects bound at $n as a
/// JSON array of objects.
macro_rules! online_rows {
    ($param:literal) => {
        concat!(
            "json_to_recordset(CAST(",
            $param,
            " AS json)) AS x(p TEXT, d TEXT, o BOOLEAN, n BIGINT, t BIGINT)"
        )
    };
}

// Deliberately the same files in both engines: one set of queries, compiled per engine.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
pub(crate) use sql::Engine;
