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

/// A connection to the test server's admin database, or a clear error within 10 s.
pub async fn admin_connection() -> anyhow::Result<PgConnection> {
    const NEEDED: &str = "the PostgreSQL-backed tests need a server at \
         EMPORIUM_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres)";
    // A server that accepts and never answers (or a firewall that drops
    // packets) must fail the test, not hang it.
    let connect_timeout = std::time::Duration::from_secs(10);
    tokio::time::timeout(
        connect_timeout,
        PgConnection::connect(&postgres_admin_url()),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "{NEEDED}: no connection within {}s",
            connect_timeout.as_secs()
        )
    })?
    .context(NEEDED)
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
        Self::create_postgres("").await
    }

    /// Creates `test_<uuid>` as a copy of the database `template` (which
    /// nobody may be connected to).
    pub async fn postgres_from_template(template: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            template
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "a template name is lower-case letters, digits and underscores"
        );
        Self::create_postgres(&format!(" TEMPLATE {template}")).await
    }

    async fn create_postgres(clause: &str) -> anyhow::Result<Self> {
        let admin_url = postgres_admin_url();
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = admin_connection().await?;
        // The name is generated here from a UUID, the clause from a checked name.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}{clause}")))
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

/// Runs each `async fn name(engine: Engine)` twice, as the tests
/// `name::sqlite` and `name::postgres` (PostgreSQL must be reachable: the test
/// fails otherwise, it never skips). For store-level tests; a service's HTTP
/// tests use `emporium_testkit::both!`.
#[macro_export]
macro_rules! on_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Engine::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Engine::Postgres).await;
            }
        }
    )*};
}
