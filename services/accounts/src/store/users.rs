//! Accounts: registration, profile, password, roles, disabling and closing.

use emporium_messaging::Envelope;
use emporium_messaging::outbox::{self, Commit};
use uuid::Uuid;

use emporium_db::Tx;
use sqlx::AssertSqlSafe;

use super::sql::{
    ENABLED_ADMIN, SqlStore, USER_COLUMNS, ensure_an_admin_remains, lock_enabled_admins,
    revoke_all_families,
};
use super::*;

#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts the user and writes `events` to the outbox in the same transaction.
    async fn insert_user(
        &self,
        user: &NewUser,
        events: &[Envelope],
    ) -> Result<UserRecord, StoreError>;

    /// Fills the skeleton of addresses stored before skeletons were; returns how many.
    async fn fill_email_skeletons(
        &self,
        skeleton: &(dyn for<'e> Fn(&'e str) -> String + Send + Sync),
    ) -> Result<usize, StoreError>;

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError>;

    /// Users in id order after `after`, at most `limit`.
    async fn list_users(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError>;

    /// Whether an enabled, open admin exists.
    async fn any_admin(&self) -> Result<bool, StoreError>;

    /// Renames; `events` are written only if the user exists.
    async fn update_name(
        &self,
        id: Uuid,
        name: &str,
        c: Commit<'_>,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Sets a new password hash and token generation (the stored one must be
    /// one less: [`StoreError::Conflict`] otherwise) and revokes every refresh
    /// family of the user.
    async fn update_password(
        &self,
        id: Uuid,
        new: &NewPassword<'_>,
        c: Commit<'_>,
    ) -> Result<(), StoreError>;

    /// Applies an admin's change; disabling revokes every refresh family.
    ///
    /// In one transaction that locks every enabled admin's row: the acting
    /// admin must still be an enabled admin ([`StoreError::Refused`] `not-an-admin`), and
    /// an enabled admin must remain afterwards ([`StoreError::Refused`] `last-admin`).
    async fn change_user(
        &self,
        admin: Uuid,
        change: &UserChange,
        c: Commit<'_>,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Closes the account: personal data scrubbed, sign-in impossible, families
    /// revoked, the token generation raised by one. The last enabled admin
    /// cannot ([`StoreError::Refused`] `last-admin`).
    async fn close_user(&self, id: Uuid, c: Commit<'_>) -> Result<bool, StoreError>;
}

#[async_trait::async_trait]
impl UserStore for SqlStore {
    async fn insert_user(
        &self,
        u: &NewUser,
        events: &[Envelope],
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // Every registration takes the lock of its skeleton: an ASCII address
        // and its look-alike racing are ordered too. (SQLite's write
        // transaction already orders every registration.)
        if let Tx::Postgres(_) = tx {
            const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";
            tx.sql().execute(LOCK, (&u.email_skeleton,)).await?;
        }
        if u.must_look_unique {
            const LOOK_ALIKE: &str =
                "SELECT id FROM users WHERE email_skeleton = $1 AND closed = FALSE LIMIT 1";
            let taken: Option<(Uuid,)> = tx
                .sql()
                .fetch_optional(LOOK_ALIKE, (&u.email_skeleton,))
                .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict {
                    constraint: "users.email_skeleton (a look-alike address)".into(),
                });
            }
        }
        let sql = format!(
            "INSERT INTO users (id, email, name, password_hash, roles, disabled, closed, \
             created_at, updated_at, email_skeleton) \
             VALUES ($1, $2, $3, $4, $5, FALSE, FALSE, $6, $6, $7) RETURNING {USER_COLUMNS}"
        );
        let texts = (&u.email, &u.name, &u.password_hash, &u.roles);
        let values = (
            u.id,
            texts.0,
            texts.1,
            texts.2,
            texts.3,
            u.now,
            &u.email_skeleton,
        );
        let user = tx.sql().fetch_one(AssertSqlSafe(sql), values).await?;
        outbox::commit_with(tx, events).await?;
        Ok(user)
    }

    async fn fill_email_skeletons(
        &self,
        skeleton: &(dyn for<'e> Fn(&'e str) -> String + Send + Sync),
    ) -> Result<usize, StoreError> {
        const MISSING: &str = "SELECT id, email FROM users WHERE email_skeleton IS NULL";
        let rows: Vec<(Uuid, String)> = self.db.sql().fetch_all(MISSING, ()).await?;
        let mut tx = self.db.begin_write().await?;
        for (id, email) in &rows {
            const SQL: &str = "UPDATE users SET email_skeleton = $2 WHERE id = $1";
            tx.sql().execute(SQL, (id, skeleton(email))).await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let by_email = users_where("email = $1");
        Ok(self.db.sql().fetch_optional(by_email, (email,)).await?)
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .db
            .sql()
            .fetch_optional(users_where("id = $1"), (id,))
            .await?)
    }

    async fn list_users(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let page = users_where("closed = FALSE AND ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2");
        Ok(self.db.sql().fetch_all(page, (after, limit)).await?)
    }

    async fn any_admin(&self) -> Result<bool, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM users WHERE {ENABLED_ADMIN}");
        let admins: i64 = self.db.sql().scalar(AssertSqlSafe(sql), ()).await?;
        Ok(admins > 0)
    }

    async fn update_name(
        &self,
        id: Uuid,
        name: &str,
        c: Commit<'_>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "UPDATE users SET name = $2, updated_at = $3 WHERE id = $1 AND closed = FALSE \
             RETURNING {USER_COLUMNS}"
        );
        let user: Option<UserRecord> = tx
            .sql()
            .fetch_optional(AssertSqlSafe(sql), (id, name, c.now))
            .await?;
        outbox::commit_with(tx, if user.is_some() { c.events } else { &[] }).await?;
        Ok(user)
    }

    async fn update_password(
        &self,
        id: Uuid,
        new: &NewPassword<'_>,
        c: Commit<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        const SQL: &str = "UPDATE users SET password_hash = $2, updated_at = $3, \
            token_generation = $4 WHERE id = $1 AND token_generation = $4 - 1";
        let values = (id, new.hash, c.now, new.token_generation);
        let changed = tx.sql().execute(SQL, values).await?;
        if changed != 1 {
            return Err(generation_moved());
        }
        revoke_all_families(&mut tx, id, c.now).await?;
        outbox::commit_with(tx, c.events).await?;
        Ok(())
    }

    async fn change_user(
        &self,
        admin: Uuid,
        change: &UserChange,
        c: Commit<'_>,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // Every enabled admin's row, locked in id order: two admins demoting
        // each other at once take turns, and the second sees the first's change.
        let admins = lock_enabled_admins(&mut tx).await?;
        if !admins.contains(&admin) {
            return Err(StoreError::Refused(super::refused::NOT_AN_ADMIN));
        }
        // The generation moves by one per change: if a concurrent change
        // raised it already, this one's events would say too little.
        let sql = tx.locking("SELECT token_generation FROM users WHERE id = $1 AND closed = FALSE");
        let id = change.user;
        let stored: Option<(i64,)> = tx.sql().fetch_optional(sql, (id,)).await?;
        match (stored, change.token_generation) {
            (None, _) => return Ok(None),
            (Some((now,)), Some(next)) if now + 1 != next => return Err(generation_moved()),
            _ => {}
        }
        let sql = format!(
            "UPDATE users SET roles = COALESCE($2, roles), disabled = COALESCE($3, disabled), \
             updated_at = $4, token_generation = COALESCE($5, token_generation) \
             WHERE id = $1 AND closed = FALSE RETURNING {USER_COLUMNS}"
        );
        let values = (
            id,
            change.roles.as_deref(),
            change.disabled,
            c.now,
            change.token_generation,
        );
        let user: Option<UserRecord> = tx.sql().fetch_optional(AssertSqlSafe(sql), values).await?;
        ensure_an_admin_remains(&mut tx).await?;
        if user.as_ref().is_some_and(|u| u.disabled) {
            revoke_all_families(&mut tx, id, c.now).await?;
        }
        outbox::commit_with(tx, if user.is_some() { c.events } else { &[] }).await?;
        Ok(user)
    }

    async fn close_user(&self, id: Uuid, c: Commit<'_>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_enabled_admins(&mut tx).await?;
        // The address is freed for a new registration; the id stays for history.
        const SQL: &str = "UPDATE users SET closed = TRUE, email = $2, email_skeleton = $2, \
            name = '', password_hash = '', updated_at = $3, \
            token_generation = token_generation + 1 WHERE id = $1 AND closed = FALSE";
        let freed = format!("closed-{id}@closed.invalid");
        let closed = tx.sql().execute(SQL, (id, freed, c.now)).await? == 1;
        ensure_an_admin_remains(&mut tx).await?;
        revoke_all_families(&mut tx, id, c.now).await?;
        outbox::commit_with(tx, if closed { c.events } else { &[] }).await?;
        Ok(closed)
    }
}

/// `SELECT` of every user column `WHERE` `rest`.
fn users_where(rest: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE {rest}"))
}

/// A concurrent change raised the user's token generation first.
fn generation_moved() -> StoreError {
    StoreError::Conflict {
        constraint: "users.token_generation (changed meanwhile)".into(),
    }
}
