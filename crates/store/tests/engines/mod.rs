//! The databases a test runs against: a fresh SQLite file always, and a fresh PostgreSQL
//! database (`CREATE DATABASE otter_test_…` on the server `OTTER_TEST_POSTGRES_URL` names) when
//! that variable is set. In CI (`CI` set) the variable is required: PostgreSQL never goes untested
//! there without a failure saying so.

use otter_store::Store;
use sqlx::Connection;
use std::sync::atomic::{AtomicU32, Ordering};

const PG_URL: &str = "OTTER_TEST_POSTGRES_URL";

/// One fresh database; `open` may be called again to reopen it.
pub struct TestDb {
    pub engine: &'static str,
    url: String,
    /// PostgreSQL: the admin URL and the database's name, to drop it.
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn open(&self) -> Store {
        match Store::open(&self.url).await {
            Ok(store) => {
                assert_eq!(store.engine(), self.engine);
                store
            }
            Err(e) => panic!("opening the {} test database: {e}", self.engine),
        }
    }

    /// Drops a PostgreSQL database (a failed test leaves its database behind for a look).
    pub async fn drop(self) {
        if let Some((admin, name)) = &self.pg {
            let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// Fresh databases on every engine under test.
pub async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = TestDb {
        engine: "sqlite",
        url: dir.path().join("otter.db").to_string_lossy().into_owned(),
        pg: None,
        _dir: Some(dir),
    };
    let mut dbs = vec![sqlite];
    match std::env::var(PG_URL) {
        Ok(admin) if !admin.is_empty() => dbs.push(postgres(&admin).await),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {PG_URL} is not: the PostgreSQL engine would go untested")
        }
        _ => {}
    }
    dbs
}

/// Creates `otter_test_<pid>_<time>_<n>` on the server at `admin`.
async fn postgres(admin: &str) -> TestDb {
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
        Err(e) => panic!("{PG_URL}={admin}: {e}"),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    TestDb {
        engine: "postgres",
        url: with_database(admin, &name),
        pg: Some((admin.to_owned(), name)),
        _dir: None,
    }
}

/// `admin` with its database (the URL's path) replaced by `name`, keeping any `?parameters`.
fn with_database(admin: &str, name: &str) -> String {
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
