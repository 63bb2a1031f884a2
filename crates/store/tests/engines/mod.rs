//! The databases a test runs against: a fresh SQLite file always, and a fresh PostgreSQL
//! database (otter-testkit's `pg`: `CREATE DATABASE otter_test_…` on the server
//! `OTTER_TEST_POSTGRES_URL` names) when that variable is set. In CI (`CI` set) the variable is
//! required: PostgreSQL never goes untested there without a failure saying so.

use otter_store::Store;
use otter_testkit::pg;

/// One fresh database; `open` may be called again to reopen it.
pub struct TestDb {
    pub engine: &'static str,
    url: String,
    /// PostgreSQL: the database, to drop it.
    pg: Option<pg::Database>,
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
        if let Some(db) = self.pg {
            db.drop().await;
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
    if let Some(admin) = pg::admin_url() {
        let db = pg::Database::create(&admin).await;
        dbs.push(TestDb {
            engine: "postgres",
            url: db.url.clone(),
            pg: Some(db),
            _dir: None,
        });
    }
    dbs
}
