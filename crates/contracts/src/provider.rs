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
    /// The merchant's own reference (payments' payment id): what a
    /// [`CancelRequest`] names when the authorization's answer was lost.
    pub reference: Uuid,
}

/// `POST /v1/cancellations`: a technical cancel. Voids every authorization
/// made under `reference` that is not captured, and refuses any authorize
/// with that reference from now on (one still on its way included), so an
/// authorization whose answer was lost is never left holding money.
/// Idempotent: cancelling again changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub reference: Uuid,
}

/// What a cancellation did: the authorizations under the reference that are
/// voided now (by this or an earlier cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub reference: Uuid,
    pub voided: Vec<Uuid>,
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
    /// The network refused the capture after accepting it: nothing was paid.
    CaptureFailed,
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

/// What the provider posts to the merchant's webhook endpoint, signed (see
/// [`webhook`]). Each notification has its own `id`; the provider delivers
/// it until the endpoint answers 2xx, so the same one may arrive twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: Uuid,
    pub kind: NotificationKind,
    pub authorization_id: Uuid,
    /// The `reference` the authorization was made under.
    pub reference: Uuid,
    /// What the notification is about (the captured amount).
    pub amount: i64,
    pub currency: String,
    /// When the provider created it, Unix milliseconds.
    pub created_at: i64,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A capture was paid out to the merchant.
    CaptureSettled,
    /// A capture the network accepted was refused later: nothing is paid.
    CaptureFailed,
}

/// How notifications are signed: Stripe's scheme. The header is
/// `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`; the receiver
/// refuses a bad signature, and a timestamp further than
/// [`webhook::TOLERANCE_SECS`] from its clock.
pub mod webhook {
    pub const SIGNATURE_HEADER: &str = "provider-signature";
    pub const TOLERANCE_SECS: i64 = 300;
}
