//! The `idempotency_keys` table: its migrations and every statement on it.
//!
//! Each statement is written once, with `$n` placeholders (which SQLite
//! accepts as well), and run on whichever engine the [`Db`] holds.

use anyhow::Context;
use emporium_db::Db;

pub(super) const IN_FLIGHT: &str = "in_flight";
pub(super) const DONE: &str = "done";

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
pub const MIGRATIONS: emporium_db::Migrations =
    emporium_db::migrations!("2000001_idempotency_keys.sql");

emporium_db::record! {
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
}

/// A key as one execution holds it.
pub(super) struct Claim {
    pub principal: String,
    pub key: String,
    /// The lease's end; also the token that proves the row is still ours.
    pub locked_until: i64,
}

/// Claims a new key in one statement: true if this call inserted the row
/// (in flight, leased until `locked_until`), false if the key already exists.
pub(super) async fn insert(
    db: &Db,
    c: &Claim,
    fingerprint: &str,
    now: i64,
) -> anyhow::Result<bool> {
    const SQL: &str = "INSERT INTO idempotency_keys \
        (principal, key, fingerprint, state, locked_until, created_at) \
        VALUES ($1, $2, $3, 'in_flight', $4, $5) \
        ON CONFLICT (principal, key) DO NOTHING";
    let values = (&c.principal, &c.key, fingerprint, c.locked_until, now);
    let inserted = db.sql().execute(SQL, values).await;
    Ok(inserted.context("cannot claim an idempotency key")? == 1)
}

pub(super) async fn get(db: &Db, c: &Claim) -> anyhow::Result<Option<KeyRow>> {
    const SQL: &str = "SELECT fingerprint, state, locked_until, created_at, \
        response_status, response_headers, response_body \
        FROM idempotency_keys WHERE principal = $1 AND key = $2";
    let row = db.sql().fetch_optional(SQL, (&c.principal, &c.key)).await;
    row.context("cannot read an idempotency key")
}

/// Takes over a key whose row expired (`created_at < expired_before`) or whose
/// executor's lease ran out (`locked_until < now`), as a fresh in-flight row.
/// True if this call took it (another caller may have been first).
pub(super) async fn take_over(
    db: &Db,
    c: &Claim,
    fingerprint: &str,
    (now, expired_before): (i64, i64),
) -> anyhow::Result<bool> {
    const SQL: &str = "UPDATE idempotency_keys SET fingerprint = $3, state = 'in_flight', \
        locked_until = $4, created_at = $5, \
        response_status = NULL, response_headers = NULL, response_body = NULL \
        WHERE principal = $1 AND key = $2 \
        AND (created_at < $6 OR (state = 'in_flight' AND locked_until < $5))";
    let values = (
        &c.principal,
        &c.key,
        fingerprint,
        c.locked_until,
        now,
        expired_before,
    );
    let taken = db.sql().execute(SQL, values).await;
    Ok(taken.context("cannot take over an idempotency key")? == 1)
}

/// An answer as stored: status, headers (as JSON), body.
pub(super) struct Answer<'a> {
    pub status: i32,
    pub headers: &'a str,
    pub body: &'a [u8],
}

/// Stores the answer of the execution holding `c`'s lease. False if that
/// execution no longer owns the row (its lease ran out and another request
/// took the key over).
pub(super) async fn finish(db: &Db, c: &Claim, answer: &Answer<'_>) -> anyhow::Result<bool> {
    const SQL: &str = "UPDATE idempotency_keys SET state = 'done', \
        response_status = $3, response_headers = $4, response_body = $5 \
        WHERE principal = $1 AND key = $2 AND state = 'in_flight' AND locked_until = $6";
    let (status, headers, body) = (answer.status, answer.headers, answer.body);
    let values = (&c.principal, &c.key, status, headers, body, c.locked_until);
    let done = db.sql().execute(SQL, values).await;
    Ok(done.context("cannot store an idempotent response")? == 1)
}

/// Forgets the key held by the execution with `c`'s lease, so that a retry
/// executes again. False if that execution no longer owns it.
pub(super) async fn release(db: &Db, c: &Claim) -> anyhow::Result<bool> {
    const SQL: &str = "DELETE FROM idempotency_keys \
        WHERE principal = $1 AND key = $2 AND state = 'in_flight' AND locked_until = $3";
    let values = (&c.principal, &c.key, c.locked_until);
    let deleted = db.sql().execute(SQL, values).await;
    Ok(deleted.context("cannot release an idempotency key")? == 1)
}

/// Deletes the rows created before `expired_before`, except an execution
/// still holding its lease.
pub(super) async fn purge(db: &Db, expired_before: i64, now: i64) -> anyhow::Result<u64> {
    const SQL: &str = "DELETE FROM idempotency_keys WHERE created_at < $1 \
        AND (state = 'done' OR locked_until < $2)";
    let purged = db.sql().execute(SQL, (expired_before, now)).await;
    purged.context("cannot purge expired idempotency keys")
}

emporium_db::migrations_are_listed!(MIGRATIONS);
