//! What accounts sends back.

use emporium_auth::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::roles_from_text;
use crate::store::UserRecord;

/// A user as clients see it: no secrets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            roles: roles_from_text(&u.roles)
                .into_iter()
                .map(|r: Role| r.as_str().to_owned())
                .collect(),
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
        }
    }
}

pub use emporium_http::time::rfc3339;

/// The answer to a login or a refresh.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The answer to the client-credentials grant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceToken {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
}

pub use emporium_http::paging::Page;
