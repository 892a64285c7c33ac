//! The SQL behind [`AccountsStore`], written once and instantiated for both engines.

use std::sync::Arc;

use emporium_db::Engine;
use emporium_messaging::Envelope;
use emporium_messaging::migrations::{ServiceDb, open_service_db};
use emporium_messaging::outbox::{self, Outbox};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use super::{
    AccountsStore, ClientRecord, NewUser, RefreshOutcome, SigningKeyRecord, StoreError, UserChange,
    UserRecord,
};

/// The service's own migrations; the outbox and inbox tables come from
/// emporium-messaging, so each migrator ignores the other's versions.
/// The service's own migrations (the outbox's come from emporium-messaging).
fn own_migrations(engine: Engine) -> sqlx::migrate::Migrator {
    match engine {
        Engine::Postgres => sqlx::migrate!("./migrations/postgres"),
        Engine::Sqlite => sqlx::migrate!("./migrations/sqlite"),
    }
}

pub struct PostgresStore {
    pool: PgPool,
}

pub struct SqliteStore {
    pool: SqlitePool,
}

impl PostgresStore {
    fn outbox_of(&self) -> Outbox {
        Outbox::Postgres(self.pool.clone())
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

impl SqliteStore {
    fn outbox_of(&self) -> Outbox {
        Outbox::Sqlite(self.pool.clone())
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Opens the store named by `url`, applying migrations first.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn AccountsStore>> {
    Ok(
        match open_service_db(url, max_connections, own_migrations).await? {
            ServiceDb::Postgres(pool) => Arc::new(PostgresStore { pool }),
            ServiceDb::Sqlite(pool) => Arc::new(SqliteStore { pool }),
        },
    )
}

/// Applies migrations and nothing else (`emporium migrate accounts`).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    connect(url, 1).await.map(|_| ())
}

fn conflict_on_unique(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(e),
    }
}

const USER_COLUMNS: &str =
    "id, email, name, password_hash, roles, disabled, closed, created_at, updated_at";

macro_rules! impl_accounts_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl AccountsStore for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            fn outbox(&self) -> Outbox {
                self.outbox_of()
            }

            async fn insert_user(
                &self,
                u: &NewUser,
                events: &[Envelope],
            ) -> Result<UserRecord, StoreError> {
                let mut tx = self.begin_write().await?;
                let user = sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO users (id, email, name, password_hash, roles, disabled, closed, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, FALSE, FALSE, $6, $6) \
                     RETURNING {USER_COLUMNS}"
                )))
                .bind(u.id)
                .bind(&u.email)
                .bind(&u.name)
                .bind(&u.password_hash)
                .bind(&u.roles)
                .bind(u.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(conflict_on_unique)?;
                for event in events {
                    outbox::enqueue(&mut tx, event).await?;
                }
                tx.commit().await?;
                Ok(user)
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
                Ok(sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
                )))
                .bind(email)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
                Ok(sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_users(
                &self,
                after: Option<Uuid>,
                limit: i64,
            ) -> Result<Vec<UserRecord>, StoreError> {
                Ok(sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE closed = FALSE \
                     AND ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
                )))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn any_admin(&self) -> Result<bool, StoreError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users WHERE closed = FALSE AND roles LIKE '%admin%'",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(n > 0)
            }

            async fn update_name(
                &self,
                id: Uuid,
                name: &str,
                now: i64,
                events: &[Envelope],
            ) -> Result<Option<UserRecord>, StoreError> {
                let mut tx = self.begin_write().await?;
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
                    for event in events {
                        outbox::enqueue(&mut tx, event).await?;
                    }
                }
                tx.commit().await?;
                Ok(user)
            }

            async fn update_password(&self, id: Uuid, hash: &str, now: i64) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                revoke_all_families(&mut tx, id, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn change_user(
                &self,
                id: Uuid,
                change: &UserChange,
                now: i64,
                events: &[Envelope],
            ) -> Result<Option<UserRecord>, StoreError> {
                let mut tx = self.begin_write().await?;
                let user = sqlx::query_as::<_, UserRecord>(sqlx::AssertSqlSafe(format!(
                    "UPDATE users SET roles = COALESCE($2, roles), disabled = COALESCE($3, disabled), \
                     updated_at = $4 WHERE id = $1 AND closed = FALSE RETURNING {USER_COLUMNS}"
                )))
                .bind(id)
                .bind(change.roles.as_deref())
                .bind(change.disabled)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if user.as_ref().is_some_and(|u| u.disabled) {
                    revoke_all_families(&mut tx, id, now).await?;
                }
                if user.is_some() {
                    for event in events {
                        outbox::enqueue(&mut tx, event).await?;
                    }
                }
                tx.commit().await?;
                Ok(user)
            }

            async fn close_user(
                &self,
                id: Uuid,
                now: i64,
                events: &[Envelope],
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                // The address is freed for a new registration; the id stays for history.
                let closed = sqlx::query(
                    "UPDATE users SET closed = TRUE, email = $2, name = '', password_hash = '', \
                     updated_at = $3 WHERE id = $1 AND closed = FALSE",
                )
                .bind(id)
                .bind(format!("closed-{id}@closed.invalid"))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                revoke_all_families(&mut tx, id, now).await?;
                if closed {
                    for event in events {
                        outbox::enqueue(&mut tx, event).await?;
                    }
                }
                tx.commit().await?;
                Ok(closed)
            }

            async fn start_family(
                &self,
                family_id: Uuid,
                user_id: Uuid,
                token_hash: &str,
                expires_at: i64,
                now: i64,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO refresh_families (id, user_id, created_at) VALUES ($1, $2, $3)")
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
            }

            async fn rotate_refresh(
                &self,
                presented_hash: &str,
                new_hash: &str,
                new_expires_at: i64,
                now: i64,
            ) -> Result<RefreshOutcome, StoreError> {
                let mut tx = self.begin_write().await?;
                let row: Option<(Uuid, Uuid, Option<i64>, i64, Option<i64>, bool, bool)> =
                    sqlx::query_as(
                        "SELECT t.family_id, f.user_id, t.used_at, t.expires_at, f.revoked_at, \
                         u.disabled, u.closed FROM refresh_tokens t \
                         JOIN refresh_families f ON f.id = t.family_id \
                         JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1",
                    )
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
            }

            async fn revoke_family(
                &self,
                family_id: Uuid,
                user_id: Uuid,
                now: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE refresh_families SET revoked_at = $3 \
                     WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                )
                .bind(family_id)
                .bind(user_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn record_login_failure(
                &self,
                subjects: &[&str],
                now: i64,
                forget_before: i64,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                for subject in subjects {
                    sqlx::query("INSERT INTO login_failures (subject, failed_at) VALUES ($1, $2)")
                        .bind(*subject)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                // Old failures no longer count; dropping them keeps the table small.
                sqlx::query("DELETE FROM login_failures WHERE failed_at < $1")
                    .bind(forget_before)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn login_failures(
                &self,
                subject: &str,
                since: i64,
            ) -> Result<(i64, Option<i64>), StoreError> {
                Ok(sqlx::query_as(
                    "SELECT COUNT(*), MIN(failed_at) FROM login_failures \
                     WHERE subject = $1 AND failed_at >= $2",
                )
                .bind(subject)
                .bind(since)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn clear_login_failures(&self, subject: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM login_failures WHERE subject = $1")
                    .bind(subject)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
                Ok(sqlx::query_as::<_, SigningKeyRecord>(
                    "SELECT kid, private_der, public_x, created_at FROM signing_keys \
                     ORDER BY created_at DESC, kid DESC",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, private_der, public_x, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&key.kid)
                .bind(&key.private_der)
                .bind(&key.public_x)
                .bind(key.created_at)
                .execute(&self.pool)
                .await
                .map_err(conflict_on_unique)?;
                Ok(())
            }

            async fn upsert_client(&self, c: &ClientRecord, now: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO service_clients (client_id, secret_hash, scopes, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO UPDATE \
                     SET secret_hash = EXCLUDED.secret_hash, scopes = EXCLUDED.scopes",
                )
                .bind(&c.client_id)
                .bind(&c.secret_hash)
                .bind(&c.scopes)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
                Ok(sqlx::query_as::<_, ClientRecord>(
                    "SELECT client_id, secret_hash, scopes FROM service_clients WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?)
            }
        }
    };
}

impl_accounts_store!(PostgresStore);
impl_accounts_store!(SqliteStore);

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
