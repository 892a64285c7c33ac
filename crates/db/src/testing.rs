//! Test databases: one fresh PostgreSQL database per test, dropped when the
//! handle is dropped, and temporary SQLite files.
//!
//! The server is `EMPORIUM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Tests that need it fail when
//! it is unreachable; they never skip silently.

use anyhow::Context;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

pub fn postgres_admin_url() -> String {
    std::env::var("EMPORIUM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for the life of this value.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    cleanup: Option<Cleanup>,
}

#[derive(Debug)]
enum Cleanup {
    Postgres { admin_url: String, name: String },
    File(std::path::PathBuf),
}

impl TestDatabase {
    /// Creates `test_<uuid>` on the test PostgreSQL server.
    pub async fn postgres() -> anyhow::Result<Self> {
        let admin_url = postgres_admin_url();
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin_url).await.with_context(|| {
            "the PostgreSQL-backed tests need a server at EMPORIUM_TEST_POSTGRES_URL \
             (default postgres://postgres@127.0.0.1:5432/postgres)"
        })?;
        // The name is generated here from a UUID, never from input.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        Ok(Self {
            url: format!("{base}/{name}"),
            cleanup: Some(Cleanup::Postgres { admin_url, name }),
        })
    }

    /// A SQLite file in the temp directory, removed afterwards.
    pub fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("emporium-test-{}.db", uuid::Uuid::now_v7()));
        Self {
            url: crate::sqlite_url(&path),
            cleanup: Some(Cleanup::File(path)),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self.cleanup.take() {
            Some(Cleanup::Postgres { admin_url, name }) => {
                // Drop runs outside async; a small runtime on its own thread does the I/O.
                let done = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                        sqlx::query(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await
                        .ok()?;
                        Some(())
                    })
                });
                let _ = done.join();
            }
            Some(Cleanup::File(path)) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            None => {}
        }
    }
}
