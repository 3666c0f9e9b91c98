//! A fresh, empty database per test, on either backend.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{Connection, PgConnection};

use mailroom_store::Backend;

/// The PostgreSQL admin URL used to create and drop test databases.
pub fn postgres_admin_url() -> String {
    std::env::var("MAILROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// The SQLite folder (kept alive for the test), or the PostgreSQL database name.
    sqlite_dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

static PG_WARNED: AtomicBool = AtomicBool::new(false);

impl TestDb {
    /// A new empty database, or `None` (skip) when PostgreSQL is unavailable and not required.
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/mailroom.db", dir.path().display());
                Some(TestDb {
                    backend,
                    url,
                    sqlite_dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) => {
                        if !PG_WARNED.swap(true, Ordering::SeqCst) {
                            eprintln!("PostgreSQL at {admin}: {e}");
                        }
                        return crate::missing_service("PostgreSQL");
                    }
                };
                let name = format!("mailroom_test_{}", crate::token());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&name);
                Some(TestDb {
                    backend,
                    url: url.to_string(),
                    sqlite_dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }

    /// An empty stand-in left behind when a database is moved out of a stopped app.
    pub(crate) fn placeholder() -> Self {
        TestDb {
            backend: Backend::Sqlite,
            url: String::new(),
            sqlite_dir: None,
            pg_name: None,
        }
    }

    /// A second handle on the same database (a second node sharing it); the original owns
    /// the database and drops it.
    pub fn share(&self) -> Self {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            sqlite_dir: None,
            pg_name: None,
        }
    }

    /// The SQLite file and its WAL (for tests that inspect raw bytes).
    pub fn sqlite_files(&self) -> Vec<std::path::PathBuf> {
        let Some(dir) = &self.sqlite_dir else {
            return vec![];
        };
        ["mailroom.db", "mailroom.db-wal"]
            .iter()
            .map(|f| dir.path().join(f))
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Best effort, off the async runtime: drop the database once nothing uses it.
            let admin = postgres_admin_url();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async move {
                        if let Ok(mut c) = PgConnection::connect(&admin).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            )))
                            .execute(&mut c)
                            .await;
                        }
                    });
                }
            });
        }
    }
}
