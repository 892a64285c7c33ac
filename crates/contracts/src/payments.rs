//! Payments as other services and customers see them: the internal API the
//! orders service calls (`/internal/v1/payments`, service tokens with the
//! `payments:*` scopes), the payment view, and the events payments publishes.
//!
//! A payment is keyed by its order: one per order. Authorize, capture and
//! void are idempotent per order (a retry returns the payment as it stands);
//! a refund is idempotent per `Idempotency-Key`. Amounts are minor units of
//! `currency` (ISO 4217), never floats.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Event;

/// The internal collection; one order's payment is `{PAYMENTS_PATH}/{order_id}`.
pub const PAYMENTS_PATH: &str = "/internal/v1/payments";

/// The largest amount one payment moves (minor units).
pub const MAX_AMOUNT: i64 = 100_000_000_000;

/// Where a payment stands. `requires_authorization` → `authorized` →
/// `captured` → `partially_refunded` / `refunded`; or `voided`; or `failed`
/// with a [`FailureReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresAuthorization,
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Voided,
    Failed,
}

impl PaymentStatus {
    /// Every state, in the order a payment goes through them.
    pub const ALL: [Self; 7] = [
        Self::RequiresAuthorization,
        Self::Authorized,
        Self::Captured,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Voided,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresAuthorization => "requires_authorization",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Voided => "voided",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Why a payment failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    CardDeclined,
    InsufficientFunds,
    /// The provider could not be reached or kept failing; nothing is held.
    ProviderError,
    /// The network refused a capture after accepting it (a late failure).
    CaptureFailed,
}

impl FailureReason {
    pub const ALL: [Self; 4] = [
        Self::CardDeclined,
        Self::InsufficientFunds,
        Self::ProviderError,
        Self::CaptureFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::ProviderError => "provider_error",
            Self::CaptureFailed => "capture_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// `POST /internal/v1/payments`: authorize `amount` on a card token for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthorizePayment {
    pub order_id: Uuid,
    /// The customer the order belongs to (who may read the payment).
    pub customer_id: Uuid,
    /// A token from `POST /api/v1/payments/tokens`.
    pub token: String,
    pub amount: i64,
    pub currency: String,
}

/// `POST …/{order_id}/capture`: capture all that is authorized, or `amount`
/// of it (the rest is released).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CapturePayment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
}

/// `POST …/{order_id}/refunds` (with an `Idempotency-Key`), and the admin's
/// `POST /api/v1/payments/{id}/refund`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundPayment {
    pub amount: i64,
}

/// One thing that happened to a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentEvent {
    /// `created`, `authorized`, `captured`, `released` (a hold given back:
    /// the rest after a partial capture, or anything held after an authorize
    /// without answer), `voided`, `refunded`, `failed`, `settled`,
    /// `capture_failed`, `step_refused` (the provider refused a step).
    pub kind: String,
    /// Minor units moved, where money moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// Why, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    /// RFC 3339.
    pub at: String,
}

/// A payment as its customer, an admin or the orders service reads it.
/// `captured` and `refunded` are sums over the ledger, not stored numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<FailureReason>,
    /// Held on the card now (authorized, not captured or released).
    pub authorized: i64,
    /// Captured and not refunded.
    pub captured: i64,
    pub refunded: i64,
    pub brand: String,
    pub last4: String,
    pub events: Vec<PaymentEvent>,
    pub created_at: String,
    pub updated_at: String,
}

/// Problem types a caller of the internal API tells apart (the last part of
/// the problem's `type`).
pub mod problems {
    /// The order already has a payment for another token, amount or currency.
    pub const ORDER_HAS_PAYMENT: &str = "order-has-payment";
    /// The payment's state does not allow the step.
    pub const ILLEGAL_TRANSITION: &str = "illegal-transition";
    /// More than is captured and not yet refunded (or being refunded).
    pub const REFUND_EXCEEDS_CAPTURED: &str = "refund-exceeds-captured";
    /// The card provider did not answer in time; retry the same call later.
    pub const PROVIDER_UNAVAILABLE: &str = "provider-unavailable";
}

const SOURCE: &str = "/emporium/payments";

/// Money moved on a payment: what every payment event but `failed` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMoved {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// What this step moved (minor units).
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAuthorized(pub PaymentMoved);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured(pub PaymentMoved);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentVoided(pub PaymentMoved);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded(pub PaymentMoved);

/// The payment failed: at authorization (declined, provider unavailable) or
/// later, when the network refused a capture it had accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub reason: FailureReason,
}

events! {
    SOURCE;
    PaymentAuthorized => "emporium.payments.payment.authorized.v1",
    PaymentCaptured => "emporium.payments.payment.captured.v1",
    PaymentVoided => "emporium.payments.payment.voided.v1",
    PaymentRefunded => "emporium.payments.payment.refunded.v1",
    PaymentFailed => "emporium.payments.payment.failed.v1",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        for r in FailureReason::ALL {
            assert_eq!(FailureReason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_value(r).ok(),
                Some(serde_json::json!(r.as_str()))
            );
        }
        assert_eq!(PaymentStatus::parse("Authorized"), None);
    }
}
