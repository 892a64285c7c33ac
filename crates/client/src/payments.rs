//! The typed client of payments' internal API (`contracts::payments`), for
//! the orders service: authorize, capture, void and refund an order's
//! payment, each idempotent per order and step (a refund per key).
//!
//! A declined card is not an error: the payment comes back `failed` with its
//! reason, and the saga acts on that. What comes back as an error is a
//! refusal of the step itself, or the call failing.

use emporium_contracts::payments::{
    AuthorizePayment, CapturePayment, PAYMENTS_PATH, Payment, RefundPayment, problems,
};
use emporium_http::RequestContext;
use uuid::Uuid;

use crate::call::{Call, ServiceClient};
use crate::error::CallError;

/// Why a payment call did not give the payment.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PaymentError {
    /// The order has another payment (another card, amount or customer).
    #[error("the order already has another payment")]
    OrderHasPayment,
    /// The payment's state does not allow the step (`illegal-transition`,
    /// `step-in-flight`, `capture-exceeds-authorized`,
    /// `refund-exceeds-captured`): the problem type and detail.
    #[error("payments refused the step ({0}): {1}")]
    Refused(String, String),
    /// No payment for this order made by this client.
    #[error("no such payment")]
    NotFound,
    /// The request broke the contract (a bad amount, an unknown token, a key
    /// used for another refund): a bug, not a retry.
    #[error("payments refused the request: {0}")]
    Invalid(String),
    /// The call failed; [`CallError::is_retryable`] says whether to come back
    /// (`provider-unavailable` is: the same call later moves money once).
    #[error(transparent)]
    Call(CallError),
}

impl PaymentError {
    /// Whether the saga should try again later rather than compensate.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Call(e) if e.is_retryable())
    }

    /// Whether payments surely never saw the call ([`CallError::never_sent`]).
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::Call(e) if e.never_sent())
    }
}

impl From<CallError> for PaymentError {
    fn from(error: CallError) -> Self {
        let Some(problem) = error.problem() else {
            return Self::Call(error);
        };
        let detail = problem.detail.clone().unwrap_or_default();
        match (problem.status, problem.kind()) {
            (409, problems::ORDER_HAS_PAYMENT) => Self::OrderHasPayment,
            (409, kind) => Self::Refused(kind.to_owned(), detail),
            (404, _) => Self::NotFound,
            (400 | 422, _) => Self::Invalid(problem.to_string()),
            _ => Self::Call(error),
        }
    }
}

/// Payments' internal API, for the service that sells (scopes `payments:*`).
#[derive(Debug, Clone)]
pub struct Payments {
    client: ServiceClient,
}

impl Payments {
    /// `client` points at the payments service.
    pub fn new(client: ServiceClient) -> Self {
        Self { client }
    }

    /// Authorizes the order's payment; the same request again answers the
    /// payment as it stands. A declined card answers a `failed` payment.
    pub async fn authorize(
        &self,
        request: &AuthorizePayment,
        context: Option<&RequestContext>,
    ) -> Result<Payment, PaymentError> {
        let call = self.client.post(PAYMENTS_PATH).json(request)?;
        let key = format!("{}:authorize", request.order_id);
        send(call.idempotency_key(&key)?, context).await
    }

    /// Captures everything authorized (`None`) or `amount` of it.
    pub async fn capture(
        &self,
        order_id: Uuid,
        amount: Option<i64>,
        context: Option<&RequestContext>,
    ) -> Result<Payment, PaymentError> {
        let body = CapturePayment { amount };
        self.step(order_id, "capture", &body, None, context).await
    }

    /// Releases the authorization (compensation of an authorize).
    pub async fn void(
        &self,
        order_id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Payment, PaymentError> {
        let body = serde_json::json!({});
        self.step(order_id, "void", &body, None, context).await
    }

    /// Pays back `amount`, once per `key` (an order's refund step names it).
    pub async fn refund(
        &self,
        order_id: Uuid,
        key: &str,
        amount: i64,
        context: Option<&RequestContext>,
    ) -> Result<Payment, PaymentError> {
        let body = RefundPayment { amount };
        self.step(order_id, "refunds", &body, Some(key), context)
            .await
    }

    /// The order's payment as it stands.
    pub async fn get(
        &self,
        order_id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Payment, PaymentError> {
        let call = self.client.get(format!("{PAYMENTS_PATH}/{order_id}"));
        send(call, context).await
    }

    async fn step<B: serde::Serialize>(
        &self,
        order_id: Uuid,
        step: &str,
        body: &B,
        key: Option<&str>,
        context: Option<&RequestContext>,
    ) -> Result<Payment, PaymentError> {
        let path = format!("{PAYMENTS_PATH}/{order_id}/{step}");
        let call = self.client.post(path).json(body)?;
        // Capture and void are idempotent per order: keyed so they are retried.
        let key = key.map_or_else(|| format!("{order_id}:{step}"), str::to_owned);
        send(call.idempotency_key(&key)?, context).await
    }
}

async fn send(
    mut call: Call<'_>,
    context: Option<&RequestContext>,
) -> Result<Payment, PaymentError> {
    if let Some(context) = context {
        call = call.context(context);
    }
    Ok(call.send::<Payment>().await?.body)
}
