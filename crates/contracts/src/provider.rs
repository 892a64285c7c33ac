//! The card provider's API as payments calls it: the sandbox provider serves
//! it, and a real provider's adapter would translate its own to it. Amounts
//! are minor units of `currency` (ISO 4217).
//!
//! Every money-moving call carries an `Idempotency-Key`: the same key again
//! returns the first answer and moves nothing a second time.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /v1/tokens`: a card as typed. It goes no further than the provider.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub number: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvc: String,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest").finish_non_exhaustive()
    }
}

/// A card the provider keeps, as a token and what may be shown of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardToken {
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

/// `POST /v1/authorizations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub token: String,
    pub amount: i64,
    pub currency: String,
}

/// `POST /v1/authorizations/{id}/capture` and `…/refunds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountRequest {
    pub amount: i64,
}

/// Where an authorization stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationStatus {
    Authorized,
    Captured,
    Voided,
}

/// An authorization and what has happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub id: Uuid,
    pub status: AuthorizationStatus,
    pub amount: i64,
    pub currency: String,
    pub captured: i64,
    pub refunded: i64,
}

/// One money movement the provider made, in its own record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// `authorize`, `capture`, `void` or `refund`.
    pub kind: String,
    pub amount: i64,
    pub at: i64,
}

/// `GET /v1/authorizations/{id}`: the authorization and every operation on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRecord {
    #[serde(flatten)]
    pub authorization: Authorization,
    pub operations: Vec<Operation>,
}

/// A definite refusal of a card (402), as the `code` of the problem.
pub mod decline {
    pub const CARD_DECLINED: &str = "card_declined";
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
}
