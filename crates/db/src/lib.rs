//! Database connections shared by the services.
//!
//! Every service owns its database and picks the engine from its URL:
//! `postgres://…` for production, `sqlite://path` for `emporium up` and
//! embedded use. The store of each service is one trait with a PostgreSQL and
//! a SQLite implementation; this crate only opens pools and test databases.
//!
//! ## Layout
//! - [`Db`]: a pool on either engine; [`Engine`] and [`connect_postgres`] /
//!   [`connect_sqlite`]: tuned pools.
//! - [`embed`]: embedded migrations ([`migration_files!`]) and [`record!`]
//!   structs decoded from rows, without sqlx's proc macros.
//! - [`open_service_db`]: a service's pool with its [`Migrations`] applied.
//! - [`tx`]: [`Tx`], a transaction on either engine.
//! - [`query`]: a statement with a tuple of values (or a list of one type,
//!   for `IN (…)` with [`placeholders`]), on a pool or in a transaction:
//!   `db.sql().fetch_optional(sql, (id,))`, `tx.sql().execute(…)`.
//! - [`dialect`]: what differs between the engines for SQL written once
//!   (how a write begins, row locks).
//! - [`error`]: [`StoreError`], what a refused write means, constraint named.
//! - [`clock`]: the injected time the stores read ([`Clock`]).
//! - [`testing`]: a fresh PostgreSQL database per test, dropped afterwards.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub mod clock;
pub mod dialect;
pub mod embed;
pub mod error;
pub mod query;
pub mod testing;
pub mod tx;

pub use clock::{Clock, ManualClock, SharedClock, ShiftedClock, SystemClock, system_clock};
pub use dialect::{Dialect, begin_write};
pub use error::StoreError;
pub use query::{Args, Row, Sql, Value, placeholders};
/// The sqlx the stores are written against (for [`record!`]).
pub use sqlx;
pub use tx::Tx;

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

impl Engine {
    pub fn of(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            anyhow::bail!(
                "database URL must start with postgres:// or sqlite: (got another scheme)"
            )
        }
    }
}

/// A service's database: one pool on one of the two engines.
///
/// Stores, the outbox and the idempotency keys all hold this one type, so
/// engine dispatch is written once per query site, not once per type.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    /// Opens a pool on the database `url` names (no migrations).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Ok(match Engine::of(url)? {
            Engine::Postgres => Self::Postgres(connect_postgres(url, max_connections).await?),
            Engine::Sqlite => Self::Sqlite(connect_sqlite(url, max_connections).await?),
        })
    }

    pub fn engine(&self) -> Engine {
        match self {
            Self::Postgres(_) => Engine::Postgres,
            Self::Sqlite(_) => Engine::Sqlite,
        }
    }

    /// Waits for the pool's connections to close.
    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// One part's migrations on both engines: a service's own, or the outbox's.
/// Each part's migrator ignores the others' rows in `_sqlx_migrations`, so
/// their versions must not collide.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub postgres: &'static [embed::MigrationFile],
    pub sqlite: &'static [embed::MigrationFile],
}

impl Migrations {
    fn migrator(&self, engine: Engine) -> sqlx::migrate::Migrator {
        let mut migrator = embed::migrator(match engine {
            Engine::Postgres => self.postgres,
            Engine::Sqlite => self.sqlite,
        });
        migrator.set_ignore_missing(true);
        migrator
    }

    /// Applies these migrations to `db`.
    pub async fn run(&self, db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
        let migrator = self.migrator(db.engine());
        on_db!(db, |pool| migrator.run(pool).await)
    }
}

/// Opens a service's database named by `url` and applies `parts` in order
/// (the service's own migrations first, then the outbox's).
pub async fn open_service_db(
    url: &str,
    max_connections: u32,
    parts: &[Migrations],
) -> anyhow::Result<Db> {
    let db = Db::connect(url, max_connections).await?;
    for part in parts {
        part.run(&db).await?;
    }
    Ok(db)
}

/// A PostgreSQL pool. Connections are opened lazily and reused.
pub async fn connect_postgres(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    // The server's notices (such as "relation … already exists, skipping" when
    // migrations run again) are not the operator's business below a warning.
    let options = PgConnectOptions::from_str(url)
        .context("invalid PostgreSQL URL")?
        .options([("client_min_messages", "warning")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL")
}

/// A SQLite pool on a file (created when missing) in WAL mode.
///
/// Writers queue on SQLite's lock; `busy_timeout` makes them wait instead of
/// failing, and write transactions are begun `IMMEDIATE` by the stores so a
/// reader never has to upgrade its lock (which SQLite refuses rather than waits).
pub async fn connect_sqlite(url: &str, max_connections: u32) -> anyhow::Result<SqlitePool> {
    create_private_file(url)?;
    let options = SqliteConnectOptions::from_str(url)
        .context("invalid SQLite URL")?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Pages are read through a memory map rather than a system call
        // each, and each connection keeps 16 MiB of them.
        .pragma("mmap_size", "268435456")
        .pragma("cache_size", "-16384");
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("cannot open the SQLite database")
}

/// Creates the database file readable by its owner only (0600) before SQLite
/// opens it, so it never exists with wider permissions; SQLite gives its
/// `-wal` and `-shm` files the same mode as the database file. Files of an
/// older installation that others could read are tightened to 0600.
fn create_private_file(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => tighten(path),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot create {path}"))),
    }
}

/// Takes group and other permissions off an existing database and its journals.
fn tighten(path: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    for file in [
        path.to_owned(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("cannot make {file} private"))?;
            tracing::warn!(file = %file, "A database file others could read was made private.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private_even_from_an_older_installation() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("emporium-db-modes-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let fresh = dir.join("fresh.db");
        let pool = connect_sqlite(&sqlite_url(&fresh), 1).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(mode(&fresh), 0o600);
        let wal = dir.join("fresh.db-wal");
        assert_eq!(mode(&wal), 0o600, "the journal follows the database file");
        pool.close().await;

        let old = dir.join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let pool = connect_sqlite(&sqlite_url(&old), 1).await.unwrap();
        assert_eq!(mode(&old), 0o600);
        pool.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `sqlite://<path>` for a file path.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The `[database]` section of a service's settings.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://path`; may hold a password, so never printed.
    pub url: emporium_config::Secret,
    pub max_connections: u32,
}
