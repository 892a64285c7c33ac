//! Persistence of accounts: one trait, a PostgreSQL and a SQLite implementation.
//!
//! The SQL is shared: both engines take `$n` parameters, `RETURNING` and
//! `ON CONFLICT`, and times are Unix milliseconds in both. The implementations
//! differ in how a write transaction begins (SQLite's must be `IMMEDIATE`).
//!
//! Every change other services hear about writes its events to the outbox in
//! the same transaction, after the user's row, so events of one user commit in
//! order.

use emporium_messaging::Envelope;
use emporium_messaging::outbox::Outbox;
use uuid::Uuid;

mod sql;

pub use sql::{PostgresStore, SqliteStore, connect, migrate};

/// A user row as stored, with the password hash; never sent to a client as is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub roles: String,
    pub disabled: bool,
    pub closed: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub roles: String,
    pub now: i64,
}

/// A change an admin makes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub roles: Option<String>,
    pub disabled: Option<bool>,
}

/// A signing key; the private half is PKCS#8 DER.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub public_x: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRecord {
    pub client_id: String,
    pub secret_hash: String,
    pub scopes: String,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is now used and `new_hash` replaces it.
    Rotated { user_id: Uuid, family_id: Uuid },
    /// The token had already been rotated: its whole family is now revoked.
    Reused { family_id: Uuid },
    /// Unknown, expired, revoked, or its user may no longer sign in.
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (an email already taken).
    #[error("a record with the same key exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

#[async_trait::async_trait]
pub trait AccountsStore: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;

    /// The service's outbox, for its relay.
    fn outbox(&self) -> Outbox;

    /// Inserts the user and writes `events` to the outbox in the same transaction.
    async fn insert_user(
        &self,
        user: &NewUser,
        events: &[Envelope],
    ) -> Result<UserRecord, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError>;
    /// Users in id order after `after`, at most `limit`.
    async fn list_users(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError>;
    async fn any_admin(&self) -> Result<bool, StoreError>;
    /// Renames; `events` are written only if the user exists.
    async fn update_name(
        &self,
        id: Uuid,
        name: &str,
        now: i64,
        events: &[Envelope],
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Sets a new password hash and revokes every refresh family of the user.
    async fn update_password(&self, id: Uuid, hash: &str, now: i64) -> Result<(), StoreError>;
    /// Applies an admin's change; disabling revokes every refresh family.
    async fn change_user(
        &self,
        id: Uuid,
        change: &UserChange,
        now: i64,
        events: &[Envelope],
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Closes the account: personal data scrubbed, sign-in impossible, families revoked.
    async fn close_user(&self, id: Uuid, now: i64, events: &[Envelope])
    -> Result<bool, StoreError>;

    /// Starts a login session: a new family holding its first refresh token.
    async fn start_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Uses a refresh token once, in one transaction, issuing `new_hash` in its place.
    async fn rotate_refresh(
        &self,
        presented_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<RefreshOutcome, StoreError>;
    /// Revokes a family if it belongs to the user.
    async fn revoke_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        now: i64,
    ) -> Result<(), StoreError>;

    async fn record_login_failure(
        &self,
        subjects: &[&str],
        now: i64,
        forget_before: i64,
    ) -> Result<(), StoreError>;
    /// How many failures a subject had since `since`, and when the oldest of them was.
    async fn login_failures(
        &self,
        subject: &str,
        since: i64,
    ) -> Result<(i64, Option<i64>), StoreError>;
    async fn clear_login_failures(&self, subject: &str) -> Result<(), StoreError>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;

    async fn upsert_client(&self, client: &ClientRecord, now: i64) -> Result<(), StoreError>;
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
}
