//! Persistence of accounts: one trait, a PostgreSQL and a SQLite implementation.
//!
//! The SQL is shared: both engines take `$n` parameters, `RETURNING` and
//! `ON CONFLICT`, and times are Unix milliseconds in both. The implementations
//! differ in how a write transaction begins (SQLite's must be `IMMEDIATE`).
//!
//! Every change other services hear about writes its events to the outbox in
//! the same transaction, after the user's row, so events of one user commit in
//! order.

use emporium_messaging::outbox::Outbox;
use uuid::Uuid;

mod credentials;
mod sessions;
mod sql;
mod throttle;
mod users;

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

impl NewUser {
    /// A user with a new id registering `now` with these roles; the address
    /// decides its skeleton and whether look-alikes are refused.
    pub fn new(
        email: &crate::domain::Email,
        name: &crate::domain::DisplayName,
        password_hash: String,
        roles: &[emporium_auth::Role],
        now: i64,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            email: email.as_str().to_owned(),
            email_skeleton: email.skeleton(),
            must_look_unique: email.must_look_unique(),
            name: name.as_str().to_owned(),
            password_hash,
            roles: crate::domain::roles_to_text(roles),
            now,
        }
    }
}

/// A refresh token to store: its hash (never the token), when it was issued
/// and until when it may be used (Unix milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct IssuedToken<'a> {
    pub hash: &'a str,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A new password: its hash and the token generation it begins.
#[derive(Debug, Clone, Copy)]
pub struct NewPassword<'a> {
    pub hash: &'a str,
    pub token_generation: i64,
}

/// A throttle window: at most `limit` attempts in `length_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub limit: i64,
    pub length_ms: i64,
}

/// A change an admin makes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// Whose account it is.
    pub user: Uuid,
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

pub use credentials::CredentialStore;
pub use emporium_db::StoreError;
pub use sessions::SessionStore;
pub use throttle::ThrottleStore;
pub use users::UserStore;

/// [`StoreError::Refused`] kinds of this store.
pub mod refused {
    /// The change would leave the shop without an enabled admin.
    pub const LAST_ADMIN: &str = "last-admin";
    /// The acting user is no longer an enabled admin.
    pub const NOT_AN_ADMIN: &str = "not-an-admin";
}

#[async_trait::async_trait]
pub trait AccountsStore:
    UserStore + SessionStore + ThrottleStore + CredentialStore + Send + Sync
{
    async fn ping(&self) -> Result<(), StoreError>;
    /// The service's outbox, for its relay.
    fn outbox(&self) -> Outbox;
}
