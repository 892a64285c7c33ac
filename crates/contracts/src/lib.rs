//! The shop's contracts between services, defined once and used by both
//! sides: every event type and its payload, every service-client scope, and
//! the bodies of the internal APIs one service calls on another. No service
//! depends on another service's crate; they meet here.
//!
//! Type names are versioned, `emporium.<service>.<entity>.<happening>.v<N>`; a
//! breaking change to a payload is a new type (`….v2`) published beside the old
//! one until every consumer has moved.
//!
//! ## Layout
//! - [`Event`]: what makes a payload an event (its type name and source).
//! - [`accounts`]: what the accounts service publishes.
//! - [`catalog`]: what the catalog service publishes.
//! - [`stock`]: stock-level events, published by the catalog service.
//! - [`scopes`]: every scope a service client can hold.
//! - [`reservations`]: catalog's internal reservation API, as callers see it.
//! - [`products`]: catalog's internal batched product lookup, as callers see it.
//! - [`currency`]: the active ISO 4217 codes every service accepts.
//! - [`payments`]: payments' internal API, its payment view and its events.
//! - [`provider`]: the card provider's API as payments calls it (the sandbox serves it).

pub mod currency;
pub mod products;
pub mod provider;
pub mod reservations;
pub mod scopes;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Implements [`Event`] for each payload type with its type name and the module's source.
macro_rules! events {
    ($source:expr; $($payload:ty => $name:literal),* $(,)?) => {
        $(impl Event for $payload {
            const TYPE: &'static str = $name;
            const SOURCE: &'static str = $source;
        })*
    };
}

// After the macro, which they use.
pub mod orders;
pub mod payments;

/// A payload that travels as the `data` of an event envelope.
pub trait Event: Serialize + DeserializeOwned + Send + Sync {
    /// The CloudEvents `type`, e.g. `emporium.accounts.user.registered.v1`.
    const TYPE: &'static str;
    /// The CloudEvents `source`: the producing service.
    const SOURCE: &'static str;
}

/// Events about user accounts, published by the accounts service.
pub mod accounts {
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    use super::Event;

    const SOURCE: &str = "/emporium/accounts";

    /// Someone created an account.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UserRegistered {
        pub user_id: Uuid,
        pub email: String,
        pub name: String,
    }

    /// A user changed their profile (today: the name).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UserProfileUpdated {
        pub user_id: Uuid,
        pub name: String,
    }

    /// An admin disabled an account: it can no longer sign in, and its tokens
    /// below `token_generation` are void.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UserDisabled {
        pub user_id: Uuid,
        /// Absent in events from before generations existed: then every token is void.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub token_generation: Option<i64>,
    }

    /// A user closed their account; personal data must be forgotten.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UserDeleted {
        pub user_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub token_generation: Option<i64>,
    }

    /// An admin changed the account's roles; tokens below `token_generation`
    /// carry the old ones and are void.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UserRolesChanged {
        pub user_id: Uuid,
        pub roles: Vec<String>,
        pub token_generation: i64,
    }

    /// Sessions ended: one (`session_id`, a logout), or every session of the
    /// user (a password change: `token_generation` is the first still valid).
    /// Tokens of those sessions must be refused from now on, though they have
    /// not expired.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SessionRevoked {
        pub user_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub session_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub token_generation: Option<i64>,
    }

    /// Every type that revokes tokens before they expire: what a service's
    /// deny list subscribes to.
    pub const REVOKING_TYPES: [&str; 4] = [
        "emporium.accounts.user.disabled.v1",
        "emporium.accounts.user.deleted.v1",
        "emporium.accounts.user.roles_changed.v1",
        "emporium.accounts.session.revoked.v1",
    ];

    events! {
        SOURCE;
        UserRolesChanged => "emporium.accounts.user.roles_changed.v1",
        SessionRevoked => "emporium.accounts.session.revoked.v1",
        UserRegistered => "emporium.accounts.user.registered.v1",
        UserProfileUpdated => "emporium.accounts.user.profile_updated.v1",
        UserDisabled => "emporium.accounts.user.disabled.v1",
        UserDeleted => "emporium.accounts.user.deleted.v1",
    }
}

/// Events about the catalog, published by the catalog service.
pub mod catalog {
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    use super::Event;

    const SOURCE: &str = "/emporium/catalog";

    /// A product as other services need it (no stock: that has its own events).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProductSnapshot {
        pub product_id: Uuid,
        pub sku: String,
        pub name: String,
        pub price_amount: i64,
        pub price_currency: String,
        pub category_id: Uuid,
        pub version: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProductCreated(pub ProductSnapshot);

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProductUpdated(pub ProductSnapshot);

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProductDeleted {
        pub product_id: Uuid,
    }

    /// The price changed (also announced as an update); carts re-price on this.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProductPriceChanged {
        pub product_id: Uuid,
        pub old_amount: i64,
        pub new_amount: i64,
        pub currency: String,
    }

    events! {
        SOURCE;
        ProductCreated => "emporium.catalog.product.created.v1",
        ProductUpdated => "emporium.catalog.product.updated.v1",
        ProductDeleted => "emporium.catalog.product.deleted.v1",
        ProductPriceChanged => "emporium.catalog.product.price_changed.v1",
    }
}

/// Events about stock levels, published by the catalog service.
pub mod stock {
    use serde::{Deserialize, Serialize};
    use uuid::Uuid;

    use super::Event;

    const SOURCE: &str = "/emporium/catalog";

    /// What can be sold fell below the product's threshold (but not to zero).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockLow {
        pub product_id: Uuid,
        pub available: i64,
        pub threshold: i64,
    }

    /// Nothing of the product can be sold any more.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockDepleted {
        pub product_id: Uuid,
    }

    /// The product is back at or above its threshold.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockReplenished {
        pub product_id: Uuid,
        pub available: i64,
    }

    events! {
        SOURCE;
        StockLow => "emporium.catalog.stock.low.v1",
        StockDepleted => "emporium.catalog.stock.depleted.v1",
        StockReplenished => "emporium.catalog.stock.replenished.v1",
    }
}
