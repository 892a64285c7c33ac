//! The SQL behind [`AccountsStore`], written once and instantiated for both engines.

use std::sync::Arc;

use emporium_db::{Db, Dialect};
use emporium_messaging::outbox::Outbox;
use uuid::Uuid;

use super::{AccountsStore, StoreError};

/// The service's own migration files, per engine.
pub const POSTGRES: &[emporium_db::embed::MigrationFile] = emporium_db::migration_files!("migrations/postgres": "0001_accounts.sql", "0002_throttle.sql", "0003_token_generation.sql", "0004_email_skeleton.sql");
pub const SQLITE: &[emporium_db::embed::MigrationFile] = emporium_db::migration_files!("migrations/sqlite": "0001_accounts.sql", "0002_throttle.sql", "0003_token_generation.sql", "0004_email_skeleton.sql");

/// The service's own migrations (the outbox and inbox tables come from
/// emporium-messaging).
const MIGRATIONS: emporium_db::Migrations = emporium_db::Migrations {
    postgres: POSTGRES,
    sqlite: SQLITE,
};

/// The accounts store on either engine: each statement is written once and
/// run on whichever pool the [`Db`] holds ([`emporium_db::on_db!`]).
pub struct SqlStore {
    pub(super) db: Db,
}

/// The row-lock suffix of the engine `pool` is on.
pub(super) fn row_lock<DB: Dialect>(_pool: &sqlx::Pool<DB>) -> &'static str {
    DB::ROW_LOCK
}

/// What serialises registrations of one skeleton, so the look-alike check
/// and the insert are one step (there is no row to lock before the insert).
pub(super) trait SkeletonLock {
    const SQL: &'static str;
}

impl SkeletonLock for sqlx::Postgres {
    const SQL: &'static str = "SELECT pg_advisory_xact_lock(hashtext($1))";
}

/// SQLite's write lock (`BEGIN IMMEDIATE`) serialises registrations already.
impl SkeletonLock for sqlx::Sqlite {
    const SQL: &'static str = "";
}

pub(super) fn skeleton_lock<DB: SkeletonLock + sqlx::Database>(
    _pool: &sqlx::Pool<DB>,
) -> &'static str {
    DB::SQL
}

/// Opens the store named by `url`, applying migrations first.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn AccountsStore>> {
    Ok(Arc::new(SqlStore {
        db: emporium_db::open_service_db(
            url,
            max_connections,
            &[MIGRATIONS, emporium_messaging::migrations::OUTBOX],
        )
        .await?,
    }))
}

/// Applies migrations and nothing else (`emporium migrate accounts`).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    connect(url, 1).await.map(|_| ())
}

pub(super) const USER_COLUMNS: &str = "id, email, name, password_hash, roles, disabled, closed, created_at, \
     updated_at, token_generation";

/// An enabled, open admin (roles are comma-separated names).
pub(super) const ENABLED_ADMIN: &str =
    "closed = FALSE AND disabled = FALSE AND roles LIKE '%admin%'";

#[async_trait::async_trait]
impl AccountsStore for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    fn outbox(&self) -> Outbox {
        Outbox(self.db.clone())
    }
}

pub(super) async fn revoke_all_families<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    user_id: Uuid,
    now: i64,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    sqlx::query::<DB>(
        "UPDATE refresh_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every enabled admin's id, their rows locked (`for_update`) in id order, so
/// changes that could leave the shop without an admin take turns.
pub(super) async fn lock_enabled_admins<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    for_update: &str,
) -> Result<Vec<Uuid>, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    Uuid: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    (Uuid,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<(Uuid,)> = sqlx::query_as::<DB, (Uuid,)>(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM users WHERE {ENABLED_ADMIN} ORDER BY id{for_update}"
    )))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Refuses the transaction's change if no enabled admin is left.
pub(super) async fn ensure_an_admin_remains<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let (left,): (i64,) = sqlx::query_as::<DB, (i64,)>(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM users WHERE {ENABLED_ADMIN}"
    )))
    .fetch_one(&mut **tx)
    .await?;
    if left == 0 {
        return Err(StoreError::Refused(super::refused::LAST_ADMIN));
    }
    Ok(())
}

emporium_db::migrations_are_listed!(POSTGRES => "migrations/postgres", SQLITE => "migrations/sqlite");
