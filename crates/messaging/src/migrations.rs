//! The outbox and inbox tables. Each service applies these beside its own
//! migrations; both migrators ignore each other's rows in `_sqlx_migrations`
//! (the versions here start at 1000001 so they never collide).

use sqlx::{PgPool, SqlitePool};

/// The outbox and inbox tables, per engine, and the embedded bus's own tables.
const POSTGRES: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/postgres": "1000001_outbox_inbox.sql");
const SQLITE: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/sqlite": "1000001_outbox_inbox.sql");
const BUS: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/bus": "1_embedded_bus.sql");

/// The outbox and inbox tables, applied by every service after its own.
pub const OUTBOX: emporium_db::Migrations = emporium_db::Migrations {
    postgres: POSTGRES,
    sqlite: SQLITE,
};

pub async fn run_postgres(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    OUTBOX.run(&emporium_db::Db::Postgres(pool.clone())).await
}

pub async fn run_sqlite(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    OUTBOX.run(&emporium_db::Db::Sqlite(pool.clone())).await
}

pub(crate) async fn run_bus(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    emporium_db::embed::migrator(BUS).run(pool).await
}

emporium_db::migrations_are_listed!(POSTGRES => "migrations/postgres", SQLITE => "migrations/sqlite", BUS => "migrations/bus");
