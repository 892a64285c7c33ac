//! What payments does, over its store and the provider: tokenize a card, and
//! authorize, capture, void and refund a payment, each as start → provider
//! call → settle (see [`crate::store`]); calls whose answer was lost are made
//! again by [`Payments::recover`]; provider notifications are applied once.

use std::sync::Arc;

use emporium_client::provider::ProviderError;
use emporium_contracts::payments::{AuthorizePayment, FailureReason, MAX_AMOUNT, Payment};
use emporium_contracts::provider::{
    AuthorizeRequest, CardToken, Notification, TokenRequest, decline,
};
use emporium_db::{SharedClock, StoreError};
use emporium_http::FieldError;
use emporium_messaging::outbox::RelayWaker;
use uuid::Uuid;

use crate::config::RecoveryConfig;
use crate::domain::{Card, YearMonth};
use crate::provider::Provider;
use crate::store::{
    Intent, NewIntent, Noticed, OpKind, Opened, Operation, Outcome, Started, StepRequest, Store,
    events_of,
};

/// Why a payment call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("invalid: {0:?}")]
    Invalid(Vec<FieldError>),
    #[error("no such payment")]
    NotFound,
    /// Not allowed now: the problem type and why.
    #[error("{0}: {1}")]
    Conflict(&'static str, String),
    /// The provider gave no definite answer; the same call may be made again.
    #[error("the card provider is unavailable")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Payments {
    pub store: Store,
    pub provider: Arc<dyn Provider>,
    pub clock: SharedClock,
    pub relay: RelayWaker,
    pub recovery: RecoveryConfig,
}

