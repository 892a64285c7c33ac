//! The `idempotency_keys` table: its migrations and every statement on it.
//!
//! Each statement is written once, with `$n` placeholders (which SQLite
//! accepts as well), and run on whichever engine the [`Db`] holds.

use anyhow::Context;
use emporium_db::Db;

pub(super) const IN_FLIGHT: &str = "in_flight";
pub(super) const DONE: &str = "done";

/// The idempotency-key table, per engine.
pub(crate) const POSTGRES: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/postgres": "2000001_idempotency_keys.sql");
pub(crate) const SQLITE: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/sqlite": "2000001_idempotency_keys.sql");

/// Creates the `idempotency_keys` table. Services run this beside their own
/// migrations; the versions here (2000001…) never collide with theirs or with
/// emporium-messaging's (1000001…), and each migrator ignores the others' rows.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    MIGRATIONS
        .run(db)
        .await
        .context("cannot apply the idempotency-key migrations")
}

/// The `idempotency_keys` table on both engines, for
/// [`emporium_db::open_service_db`] beside a service's own migrations.
pub const MIGRATIONS: emporium_db::Migrations = emporium_db::Migrations {
    postgres: POSTGRES,
    sqlite: SQLITE,
};

/// A stored key as read back.
#[derive(Debug)]
pub(super) struct KeyRow {
    pub fingerprint: String,
    pub state: String,
    pub locked_until: i64,
    pub created_at: i64,
    pub response_status: Option<i32>,
    pub response_headers: Option<String>,
    pub response_body: Option<Vec<u8>>,
}

type KeyTuple = (
    String,
    String,
    i64,
    i64,
    Option<i32>,
    Option<String>,
    Option<Vec<u8>>,
);

impl From<KeyTuple> for KeyRow {
    fn from(t: KeyTuple) -> Self {
        Self {
            fingerprint: t.0,
            state: t.1,
            locked_until: t.2,
            created_at: t.3,
            response_status: t.4,
            response_headers: t.5,
            response_body: t.6,
        }
    }
}

/// Claims a new key in one statement: true if this call inserted the row
/// (in flight, leased until `locked_until`), false if the key already exists.
pub(super) async fn insert(
    db: &Db,
    principal: &str,
    key: &str,
    fingerprint: &str,
    now: i64,
    locked_until: i64,
) -> anyhow::Result<bool> {
    const SQL: &str = "INSERT INTO idempotency_keys \
        (principal, key, fingerprint, state, locked_until, created_at) \
        VALUES ($1, $2, $3, 'in_flight', $4, $5) \
        ON CONFLICT (principal, key) DO NOTHING";
    let inserted = emporium_db::on_db!(db, |pool| sqlx::query(SQL)
        .bind(principal)
        .bind(key)
        .bind(fingerprint)
        .bind(locked_until)
        .bind(now)
        .execute(pool)
        .await
        .context("cannot claim an idempotency key")?
        .rows_affected());
    Ok(inserted == 1)
}

pub(super) async fn get(db: &Db, principal: &str, key: &str) -> anyhow::Result<Option<KeyRow>> {
    const SQL: &str = "SELECT fingerprint, state, locked_until, created_at, \
        response_status, response_headers, response_body \
        FROM idempotency_keys WHERE principal = $1 AND key = $2";
    let row = emporium_db::on_db!(db, |pool| sqlx::query_as::<_, KeyTuple>(SQL)
        .bind(principal)
        .bind(key)
        .fetch_optional(pool)
        .await
        .context("cannot read an idempotency key")?);
    Ok(row.map(KeyRow::from))
}

/// Takes over a key whose row expired (`created_at < expired_before`) or whose
/// executor's lease ran out (`locked_until < now`), as a fresh in-flight row.
/// True if this call took it (another caller may have been first).
pub(super) async fn take_over(
    db: &Db,
    principal: &str,
    key: &str,
    fingerprint: &str,
    now: i64,
    locked_until: i64,
    expired_before: i64,
) -> anyhow::Result<bool> {
    const SQL: &str = "UPDATE idempotency_keys SET fingerprint = $3, state = 'in_flight', \
        locked_until = $4, created_at = $5, \
        response_status = NULL, response_headers = NULL, response_body = NULL \
        WHERE principal = $1 AND key = $2 \
        AND (created_at < $6 OR (state = 'in_flight' AND locked_until < $5))";
    let taken = emporium_db::on_db!(db, |pool| sqlx::query(SQL)
        .bind(principal)
        .bind(key)
        .bind(fingerprint)
        .bind(locked_until)
        .bind(now)
        .bind(expired_before)
        .execute(pool)
        .await
        .context("cannot take over an idempotency key")?
        .rows_affected());
    Ok(taken == 1)
}

/// Stores the response of the execution holding the lease `locked_until`.
/// False if that execution no longer owns the row (its lease ran out and
/// another request took the key over).
pub(super) async fn finish(
    db: &Db,
    principal: &str,
    key: &str,
    locked_until: i64,
    status: i32,
    headers: &str,
    body: &[u8],
) -> anyhow::Result<bool> {
    const SQL: &str = "UPDATE idempotency_keys SET state = 'done', \
        response_status = $3, response_headers = $4, response_body = $5 \
        WHERE principal = $1 AND key = $2 AND state = 'in_flight' AND locked_until = $6";
    let done = emporium_db::on_db!(db, |pool| sqlx::query(SQL)
        .bind(principal)
        .bind(key)
        .bind(status)
        .bind(headers)
        .bind(body)
        .bind(locked_until)
        .execute(pool)
        .await
        .context("cannot store an idempotent response")?
        .rows_affected());
    Ok(done == 1)
}

/// Forgets the key held by the execution with the lease `locked_until`, so
/// that a retry executes again. False if that execution no longer owns it.
pub(super) async fn release(
    db: &Db,
    principal: &str,
    key: &str,
    locked_until: i64,
) -> anyhow::Result<bool> {
    const SQL: &str = "DELETE FROM idempotency_keys \
        WHERE principal = $1 AND key = $2 AND state = 'in_flight' AND locked_until = $3";
    let deleted = emporium_db::on_db!(db, |pool| sqlx::query(SQL)
        .bind(principal)
        .bind(key)
        .bind(locked_until)
        .execute(pool)
        .await
        .context("cannot release an idempotency key")?
        .rows_affected());
    Ok(deleted == 1)
}

/// Deletes the rows created before `expired_before`, except an execution
/// still holding its lease.
pub(super) async fn purge(db: &Db, expired_before: i64, now: i64) -> anyhow::Result<u64> {
    const SQL: &str = "DELETE FROM idempotency_keys WHERE created_at < $1 \
        AND (state = 'done' OR locked_until < $2)";
    let purged = emporium_db::on_db!(db, |pool| sqlx::query(SQL)
        .bind(expired_before)
        .bind(now)
        .execute(pool)
        .await
        .context("cannot purge expired idempotency keys")?
        .rows_affected());
    Ok(purged)
}

emporium_db::migrations_are_listed!(POSTGRES => "migrations/postgres", SQLITE => "migrations/sqlite");
