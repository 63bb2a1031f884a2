//! Throwaway PostgreSQL databases: `CREATE DATABASE otter_test_…` on the server
//! `OTTER_TEST_POSTGRES_URL` names (`scripts/pg-throwaway.sh`), one per test.

use sqlx::Connection;
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable naming the PostgreSQL test server (an admin URL).
pub const URL_VAR: &str = "OTTER_TEST_POSTGRES_URL";

/// The PostgreSQL test server's admin URL, or `None` outside CI when unset (the PostgreSQL cases
/// are then skipped); under `CI` a missing server fails the test.
pub fn admin_url() -> Option<String> {
    crate::required_env(URL_VAR, "scripts/pg-throwaway.sh", "PostgreSQL cases")
}

/// A database of its own on the test server.
pub struct Database {
    /// The database's URL: the admin URL with its database replaced.
    pub url: String,
    pub name: String,
    admin: String,
}

impl Database {
    /// Creates `otter_test_<pid>_<time>_<n>` on the server at `admin`.
    pub async fn create(admin: &str) -> Database {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "otter_test_{}_{nanos}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = match sqlx::PgConnection::connect(admin).await {
            Ok(conn) => conn,
            Err(e) => panic!("{URL_VAR}={admin}: {e}"),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Database {
            url: with_database(admin, &name),
            name,
            admin: admin.to_owned(),
        }
    }

    /// Drops the database. Not done on `Drop`: a failed test leaves its database behind for a
    /// look.
    pub async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// `admin` with its database (the URL's path) replaced by `name`, keeping any `?parameters`.
pub fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

#[test]
fn database_replaced_in_url() {
    assert_eq!(
        with_database("postgres://u@h:5/postgres?sslmode=disable", "x"),
        "postgres://u@h:5/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
}