impl Payments {
    /// Checks a card (Luhn, brand, expiry, CVC) and has the provider keep it;
    /// what payments keeps is the token and what may be shown.
    pub async fn tokenize(
        &self,
        card: &TokenRequest,
        owner: Option<Uuid>,
    ) -> Result<CardToken, PayError> {
        let today = {
            use chrono::Datelike;
            let now =
                chrono::DateTime::from_timestamp_millis(self.clock.now_ms()).unwrap_or_default();
            YearMonth {
                year: u16::try_from(now.year()).unwrap_or(u16::MAX),
                month: u8::try_from(now.month()).unwrap_or(12),
            }
        };
        let checked = Card::parse(
            &card.number,
            card.exp_month,
            card.exp_year,
            &card.cvc,
            today,
        )
        .map_err(|errors| {
            PayError::Invalid(
                errors
                    .iter()
                    .map(|e| {
                        let text = e.to_string();
                        let (field, message) = text.split_once(": ").unwrap_or(("card", &text));
                        FieldError::new(field.to_owned(), message.to_owned())
                    })
                    .collect(),
            )
        })?;
        // The provider gets the card as checked (spaces taken out).
        let request = TokenRequest {
            number: checked.number().to_owned(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            cvc: checked.cvc().to_owned(),
        };
        let token = self
            .provider
            .tokenize(&request)
            .await
            .map_err(|e| match e {
                ProviderError::Invalid(_) => PayError::Invalid(vec![FieldError::new(
                    "number",
                    "the card network does not accept this card",
                )]),
                other => {
                    tracing::warn!(error = %other, "Tokenization failed at the provider.");
                    PayError::Unavailable
                }
            })?;
        self.store
            .insert_token(&token, owner, self.clock.now_ms())
            .await?;
        metrics::counter!("payment_tokens_created_total").increment(1);
        Ok(token)
    }

    /// Authorizes an order's payment, once per order: the same request again
    /// answers with the payment as it stands (`false`: not created now).
    pub async fn authorize(
        &self,
        client_id: &str,
        request: &AuthorizePayment,
    ) -> Result<(bool, Intent), PayError> {
        let mut errors = Vec::new();
        amount_errors(request.amount, &mut errors);
        if !emporium_contracts::currency::is_active_currency(&request.currency) {
            errors.push(FieldError::new(
                "currency",
                "must be an active ISO 4217 currency code such as EUR",
            ));
        }
        let token = self.store.token(&request.token).await?;
        // A token tokenized by a signed-in customer serves only them; which
        // tokens exist is not told (the same answer as an unknown one).
        let usable = token.is_some_and(|t| t.owner_id.is_none_or(|o| o == request.customer_id));
        if !usable {
            errors.push(FieldError::new(
                "token",
                "is not a card token of this customer",
            ));
        }
        if !errors.is_empty() {
            return Err(PayError::Invalid(errors));
        }
        let new = NewIntent {
            order_id: request.order_id,
            customer_id: request.customer_id,
            client_id,
            token: &request.token,
            amount: request.amount,
            currency: &request.currency,
        };
        let (created, intent, op) = match self.store.open(new, self.clock.now_ms()).await? {
            Opened::New(intent, op) => (true, intent, op),
            Opened::Same(intent, op) => (false, intent, op),
            Opened::Different => {
                return Err(PayError::Conflict(
                    emporium_contracts::payments::problems::ORDER_HAS_PAYMENT,
                    "This order already has a payment, for another card or amount.".into(),
                ));
            }
        };
        if op.state != crate::store::OpState::Pending {
            return Ok((created, intent));
        }
        // Only the request that recorded the authorize may give up on it
        // (and the recovery loop, later): a repeated request that gets no
        // answer while the first is still at the provider answers 503.
        let after = self.run(&intent, &op, created).await?;
        Ok((created, after))
    }

    /// Captures all that is authorized, or `amount` of it.
    pub async fn capture(&self, intent: &Intent, amount: Option<i64>) -> Result<Intent, PayError> {
        if let Some(amount) = amount {
            let mut errors = Vec::new();
            amount_errors(amount, &mut errors);
            if !errors.is_empty() {
                return Err(PayError::Invalid(errors));
            }
        }
        let step = StepRequest {
            kind: OpKind::Capture,
            key: "capture".into(),
            amount,
        };
        self.step(intent, &step).await
    }

    pub async fn void(&self, intent: &Intent) -> Result<Intent, PayError> {
        let step = StepRequest {
            kind: OpKind::Void,
            key: "void".into(),
            amount: None,
        };
        self.step(intent, &step).await
    }

    /// Refunds `amount`, once per `key` (which names the caller too).
    pub async fn refund(
        &self,
        intent: &Intent,
        key: String,
        amount: i64,
    ) -> Result<Intent, PayError> {
        let mut errors = Vec::new();
        amount_errors(amount, &mut errors);
        if !errors.is_empty() {
            return Err(PayError::Invalid(errors));
        }
        let step = StepRequest {
            kind: OpKind::Refund,
            key,
            amount: Some(amount),
        };
        self.step(intent, &step).await
    }

    async fn step(&self, intent: &Intent, step: &StepRequest) -> Result<Intent, PayError> {
        match self
            .store
            .start(intent.id, step, self.clock.now_ms())
            .await?
        {
            Started::Call(intent, op) => self.run(&intent, &op, true).await,
            Started::Settled(intent, op) if op.state == crate::store::OpState::Refused => {
                Err(PayError::Conflict(
                    emporium_contracts::payments::problems::ILLEGAL_TRANSITION,
                    format!(
                        "The card provider refused this {} before; the payment is {}.",
                        op.kind.as_str(),
                        intent.status.as_str()
                    ),
                ))
            }
            Started::Settled(intent, _) => Ok(intent),
            Started::Refused(kind, why) => Err(PayError::Conflict(kind, why)),
        }
    }

    /// Makes the provider call of `op` and settles it. An authorize that
    /// gets no definite answer fails the payment (`provider_error`) if
    /// `may_give_up`, and the recovery loop then releases whatever the
    /// provider may hold (a technical cancel); any other call stays pending,
    /// to be made again with the same key.
    async fn run(
        &self,
        intent: &Intent,
        op: &Operation,
        may_give_up: bool,
    ) -> Result<Intent, PayError> {
        let outcome = match self.call(intent, op).await {
            Ok(outcome) => outcome,
            Err(()) if op.kind == OpKind::Authorize && may_give_up => Outcome::GaveUp,
            Err(()) => {
                if may_give_up {
                    let retry_at = self.clock.now_ms() + self.backoff(op.attempts);
                    self.store.retry_later(op, retry_at).await?;
                }
                return Err(PayError::Unavailable);
            }
        };
        let after = self.store.settle(op, &outcome, self.clock.now_ms()).await?;
        self.relay.wake();
        record_outcome(op.kind, &outcome);
        match outcome {
            // The provider's own words are logged (settle did), not shown.
            Outcome::Refused(_) => Err(PayError::Conflict(
                emporium_contracts::payments::problems::ILLEGAL_TRANSITION,
                format!("The card provider refused this {}.", op.kind.as_str()),
            )),
            _ => Ok(after),
        }
    }

    /// One provider call: its definite answer, or `Err(())` when there was
    /// none (the client's own retries ran out).
    async fn call(&self, intent: &Intent, op: &Operation) -> Result<Outcome, ()> {
        let key = op.provider_key();
        let p = &self.provider;
        let authorization = intent.provider_id.unwrap_or_default();
        let answer = match op.kind {
            OpKind::Authorize => {
                let request = AuthorizeRequest {
                    token: intent.token.clone(),
                    amount: intent.amount,
                    currency: intent.currency.clone(),
                    reference: intent.id,
                };
                p.authorize(&key, &request)
                    .await
                    .map(|a| Outcome::Authorized { provider_id: a.id })
            }
            OpKind::Capture => p
                .capture(&key, authorization, op.amount)
                .await
                .map(|_| Outcome::Done),
            OpKind::Void => p.void(&key, authorization).await.map(|_| Outcome::Done),
            OpKind::Refund => p
                .refund(&key, authorization, op.amount)
                .await
                .map(|_| Outcome::Done),
            OpKind::Cancel => p.cancel(intent.id).await.map(|_| Outcome::Done),
        };
        match answer {
            Ok(outcome) => Ok(outcome),
            Err(ProviderError::Declined(code)) => {
                Ok(Outcome::Declined(if code == decline::INSUFFICIENT_FUNDS {
                    FailureReason::InsufficientFunds
                } else {
                    FailureReason::CardDeclined
                }))
            }
            Err(ProviderError::Refused(why) | ProviderError::Invalid(why)) => {
                Ok(Outcome::Refused(why))
            }
            Err(ProviderError::NotFound) => {
                Ok(Outcome::Refused("not found at the provider".into()))
            }
            // A definite answer too (a refused API key, a request it cannot
            // take): making it again would not help.
            Err(ProviderError::Call(e)) if !e.is_retryable() => {
                tracing::error!(payment = %intent.id, op = %op.key, error = %e, "The card provider refused a call.");
                Ok(Outcome::Refused(e.to_string()))
            }
            Err(ProviderError::Call(e)) => {
                tracing::warn!(payment = %intent.id, op = %op.key, error = %e, "The card provider gave no answer.");
                Err(())
            }
        }
    }

    fn backoff(&self, attempts: i64) -> i64 {
        let base = i64::try_from(self.recovery.retry_after_ms).unwrap_or(i64::MAX);
        let max = i64::try_from(self.recovery.retry_max_ms).unwrap_or(i64::MAX);
        base.saturating_mul(1_i64 << attempts.clamp(0, 20)).min(max)
    }

    /// Makes again every provider call whose answer was lost and whose time
    /// has come: gives how many were settled.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let lease = i64::try_from(self.recovery.retry_after_ms).unwrap_or(i64::MAX);
        let mut settled = 0;
        for (intent, op) in self.store.due(now, lease, 50).await? {
            match self.run(&intent, &op, true).await {
                Ok(_) | Err(PayError::Conflict(..)) => settled += 1,
                Err(PayError::Unavailable) => {}
                Err(PayError::Store(e)) => return Err(e),
                Err(e) => tracing::warn!(payment = %intent.id, error = %e, "Recovery failed."),
            }
        }
        Ok(settled)
    }

