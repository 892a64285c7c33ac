//! The SQL behind [`AccountsStore`], written once and instantiated for both engines.

use std::sync::Arc;

use emporium_db::{Db, Dialect, Engine};
use emporium_messaging::Envelope;
use emporium_messaging::migrations::open_service_db;
use emporium_messaging::outbox::{self, Outbox};
use uuid::Uuid;

use super::{
    AccountsStore, ClientRecord, NewUser, RefreshOutcome, SigningKeyRecord, Slot, StoreError,
    UserChange, UserRecord,
};

/// The service's own migration files, per engine.
pub const POSTGRES: &[emporium_db::embed::MigrationFile] = emporium_db::migration_files!("migrations/postgres": "0001_accounts.sql", "0002_throttle.sql", "0003_token_generation.sql", "0004_email_skeleton.sql");
pub const SQLITE: &[emporium_db::embed::MigrationFile] = emporium_db::migration_files!("migrations/sqlite": "0001_accounts.sql", "0002_throttle.sql", "0003_token_generation.sql", "0004_email_skeleton.sql");

/// The service's own migrations; the outbox and inbox tables come from
/// emporium-messaging, so each migrator ignores the other's versions.
fn own_migrations(engine: Engine) -> sqlx::migrate::Migrator {
    match engine {
        Engine::Postgres => emporium_db::embed::migrator(POSTGRES),
        Engine::Sqlite => emporium_db::embed::migrator(SQLITE),
    }
}

/// The accounts store on either engine: each statement is written once and
/// run on whichever pool the [`Db`] holds ([`emporium_db::on_db!`]).
pub struct SqlStore {
    db: Db,
}

/// The row-lock suffix of the engine `pool` is on.
fn row_lock<DB: Dialect>(_pool: &sqlx::Pool<DB>) -> &'static str {
    DB::ROW_LOCK
}

/// What serialises registrations of one skeleton, so the look-alike check
/// and the insert are one step (there is no row to lock before the insert).
trait SkeletonLock {
    const SQL: &'static str;
}

impl SkeletonLock for sqlx::Postgres {
    const SQL: &'static str = "SELECT pg_advisory_xact_lock(hashtext($1))";
}

/// SQLite's write lock (`BEGIN IMMEDIATE`) serialises registrations already.
impl SkeletonLock for sqlx::Sqlite {
    const SQL: &'static str = "";
}

fn skeleton_lock<DB: SkeletonLock + sqlx::Database>(_pool: &sqlx::Pool<DB>) -> &'static str {
    DB::SQL
}

/// Opens the store named by `url`, applying migrations first.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn AccountsStore>> {
    Ok(Arc::new(SqlStore {
        db: open_service_db(url, max_connections, own_migrations).await?,
    }))
}

/// Applies migrations and nothing else (`emporium migrate accounts`).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    connect(url, 1).await.map(|_| ())
}

const USER_COLUMNS: &str = "id, email, name, password_hash, roles, disabled, closed, created_at, \
     updated_at, token_generation";

