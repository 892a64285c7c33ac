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

pub use sql::{SqlStore, connect, migrate};

emporium_db::record! {
    /// A user row as stored, with the password hash; never sent to a client as is.
    #[derive(Debug, Clone)]
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
        /// Raised by every change that must end the user's tokens; tokens carry it.
        pub token_generation: i64,
    }
}

/// A user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    /// What the address looks like (UTS #39 skeleton).
    pub email_skeleton: String,
    /// Refuse ([`StoreError::Conflict`]) if an open account's address looks the same.
    pub must_look_unique: bool,
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
    /// The new token generation when the change ends the user's tokens; the
    /// stored one must be one less ([`StoreError::Conflict`] otherwise).
    pub token_generation: Option<i64>,
}

emporium_db::record! {
    /// A signing key; the private half is PKCS#8 DER, wrapped under the KEK (see [`crate::kek`]).
    #[derive(Debug, Clone)]
    pub struct SigningKeyRecord {
        pub kid: String,
        pub private_der: Vec<u8>,
        pub public_x: String,
        pub created_at: i64,
    }
}

emporium_db::record! {
    #[derive(Debug, Clone)]
    pub struct ClientRecord {
        pub client_id: String,
        pub secret_hash: String,
        pub scopes: String,
    }
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

/// What taking a throttle slot gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The attempt may go ahead.
    Taken,
    /// The limit is reached; the window ends in this many milliseconds.
    Refused { retry_after_ms: i64 },
}

pub use emporium_db::StoreError;

/// [`StoreError::Refused`] kinds of this store.
pub mod refused {
    /// The change would leave the shop without an enabled admin.
    pub const LAST_ADMIN: &str = "last-admin";
    /// The acting user is no longer an enabled admin.
    pub const NOT_AN_ADMIN: &str = "not-an-admin";
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
    /// Whether the session (refresh family) has ended or is not the user's.
    async fn session_ended(&self, family_id: Uuid, user_id: Uuid) -> Result<bool, StoreError>;
    /// Renames; `events` are written only if the user exists.
    async fn update_name(
        &self,
        id: Uuid,
        name: &str,
        now: i64,
        events: &[Envelope],
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Sets a new password hash and token generation (the stored one must be
    /// one less: [`StoreError::Conflict`] otherwise) and revokes every refresh
    /// family of the user.
    async fn update_password(
        &self,
        id: Uuid,
        hash: &str,
        token_generation: i64,
        now: i64,
        events: &[Envelope],
    ) -> Result<(), StoreError>;
    /// Applies an admin's change; disabling revokes every refresh family.
    ///
    /// In one transaction that locks every enabled admin's row: the acting
    /// admin must still be an enabled admin ([`StoreError::Refused`] `not-an-admin`), and
    /// an enabled admin must remain afterwards ([`StoreError::Refused`] `last-admin`).
    async fn change_user(
        &self,
        actor: Uuid,
        id: Uuid,
        change: &UserChange,
        now: i64,
        events: &[Envelope],
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Closes the account: personal data scrubbed, sign-in impossible, families
    /// revoked, the token generation raised by one. The last enabled admin
    /// cannot ([`StoreError::Refused`] `last-admin`).
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
    /// Uses a refresh token once, in one transaction, issuing `new_hash` in its
    /// place. A reused token revokes its family, and the event `on_reuse`
    /// makes of (user, family) is written in that transaction.
    async fn rotate_refresh(
        &self,
        presented_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
        on_reuse: &(dyn Fn(Uuid, Uuid) -> Envelope + Send + Sync),
    ) -> Result<RefreshOutcome, StoreError>;
    /// Revokes a family if it belongs to the user; `events` are written if it did.
    async fn revoke_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        now: i64,
        events: &[Envelope],
    ) -> Result<(), StoreError>;

    /// Takes one of `limit` slots of `subject` in a fixed window, atomically
    /// (one upsert), so concurrent attempts can never take more than `limit`.
    async fn take_slot(
        &self,
        subject: &str,
        limit: i64,
        window_ms: i64,
        now: i64,
    ) -> Result<Slot, StoreError>;
    /// Gives a taken slot back (the attempt succeeded and does not count).
    async fn return_slot(&self, subject: &str, limit: i64) -> Result<(), StoreError>;
    /// Forgets a subject's slots.
    async fn clear_slots(&self, subject: &str) -> Result<(), StoreError>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Replaces the stored (wrapped) private keys of these kids, all in one transaction.
    async fn replace_key_material(&self, keys: &[(String, Vec<u8>)]) -> Result<(), StoreError>;

    async fn upsert_client(&self, client: &ClientRecord, now: i64) -> Result<(), StoreError>;
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
}