    /// Applies a (verified) provider notification once.
    pub async fn notice(&self, notification: &Notification) -> Result<Noticed, PayError> {
        let noticed = self.store.notice(notification, self.clock.now_ms()).await?;
        if noticed == Noticed::Applied {
            self.relay.wake();
        }
        Ok(noticed)
    }

    /// The payment view of an intent: its sums from the ledger, its history.
    pub async fn view(&self, intent: Intent) -> Result<Payment, StoreError> {
        let sums = self.store.sums(intent.id).await?;
        let events = events_of(self.store.history(intent.id).await?);
        Ok(Payment {
            id: intent.id,
            order_id: intent.order_id,
            customer_id: intent.customer_id,
            amount: intent.amount,
            currency: intent.currency,
            status: intent.status,
            failure_reason: intent.failure_reason,
            authorized: sums.holds,
            captured: sums.merchant,
            refunded: sums.refunded,
            brand: intent.brand,
            last4: intent.last4,
            events,
            created_at: emporium_http::time::rfc3339(intent.created_at),
            updated_at: emporium_http::time::rfc3339(intent.updated_at),
        })
    }
}

fn amount_errors(amount: i64, errors: &mut Vec<FieldError>) {
    if !(1..=MAX_AMOUNT).contains(&amount) {
        errors.push(FieldError::new(
            "amount",
            format!("must be 1 to {MAX_AMOUNT} (minor units)"),
        ));
    }
}

/// `payment_outcomes_total{step, outcome}`: a bounded label set.
fn record_outcome(kind: OpKind, outcome: &Outcome) {
    let outcome = match outcome {
        Outcome::Authorized { .. } | Outcome::Done => "ok",
        Outcome::Declined(FailureReason::InsufficientFunds) => "insufficient_funds",
        Outcome::Declined(_) => "card_declined",
        Outcome::GaveUp => "provider_error",
        Outcome::Refused(_) => "refused",
    };
    metrics::counter!("payment_outcomes_total", "step" => kind.as_str(), "outcome" => outcome)
        .increment(1);
}
