//! The typed client of the card provider's API (`contracts::provider`): the
//! sandbox today, a real provider's adapter later.
//!
//! Every money-moving call carries the caller's idempotency key, so the
//! client retries transient failures itself (timeouts, 5xx, a key still in
//! flight) and the provider moves money once. What comes back is the
//! provider's answer or a definite refusal the caller acts on; a
//! [`ProviderError::Call`] that is still retryable after the last attempt is
//! the provider being unavailable (`provider_error`).

use emporium_contracts::provider::{
    AmountRequest, Authorization, AuthorizationRecord, AuthorizeRequest, CancelRequest,
    Cancellation, CardToken, TokenRequest,
};
use uuid::Uuid;

use crate::call::ServiceClient;
use crate::error::CallError;

/// Why a provider call did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The card was refused: `card_declined` or `insufficient_funds`.
    #[error("the card was declined ({0})")]
    Declined(&'static str),
    /// The authorization's state does not allow the move, or asks more than
    /// is left (`wrong-state`, `amount-too-large`).
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("no such token or authorization")]
    NotFound,
    /// The request broke the contract: a bug, not a retry.
    #[error("the provider found the request invalid: {0}")]
    Invalid(String),
    /// The call failed; [`CallError::is_retryable`] says whether the provider
    /// was only unavailable.
    #[error(transparent)]
    Call(CallError),
}

impl From<CallError> for ProviderError {
    fn from(error: CallError) -> Self {
        use emporium_contracts::provider::decline;
        let Some(problem) = error.problem() else {
            return Self::Call(error);
        };
        match (problem.status, problem.kind()) {
            (402, "insufficient-funds") => Self::Declined(decline::INSUFFICIENT_FUNDS),
            (402, _) => Self::Declined(decline::CARD_DECLINED),
            (409, "wrong-state" | "amount-too-large" | "reference-cancelled") => {
                Self::Refused(problem.to_string())
            }
            (404, _) => Self::NotFound,
            (400 | 422, _) => Self::Invalid(problem.to_string()),
            _ => Self::Call(error),
        }
    }
}

/// What a move on an authorization answers.
pub type Moved = Result<Authorization, ProviderError>;

/// The card provider, behind its API key.
#[derive(Debug, Clone)]
pub struct CardProvider {
    client: ServiceClient,
}

impl CardProvider {
    /// `client` points at the provider, with its API key as the token.
    /// `client` to the provider, an outside party: its calls are spans of
    /// the request they are made for, but no trace context or request id
    /// is sent to it.
    pub fn new(client: ServiceClient) -> Self {
        Self {
            client: client.outside_party(),
        }
    }

    /// Hands a card to the provider for a token. Not retried: a token
    /// request carries no key, and a second token for one card is harmless
    /// but not what the caller asked.
    pub async fn tokenize(&self, card: &TokenRequest) -> Result<CardToken, ProviderError> {
        let call = self.client.post("/v1/tokens").json(card)?;
        Ok(call.send::<CardToken>().await?.body)
    }

    pub async fn authorize(&self, key: &str, request: &AuthorizeRequest) -> Moved {
        let call = self.client.post("/v1/authorizations").json(request)?;
        Ok(call.idempotency_key(key)?.send().await?.body)
    }

    /// Captures `amount` (at most what is authorized; the rest is released).
    pub async fn capture(&self, key: &str, id: Uuid, amount: i64) -> Moved {
        self.moved(key, id, "capture", Some(amount)).await
    }

    pub async fn void(&self, key: &str, id: Uuid) -> Moved {
        self.moved(key, id, "void", None).await
    }

    /// Pays back `amount` of what is captured.
    pub async fn refund(&self, key: &str, id: Uuid, amount: i64) -> Moved {
        self.moved(key, id, "refunds", Some(amount)).await
    }

    /// A technical cancel: voids whatever was authorized under `reference`
    /// and refuses any later authorize with it. Safe to repeat.
    pub async fn cancel(&self, reference: Uuid) -> Result<Cancellation, ProviderError> {
        let call = self.client.post("/v1/cancellations");
        let call = call.json(&CancelRequest { reference })?;
        // A cancel is the same request every time: keyed, so it is retried.
        let call = call.idempotency_key(&format!("cancel:{reference}"))?;
        Ok(call.send::<Cancellation>().await?.body)
    }

    /// The provider's own record of an authorization.
    pub async fn authorization(&self, id: Uuid) -> Result<AuthorizationRecord, ProviderError> {
        let call = self.client.get(format!("/v1/authorizations/{id}"));
        Ok(call.send::<AuthorizationRecord>().await?.body)
    }

    async fn moved(&self, key: &str, id: Uuid, what: &str, amount: Option<i64>) -> Moved {
        let mut call = self.client.post(format!("/v1/authorizations/{id}/{what}"));
        if let Some(amount) = amount {
            call = call.json(&AmountRequest { amount })?;
        }
        Ok(call.idempotency_key(key)?.send().await?.body)
    }
}
