//! The outbox and inbox tables. Each service applies these beside its own
//! migrations; both migrators ignore each other's rows in `_sqlx_migrations`
//! (the versions here start at 1000001 so they never collide).

use sqlx::migrate::Migrator;
use sqlx::{PgPool, SqlitePool};

pub async fn run_postgres(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator: Migrator = sqlx::migrate!("./migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

pub async fn run_sqlite(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator: Migrator = sqlx::migrate!("./migrations/sqlite");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

pub(crate) async fn run_bus(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations/bus").run(pool).await
}