/// An enabled, open admin (roles are comma-separated names).
const ENABLED_ADMIN: &str = "closed = FALSE AND disabled = FALSE AND roles LIKE '%admin%'";

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

    async fn insert_user(
        &self,
        u: &NewUser,
        events: &[Envelope],
    ) -> Result<UserRecord, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            // Every registration takes the lock of its skeleton: an ASCII
            // address and its look-alike racing are ordered too.
            if !skeleton_lock(pool).is_empty() {
                sqlx::query(skeleton_lock(pool))
                    .bind(&u.email_skeleton)
                    .execute(&mut *tx)
                    .await?;
            }
            if u.must_look_unique {
                let taken: Option<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM users WHERE email_skeleton = $1 AND closed = FALSE LIMIT 1",
                )
                .bind(&u.email_skeleton)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict {
                        constraint: "users.email_skeleton (a look-alike address)".into(),
                    });
                }
            }
            let user = sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                "INSERT INTO users (id, email, name, password_hash, roles, disabled, closed, \
                 created_at, updated_at, email_skeleton) \
                 VALUES ($1, $2, $3, $4, $5, FALSE, FALSE, $6, $6, $7) RETURNING {USER_COLUMNS}"
            )))
            .bind(u.id)
            .bind(&u.email)
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(&u.roles)
            .bind(u.now)
            .bind(&u.email_skeleton)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            outbox::enqueue_all(&mut tx, events).await?;
            tx.commit().await?;
            Ok(user)
        })
    }

    async fn fill_email_skeletons(
        &self,
        skeleton: &(dyn for<'e> Fn(&'e str) -> String + Send + Sync),
    ) -> Result<usize, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let rows: Vec<(Uuid, String)> =
                sqlx::query_as("SELECT id, email FROM users WHERE email_skeleton IS NULL")
                    .fetch_all(pool)
                    .await?;
            let mut tx = emporium_db::begin_write(pool).await?;
            for (id, email) in &rows {
                sqlx::query("UPDATE users SET email_skeleton = $2 WHERE id = $1")
                    .bind(id)
                    .bind(skeleton(email))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(rows.len())
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            Ok(sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
            )))
            .bind(email)
            .fetch_optional(pool)
            .await?)
        })
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            Ok(sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?)
        })
    }

    async fn list_users(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            Ok(sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM users WHERE closed = FALSE \
                 AND ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
            )))
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    async fn any_admin(&self) -> Result<bool, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM users WHERE {ENABLED_ADMIN}"
            )))
            .fetch_one(pool)
            .await?;
            Ok(n > 0)
        })
    }

    async fn session_ended(&self, family_id: Uuid, user_id: Uuid) -> Result<bool, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let revoked: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT revoked_at FROM refresh_families WHERE id = $1 AND user_id = $2",
            )
            .bind(family_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            Ok(!matches!(revoked, Some(None)))
        })
    }

    async fn update_name(
        &self,
        id: Uuid,
        name: &str,
        now: i64,
        events: &[Envelope],
    ) -> Result<Option<UserRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            let user = sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                "UPDATE users SET name = $2, updated_at = $3 WHERE id = $1 AND closed = FALSE \
                 RETURNING {USER_COLUMNS}"
            )))
            .bind(id)
            .bind(name)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if user.is_some() {
                outbox::enqueue_all(&mut tx, events).await?;
            }
            tx.commit().await?;
            Ok(user)
        })
    }

    async fn update_password(
        &self,
        id: Uuid,
        hash: &str,
        token_generation: i64,
        now: i64,
        events: &[Envelope],
    ) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            let changed = sqlx::query(
                "UPDATE users SET password_hash = $2, updated_at = $3, token_generation = $4 \
                 WHERE id = $1 AND token_generation = $4 - 1",
            )
            .bind(id)
            .bind(hash)
            .bind(now)
            .bind(token_generation)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Err(StoreError::Conflict {
                    constraint: "users.token_generation (changed meanwhile)".into(),
                });
            }
            revoke_all_families(&mut tx, id, now).await?;
            outbox::enqueue_all(&mut tx, events).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn change_user(
        &self,
        actor: Uuid,
        id: Uuid,
        change: &UserChange,
        now: i64,
        events: &[Envelope],
    ) -> Result<Option<UserRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            // Every enabled admin's row, locked in id order: two admins
            // demoting each other at once take turns, and the second sees
            // the first's change.
            let admins = lock_enabled_admins(&mut tx, row_lock(pool)).await?;
            if !admins.contains(&actor) {
                return Err(StoreError::Refused(super::refused::NOT_AN_ADMIN));
            }
            // The generation moves by one per change: if a concurrent change
            // raised it already, this one's events would say too little.
            let stored: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT token_generation FROM users WHERE id = $1 AND closed = FALSE{}",
                row_lock(pool)
            )))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match (stored, change.token_generation) {
                (None, _) => return Ok(None),
                (Some(now), Some(next)) if now + 1 != next => {
                    return Err(StoreError::Conflict {
                        constraint: "users.token_generation (changed meanwhile)".into(),
                    });
                }
                _ => {}
            }
            let user = sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                "UPDATE users SET roles = COALESCE($2, roles), disabled = COALESCE($3, disabled), \
                 updated_at = $4, token_generation = COALESCE($5, token_generation) \
                 WHERE id = $1 AND closed = FALSE RETURNING {USER_COLUMNS}"
            )))
            .bind(id)
            .bind(change.roles.as_deref())
            .bind(change.disabled)
            .bind(now)
            .bind(change.token_generation)
            .fetch_optional(&mut *tx)
            .await?;

            ensure_an_admin_remains(&mut tx).await?;
            if user.as_ref().is_some_and(|u| u.disabled) {
                revoke_all_families(&mut tx, id, now).await?;
            }
            if user.is_some() {
                outbox::enqueue_all(&mut tx, events).await?;
            }
            tx.commit().await?;
            Ok(user)
        })
    }

    async fn close_user(
        &self,
        id: Uuid,
        now: i64,
        events: &[Envelope],
    ) -> Result<bool, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            lock_enabled_admins(&mut tx, row_lock(pool)).await?;
            // The address is freed for a new registration; the id stays for history.
            let closed = sqlx::query(
                "UPDATE users SET closed = TRUE, email = $2, email_skeleton = $2, name = '', \
                 password_hash = '', \
                 updated_at = $3, token_generation = token_generation + 1 \
                 WHERE id = $1 AND closed = FALSE",
            )
            .bind(id)
            .bind(format!("closed-{id}@closed.invalid"))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            ensure_an_admin_remains(&mut tx).await?;
            revoke_all_families(&mut tx, id, now).await?;
            if closed {
                outbox::enqueue_all(&mut tx, events).await?;
            }
            tx.commit().await?;
            Ok(closed)
        })
    }

    async fn start_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            sqlx::query(
                "INSERT INTO refresh_families (id, user_id, created_at) VALUES ($1, $2, $3)",
            )
            .bind(family_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(family_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn rotate_refresh(
        &self,
        presented_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
        on_reuse: &(dyn Fn(Uuid, Uuid) -> Envelope + Send + Sync),
    ) -> Result<RefreshOutcome, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            // The token's, family's and user's rows are locked: a logout,
            // password change or disable committing meanwhile waits for this
            // rotation, or this one sees it; none slips between.
            let row: Option<(Uuid, Uuid, Option<i64>, i64, Option<i64>, bool, bool)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT t.family_id, f.user_id, t.used_at, t.expires_at, f.revoked_at, \
                     u.disabled, u.closed FROM refresh_tokens t \
                     JOIN refresh_families f ON f.id = t.family_id \
                     JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1{}",
                    row_lock(pool)
                )))
                .bind(presented_hash)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((family_id, user_id, used_at, expires_at, revoked_at, disabled, closed)) = row
            else {
                return Ok(RefreshOutcome::Invalid);
            };
            if revoked_at.is_some() || expires_at <= now || disabled || closed {
                return Ok(RefreshOutcome::Invalid);
            }
            // Conditional on `used_at IS NULL`, so of two racing uses exactly one wins;
            // the loser, like any later reuse, revokes the family.
            let won = used_at.is_none()
                && sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
                )
                .bind(presented_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
            if !won {
                sqlx::query("UPDATE refresh_families SET revoked_at = $2 WHERE id = $1")
                    .bind(family_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                // Access tokens of the session may be in a thief's hands:
                // every service must refuse them now, not at expiry.
                outbox::enqueue(&mut tx, &on_reuse(user_id, family_id)).await?;
                tx.commit().await?;
                return Ok(RefreshOutcome::Reused { family_id });
            }
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(new_hash)
            .bind(family_id)
            .bind(now)
            .bind(new_expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(RefreshOutcome::Rotated { user_id, family_id })
        })
    }

    async fn revoke_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        now: i64,
        events: &[Envelope],
    ) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            let revoked = sqlx::query(
                "UPDATE refresh_families SET revoked_at = $3 \
                 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            )
            .bind(family_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if revoked {
                outbox::enqueue_all(&mut tx, events).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn take_slot(
        &self,
        subject: &str,
        limit: i64,
        window_ms: i64,
        now: i64,
    ) -> Result<Slot, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            // One statement, so the row lock (PostgreSQL) or the write lock
            // (SQLite) orders concurrent attempts. A refused attempt leaves
            // the count at limit + 1, so "refused" is visible in the answer.
            let (taken, window_start): (i64, i64) = sqlx::query_as(
                "INSERT INTO throttle_slots (subject, window_start, taken) VALUES ($1, $2, 1) \
                 ON CONFLICT (subject) DO UPDATE SET \
                 taken = CASE WHEN throttle_slots.window_start <= $2 - $3 THEN 1 \
                              WHEN throttle_slots.taken < $4 THEN throttle_slots.taken + 1 \
                              ELSE $4 + 1 END, \
                 window_start = CASE WHEN throttle_slots.window_start <= $2 - $3 THEN $2 \
                              ELSE throttle_slots.window_start END \
                 RETURNING taken, window_start",
            )
            .bind(subject)
            .bind(now)
            .bind(window_ms)
            .bind(limit)
            .fetch_one(pool)
            .await?;
            Ok(if taken <= limit {
                Slot::Taken
            } else {
                Slot::Refused {
                    retry_after_ms: (window_start + window_ms - now).max(0),
                }
            })
        })
    }

    async fn return_slot(&self, subject: &str, limit: i64) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE throttle_slots SET taken = CASE WHEN taken > $2 THEN $2 - 1 \
                 WHEN taken > 0 THEN taken - 1 ELSE 0 END WHERE subject = $1",
            )
            .bind(subject)
            .bind(limit)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn clear_slots(&self, subject: &str) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query("DELETE FROM throttle_slots WHERE subject = $1")
                .bind(subject)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            Ok(sqlx::query_as::<_, SigningKeyRecord>(
                "SELECT kid, private_der, public_x, created_at FROM signing_keys \
                 ORDER BY created_at DESC, kid DESC",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_der, public_x, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&key.kid)
            .bind(&key.private_der)
            .bind(&key.public_x)
            .bind(key.created_at)
            .execute(pool)
            .await
            .map_err(StoreError::from)?;
            Ok(())
        })
    }

    async fn replace_key_material(&self, keys: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            let mut tx = emporium_db::begin_write(pool).await?;
            for (kid, material) in keys {
                sqlx::query("UPDATE signing_keys SET private_der = $2 WHERE kid = $1")
                    .bind(kid)
                    .bind(material)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn upsert_client(&self, c: &ClientRecord, now: i64) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO service_clients (client_id, secret_hash, scopes, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO UPDATE \
                 SET secret_hash = EXCLUDED.secret_hash, scopes = EXCLUDED.scopes",
            )
            .bind(&c.client_id)
            .bind(&c.secret_hash)
            .bind(&c.scopes)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            Ok(sqlx::query_as::<_, ClientRecord>(
                "SELECT client_id, secret_hash, scopes FROM service_clients WHERE client_id = $1",
            )
            .bind(client_id)
            .fetch_optional(pool)
            .await?)
        })
    }
}

async fn revoke_all_families<'c, DB>(
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
async fn lock_enabled_admins<'c, DB>(
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
async fn ensure_an_admin_remains<'c, DB>(
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

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        let lists = [
            (POSTGRES, "migrations/postgres"),
            (SQLITE, "migrations/sqlite"),
        ];
        let listed = emporium_db::embed::check_listed(env!("CARGO_MANIFEST_DIR"), &lists);
        assert_eq!(listed, Ok(()));
    }
}
