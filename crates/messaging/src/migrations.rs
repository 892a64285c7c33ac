//! The outbox and inbox tables. Each service applies these beside its own
//! migrations; both migrators ignore each other's rows in `_sqlx_migrations`
//! (the versions here start at 1000001 so they never collide).

use sqlx::migrate::Migrator;
use sqlx::{PgPool, SqlitePool};

/// The outbox and inbox tables, per engine, and the embedded bus's own tables.
const POSTGRES: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/postgres": "1000001_outbox_inbox.sql");
const SQLITE: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/sqlite": "1000001_outbox_inbox.sql");
const BUS: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/bus": "1_embedded_bus.sql");

pub async fn run_postgres(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator: Migrator = emporium_db::embed::migrator(POSTGRES);
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

pub async fn run_sqlite(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator: Migrator = emporium_db::embed::migrator(SQLITE);
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

pub(crate) async fn run_bus(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    emporium_db::embed::migrator(BUS).run(pool).await
}

/// Opens the database named by `url` and applies the service's own migrations
/// (`own` gives them per engine, with `ignore_missing` set by this function)
/// and then the outbox and inbox tables.
pub async fn open_service_db(
    url: &str,
    max_connections: u32,
    own: fn(emporium_db::Engine) -> Migrator,
) -> anyhow::Result<emporium_db::Db> {
    let engine = emporium_db::Engine::of(url)?;
    let mut migrator = own(engine);
    migrator.set_ignore_missing(true);
    Ok(match engine {
        emporium_db::Engine::Postgres => {
            let pool = emporium_db::connect_postgres(url, max_connections).await?;
            migrator.run(&pool).await?;
            run_postgres(&pool).await?;
            emporium_db::Db::Postgres(pool)
        }
        emporium_db::Engine::Sqlite => {
            let pool = emporium_db::connect_sqlite(url, max_connections).await?;
            migrator.run(&pool).await?;
            run_sqlite(&pool).await?;
            emporium_db::Db::Sqlite(pool)
        }
    })
}

emporium_db::migrations_are_listed!(POSTGRES => "migrations/postgres", SQLITE => "migrations/sqlite", BUS => "migrations/bus");
