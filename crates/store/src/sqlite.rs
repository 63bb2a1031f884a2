//! The SQLite engine, the embedded default: the query code of `sql/` over `sqlx::Sqlite`.

pub(crate) type Db = sqlx::Sqlite;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// `(SELECT value FROM <the JSON array of strings bound at $n>)`.
macro_rules! text_array {
    ($param:literal) => {
        concat!("(SELECT value FROM json_each(", $param, "))")
    };
}

/// `<rows> AS x` with columns p, d, m, v, t: version reports bound at $n as a JSON array of
/// `{"p","d","m","v","t"}` objects.
macro_rules! report_rows {
    ($param:literal) => {
        concat!(
            "(SELECT json_extract(value, '$.p') AS p, json_extract(value, '$.d') AS d,
              json_extract(value, '$.m') AS m, json_extract(value, '$.v') AS v,
              json_extract(value, '$.t') AS t FROM json_each(",
            $param,
            ")) AS x"
        )
    };
}

/// `<rows> AS x` with columns c (campaign), p, d, f (from state), s (state), pc (percent), rc,
/// rm (result code, message), r (reason), n (pushes to add), t: upgrade changes bound at $n as
/// a JSON array of objects.
macro_rules! upgrade_rows {
    ($param:literal) => {
        concat!(
            "(SELECT json_extract(value, '$.c') AS c, json_extract(value, '$.p') AS p,
              json_extract(value, '$.d') AS d, json_extract(value, '$.f') AS f,
              json_extract(value, '$.s') AS s,
              json_extract(value, '$.pc') AS pc, json_extract(value, '$.rc') AS rc,
              json_extract(value, '$.rm') AS rm, json_extract(value, '$.r') AS r,
              json_extract(value, '$.n') AS n, json_extract(value, '$.t') AS t
              FROM json_each(",
            $param,
            ")) AS x"
        )
    };
}

/// `<rows> AS x` with columns p, d, o (online), n (connects to add), t: connects and disconnects bound at $n as a
/// JSON array of objects.
macro_rules! online_rows {
    ($param:literal) => {
        concat!(
            "(SELECT json_extract(value, '$.p') AS p, json_extract(value, '$.d') AS d,
              json_extract(value, '$.o') AS o, json_extract(value, '$.n') AS n,
              json_extract(value, '$.t') AS t
              FROM json_each(",
            $param,
            ")) AS x"
        )
    };
}

// Deliberately the same files in both engines: one set of queries, compiled per engine.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
pub(crate) use sql::Engine;
