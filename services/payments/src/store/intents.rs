//! Payment intents, the provider calls made for them, what happened to them,
//! and the provider's notifications processed.
//!
//! A money movement is three steps, each its own short transaction around
//! the provider call, never holding a lock over the network:
//! 1. [`Store::start`]: under the intent's row lock, check that the step is
//!    allowed (state, amount, nothing conflicting in flight) and record the
//!    call as a pending operation;
//! 2. the caller calls the provider with the operation's key (the provider
//!    moves money once per key);
//! 3. [`Store::settle`]: under the lock again, apply the answer once: the
//!    new state, the ledger transaction, the history entry and the event
//!    commit together, and the operation is marked done.
//!
//! An operation whose answer never came (a timeout, a crash between 2 and 3)
//! stays pending and is made again with the same key, by a retried request
//! or by the recovery loop ([`Store::due`]).

use emporium_contracts::payments::{
    FailureReason, PaymentAuthorized, PaymentCaptured, PaymentEvent, PaymentFailed, PaymentMoved,
    PaymentRefunded, PaymentStatus, PaymentVoided,
};
use emporium_contracts::provider::{Notification, NotificationKind};
use emporium_db::{Db, StoreError, Tx};
use emporium_messaging::Envelope;
use emporium_messaging::outbox;
use uuid::Uuid;

use super::ledger::{Ledger, RecordError};
use crate::domain::{IntentStatus, Step, Transitions};
use crate::ledger::{Movement, Transfer};

/// A payment intent as stored, with what may be shown of its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub client_id: String,
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub amount: i64,
    pub currency: String,
    pub status: IntentStatus,
    pub failure_reason: Option<FailureReason>,
    pub provider_id: Option<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
}

emporium_db::record! {
    struct IntentRow {
        id: Uuid,
        order_id: Uuid,
        customer_id: Uuid,
        client_id: String,
        token: String,
        brand: String,
        last4: String,
        amount: i64,
        currency: String,
        status: String,
        failure_reason: Option<String>,
        provider_id: Option<Uuid>,
        created_at: i64,
        updated_at: i64,
    }
}

impl TryFrom<IntentRow> for Intent {
    type Error = StoreError;

    fn try_from(r: IntentRow) -> Result<Self, StoreError> {
        let bad = |what: &str| {
            StoreError::Database(sqlx::Error::Decode(
                format!("payment {}: bad {what}", r.id).into(),
            ))
        };
        let status = IntentStatus::parse(&r.status).ok_or_else(|| bad("status"))?;
        let failure_reason = match &r.failure_reason {
            Some(reason) => Some(FailureReason::parse(reason).ok_or_else(|| bad("reason"))?),
            None => None,
        };
        Ok(Self {
            id: r.id,
            order_id: r.order_id,
            customer_id: r.customer_id,
            client_id: r.client_id,
            token: r.token,
            brand: r.brand,
            last4: r.last4,
            amount: r.amount,
            currency: r.currency,
            status,
            failure_reason,
            provider_id: r.provider_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const INTENT: &str = "SELECT i.id, i.order_id, i.customer_id, i.client_id, i.token, t.brand, \
    t.last4, i.amount, i.currency, i.status, i.failure_reason, i.provider_id, i.created_at, \
    i.updated_at FROM payment_intents i JOIN card_tokens t ON t.token = i.token";

/// What a provider call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Authorize,
    Capture,
    Void,
    /// A technical cancel: whatever the provider authorized under the
    /// intent's reference is voided (after an authorize whose answer was lost).
    Cancel,
    Refund,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Cancel => "cancel",
            Self::Refund => "refund",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Authorize,
            Self::Capture,
            Self::Void,
            Self::Cancel,
            Self::Refund,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Where a provider call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    /// Recorded; the provider's definite answer has not been applied.
    Pending,
    Done,
    /// The provider (or the state it found) refused it; nothing moved.
    Refused,
}

impl OpState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Refused => "refused",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Done, Self::Refused]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A provider call, recorded before it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub intent_id: Uuid,
    /// `authorize`, `capture`, `void`, `cancel`, or `refund:<caller>:<key>`.
    pub key: String,
    pub kind: OpKind,
    /// What it moves (minor units; 0 where the provider decides, as for a void).
    pub amount: i64,
    pub state: OpState,
    pub attempts: i64,
}

impl Operation {
    /// The key the provider sees: unique per intent and call, the same on
    /// every retry of this call.
    pub fn provider_key(&self) -> String {
        match self.kind {
            // A refund's own key is hashed in: providers limit a key's length.
            OpKind::Refund => {
                let digest =
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.key.as_bytes());
                let hex: String = digest.as_ref()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{}:refund:{hex}", self.intent_id)
            }
            _ => format!("{}:{}", self.intent_id, self.key),
        }
    }
}

emporium_db::record! {
    struct OpRow {
        intent_id: Uuid,
        key: String,
        kind: String,
        amount: i64,
        state: String,
        attempts: i64,
    }
}

impl TryFrom<OpRow> for Operation {
    type Error = StoreError;

    fn try_from(r: OpRow) -> Result<Self, StoreError> {
        let bad = || {
            StoreError::Database(sqlx::Error::Decode(
                format!("payment operation {}: bad kind or state", r.key).into(),
            ))
        };
        Ok(Self {
            kind: OpKind::parse(&r.kind).ok_or_else(bad)?,
            state: OpState::parse(&r.state).ok_or_else(bad)?,
            intent_id: r.intent_id,
            key: r.key,
            amount: r.amount,
            attempts: r.attempts,
        })
    }
}

const OPERATION: &str =
    "SELECT intent_id, key, kind, amount, state, attempts FROM payment_operations";

/// A card token as payments keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub token: String,
    pub owner_id: Option<Uuid>,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

emporium_db::record! {
    struct TokenRow {
        token: String,
        owner_id: Option<Uuid>,
        brand: String,
        last4: String,
        exp_month: i64,
        exp_year: i64,
    }
}

/// A new intent, for an order.
#[derive(Debug, Clone, Copy)]
pub struct NewIntent<'a> {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub client_id: &'a str,
    pub token: &'a str,
    pub amount: i64,
    pub currency: &'a str,
}

/// What [`Store::open`] found.
#[derive(Debug)]
pub enum Opened {
    /// Created, with its authorize call pending.
    New(Intent, Operation),
    /// The order already has this payment (a retry): as it stands, with its
    /// authorize call.
    Same(Intent, Operation),
    /// The order already has a payment for another card, amount, customer
    /// or client.
    Different,
}

/// A step asked of an intent.
#[derive(Debug, Clone)]
pub struct StepRequest {
    pub kind: OpKind,
    /// `capture`, `void`, or `refund:<caller>:<key>`.
    pub key: String,
    /// A capture's amount (`None`: everything authorized), a refund's amount.
    pub amount: Option<i64>,
}

/// What [`Store::start`] decided.
#[derive(Debug)]
pub enum Started {
    /// Make (or make again) this provider call, then [`Store::settle`] it.
    Call(Intent, Operation),
    /// This call was made before and is settled: the intent as it stands.
    Settled(Intent, Operation),
    /// Not allowed now: the problem type and why.
    Refused(&'static str, String),
}

/// The provider's definite answer to a call.
#[derive(Debug, Clone)]
pub enum Outcome {
    Authorized {
        provider_id: Uuid,
    },
    /// The card was declined (authorize).
    Declined(FailureReason),
    /// An authorize that got no definite answer: the intent fails with
    /// `provider_error` and a technical cancel is recorded, so whatever the
    /// provider may have authorized is released.
    GaveUp,
    /// The capture, void, refund or cancel went through.
    Done,
    /// The provider refused a capture, void or refund; nothing moved.
    Refused(String),
}

/// What a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noticed {
    Applied,
    /// This notification was processed before: nothing changed.
    Duplicate,
    /// It names no payment of ours.
    Unknown,
    /// It names one, but does not fit it (no capture to speak of, another
    /// currency, an amount that is not positive): nothing changed.
    Ignored,
}

/// Problem types of [`Started::Refused`].
pub mod refusals {
    pub use emporium_contracts::payments::problems::{ILLEGAL_TRANSITION, REFUND_EXCEEDS_CAPTURED};
    /// Another capture or void of the intent is in flight.
    pub const STEP_IN_FLIGHT: &str = "step-in-flight";
    /// A capture of more than is authorized.
    pub const CAPTURE_EXCEEDS_AUTHORIZED: &str = "capture-exceeds-authorized";
    /// The same refund key with another amount.
    pub const KEY_REUSED: &str = "idempotency-key-reused";
}

/// What the ledger says of one intent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    /// Held on the card: authorized, not captured or released.
    pub holds: i64,
    /// Captured and not refunded (or reversed).
    pub merchant: i64,
    /// Paid back by refunds.
    pub refunded: i64,
    /// Captured in all (what a capture notification must name).
    pub captured: i64,
}

/// Payments' tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    ledger: Ledger,
    /// How long a call being made by a request is left to it before the
    /// recovery loop may make it again.
    grace_ms: i64,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self {
            ledger: Ledger::new(db.clone()),
            db,
            grace_ms: GRACE_MS,
        }
    }

    /// Leaves a call to the request making it for `grace_ms` (longer than
    /// the provider client's attempts with their backoff can take).
    pub fn with_grace(mut self, grace_ms: i64) -> Self {
        self.grace_ms = grace_ms;
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Keeps a token the provider issued; `owner` is the signed-in customer.
    pub async fn insert_token(
        &self,
        token: &emporium_contracts::provider::CardToken,
        owner: Option<Uuid>,
        now: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO card_tokens (token, owner_id, brand, last4, exp_month, \
            exp_year, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let values = (
            &token.token,
            owner,
            &token.brand,
            &token.last4,
            token.exp_month,
            token.exp_year,
            now,
        );
        self.db.sql().execute(SQL, values).await?;
        Ok(())
    }

    pub async fn token(&self, token: &str) -> Result<Option<StoredToken>, StoreError> {
        const SQL: &str = "SELECT token, owner_id, brand, last4, exp_month, exp_year \
            FROM card_tokens WHERE token = $1";
        let row: Option<TokenRow> = self.db.sql().fetch_optional(SQL, (token,)).await?;
        Ok(row.map(|r| StoredToken {
            token: r.token,
            owner_id: r.owner_id,
            brand: r.brand,
            last4: r.last4,
            exp_month: r.exp_month,
            exp_year: r.exp_year,
        }))
    }

    pub async fn by_order(&self, order_id: Uuid) -> Result<Option<Intent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("{INTENT} WHERE i.order_id = $1"));
        let row: Option<IntentRow> = self.db.sql().fetch_optional(sql, (order_id,)).await?;
        row.map(Intent::try_from).transpose()
    }

    pub async fn by_id(&self, id: Uuid) -> Result<Option<Intent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("{INTENT} WHERE i.id = $1"));
        let row: Option<IntentRow> = self.db.sql().fetch_optional(sql, (id,)).await?;
        row.map(Intent::try_from).transpose()
    }

    /// What happened to an intent, in order: (kind, amount, reason, at).
    pub async fn history(
        &self,
        id: Uuid,
    ) -> Result<Vec<(String, Option<i64>, Option<String>, i64)>, StoreError> {
        const SQL: &str = "SELECT kind, amount, reason, at FROM payment_history \
            WHERE intent_id = $1 ORDER BY seq";
        Ok(self.db.sql().fetch_all(SQL, (id,)).await?)
    }

    /// The intent's sums, from its ledger entries.
    pub async fn sums(&self, id: Uuid) -> Result<Sums, StoreError> {
        let rows: Vec<(String, String, i64)> = self.db.sql().fetch_all(SUMS, (id,)).await?;
        Ok(sums(&rows))
    }

    /// Creates the order's intent and records its authorize call, or finds
    /// the one the order has. Concurrent opens for one order make one intent.
    pub async fn open(&self, new: NewIntent<'_>, now: i64) -> Result<Opened, StoreError> {
        // Two first requests for one order can both find nothing; the unique
        // order id lets one insert win, and the other, on its second try,
        // finds what the first made.
        match self.try_open(new, now).await {
            Err(StoreError::Conflict { .. }) => self.try_open(new, now).await,
            other => other,
        }
    }

    async fn try_open(&self, new: NewIntent<'_>, now: i64) -> Result<Opened, StoreError> {
        let mut tx = self.db.begin_write().await?;
        if let Some(found) = lock_order(&mut tx, new.order_id).await? {
            let same = found.customer_id == new.customer_id
                && found.client_id == new.client_id
                && found.token == new.token
                && found.amount == new.amount
                && found.currency == new.currency;
            let op = op_in(&mut tx, found.id, OpKind::Authorize.as_str()).await?;
            tx.commit().await?;
            return Ok(match (same, op) {
                (true, Some(op)) => Opened::Same(found, op),
                _ => Opened::Different,
            });
        }
        let id = Uuid::now_v7();
        const INSERT: &str = "INSERT INTO payment_intents (id, order_id, customer_id, client_id, \
            token, amount, currency, status, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";
        let values = (
            id,
            new.order_id,
            new.customer_id,
            new.client_id,
            new.token,
            new.amount,
            new.currency,
            IntentStatus::RequiresAuthorization.as_str(),
            now,
        );
        tx.sql().execute(INSERT, values).await?;
        let due = now.saturating_add(self.grace_ms);
        let op = insert_op(
            &mut tx,
            id,
            (OpKind::Authorize, "authorize"),
            new.amount,
            (now, due),
        )
        .await?;
        history(&mut tx, id, ("created", Some(new.amount), None), now).await?;
        let intent = intent_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Opened::New(intent, op))
    }

    /// Checks that `step` is allowed now and records its provider call
    /// (see the module's doc); a call recorded before is found again.
    pub async fn start(
        &self,
        id: Uuid,
        step: &StepRequest,
        now: i64,
    ) -> Result<Started, StoreError> {
        use refusals::*;
        let mut tx = self.db.begin_write().await?;
        let intent = locked(&mut tx, id).await?;
        if let Some(op) = op_in(&mut tx, id, &step.key).await? {
            if step.amount.is_some_and(|a| a != op.amount) {
                tx.rollback().await?;
                return Ok(if op.kind == OpKind::Refund {
                    Started::Refused(
                        KEY_REUSED,
                        "This key was used for a refund of another amount.".into(),
                    )
                } else {
                    Started::Refused(
                        ILLEGAL_TRANSITION,
                        format!("A {} of {} was asked before.", op.kind.as_str(), op.amount),
                    )
                });
            }
            tx.commit().await?;
            return Ok(match op.state {
                OpState::Pending => Started::Call(intent, op),
                _ => Started::Settled(intent, op),
            });
        }
        let sums = sums_in(&mut tx, id).await?;
        let illegal = |what: &str| {
            Started::Refused(
                ILLEGAL_TRANSITION,
                format!(
                    "A payment that is {} cannot be {what}.",
                    intent.status.as_str()
                ),
            )
        };
        const IN_FLIGHT: &str = "SELECT key FROM payment_operations \
            WHERE intent_id = $1 AND state = 'pending' AND kind IN ('capture', 'void')";
        let refused = match step.kind {
            OpKind::Capture | OpKind::Void => {
                let (verb, allowed) = if step.kind == OpKind::Capture {
                    ("captured", intent.status.after(Step::Capture).is_ok())
                } else {
                    ("voided", intent.status.after(Step::Void).is_ok())
                };
                let amount = step.amount.unwrap_or(sums.holds);
                let in_flight: Option<(String,)> =
                    tx.sql().fetch_optional(IN_FLIGHT, (id,)).await?;
                if !allowed {
                    Some(illegal(verb))
                } else if let Some((other,)) = in_flight {
                    Some(Started::Refused(
                        STEP_IN_FLIGHT,
                        format!("A {other} of this payment is in progress."),
                    ))
                } else if step.kind == OpKind::Capture && !(1..=sums.holds).contains(&amount) {
                    Some(Started::Refused(
                        CAPTURE_EXCEEDS_AUTHORIZED,
                        format!("At most {} can be captured.", sums.holds),
                    ))
                } else {
                    None
                }
            }
            OpKind::Refund => {
                let amount = step.amount.unwrap_or(0);
                const PENDING: &str = "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payment_operations \
                    WHERE intent_id = $1 AND state = 'pending' AND kind = 'refund'";
                let (pending,): (i64,) = tx.sql().fetch_one(PENDING, (id,)).await?;
                let left = sums.merchant - pending;
                let rest = sums.merchant - amount;
                if intent
                    .status
                    .after(Step::Refund { rest: rest.max(0) })
                    .is_err()
                {
                    Some(illegal("refunded"))
                } else if amount > left {
                    Some(Started::Refused(
                        REFUND_EXCEEDS_CAPTURED,
                        format!("At most {} can be refunded now.", left.max(0)),
                    ))
                } else {
                    None
                }
            }
            OpKind::Authorize | OpKind::Cancel => Some(illegal("started again")),
        };
        if let Some(refused) = refused {
            tx.rollback().await?;
            return Ok(refused);
        }
        let amount = match step.kind {
            OpKind::Capture => step.amount.unwrap_or(sums.holds),
            OpKind::Void => sums.holds,
            _ => step.amount.unwrap_or(0),
        };
        let due = now.saturating_add(self.grace_ms);
        let op = insert_op(&mut tx, id, (step.kind, &step.key), amount, (now, due)).await?;
        tx.commit().await?;
        Ok(Started::Call(intent, op))
    }

    /// Applies the provider's answer to a pending call, once: a call already
    /// settled changes nothing (a retry or the recovery loop got there
    /// first). Gives the intent as it stands after.
    pub async fn settle(
        &self,
        op: &Operation,
        outcome: &Outcome,
        now: i64,
    ) -> Result<Intent, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let intent = locked(&mut tx, op.intent_id).await?;
        let current = op_in(&mut tx, op.intent_id, &op.key).await?;
        if current.is_none_or(|c| c.state != OpState::Pending) {
            tx.commit().await?;
            return Ok(intent);
        }
        let mut events = Vec::new();
        let state = self
            .apply(&mut tx, &intent, op, outcome, now, &mut events)
            .await?;
        const DONE: &str = "UPDATE payment_operations SET state = $1, updated_at = $2 \
            WHERE intent_id = $3 AND key = $4";
        tx.sql()
            .execute(DONE, (state.as_str(), now, op.intent_id, &op.key))
            .await?;
        let after = intent_in(&mut tx, op.intent_id).await?;
        outbox::commit_with(tx, &events).await?;
        Ok(after)
    }

    /// The state change, ledger transaction, history and events of one
    /// answer; gives the operation's final state.
    async fn apply(
        &self,
        tx: &mut Tx,
        intent: &Intent,
        op: &Operation,
        outcome: &Outcome,
        now: i64,
        events: &mut Vec<Envelope>,
    ) -> Result<OpState, StoreError> {
        let sums = sums_in(tx, intent.id).await?;
        let moved = |amount: i64| PaymentMoved {
            payment_id: intent.id,
            order_id: intent.order_id,
            customer_id: intent.customer_id,
            amount,
            currency: intent.currency.clone(),
        };
        match (op.kind, outcome) {
            (OpKind::Authorize, Outcome::Authorized { provider_id }) => {
                let Some(next) = self.next(intent, Step::Authorize) else {
                    return Ok(OpState::Done);
                };
                const SQL: &str = "UPDATE payment_intents SET provider_id = $1 WHERE id = $2";
                tx.sql().execute(SQL, (provider_id, intent.id)).await?;
                self.post(tx, intent, (Movement::Authorize, op.amount), now)
                    .await?;
                set_status(tx, intent.id, (next, None), now).await?;
                history(tx, intent.id, ("authorized", Some(op.amount), None), now).await?;
                events.push(event(&PaymentAuthorized(moved(op.amount)), intent));
                Ok(OpState::Done)
            }
            (OpKind::Authorize, Outcome::Declined(reason)) => {
                self.fail(tx, intent, *reason, now, events).await?;
                Ok(OpState::Refused)
            }
            (OpKind::Authorize, _) => {
                self.fail(tx, intent, FailureReason::ProviderError, now, events)
                    .await?;
                // Whatever the provider may have authorized under this
                // intent's reference is released by a technical cancel, which
                // the recovery loop makes at once (not the request, which has
                // spent its time on the attempts already).
                insert_op(tx, intent.id, (OpKind::Cancel, "cancel"), 0, (now, now)).await?;
                Ok(OpState::Refused)
            }
            (_, Outcome::Refused(why)) => {
                tracing::warn!(payment = %intent.id, op = %op.key, why = %why, "The provider refused a step.");
                history(tx, intent.id, ("step_refused", None, None), now).await?;
                Ok(OpState::Refused)
            }
            (OpKind::Capture, _) => {
                let Some(next) = self.next(intent, Step::Capture) else {
                    return Ok(OpState::Done);
                };
                self.post(tx, intent, (Movement::Capture, op.amount), now)
                    .await?;
                history(tx, intent.id, ("captured", Some(op.amount), None), now).await?;
                // A partial capture releases the rest of the hold.
                let rest = sums.holds - op.amount;
                if rest > 0 {
                    self.post(tx, intent, (Movement::Void, rest), now).await?;
                    history(tx, intent.id, ("released", Some(rest), None), now).await?;
                }
                set_status(tx, intent.id, (next, None), now).await?;
                events.push(event(&PaymentCaptured(moved(op.amount)), intent));
                Ok(OpState::Done)
            }
            (OpKind::Void, _) => {
                let Some(next) = self.next(intent, Step::Void) else {
                    return Ok(OpState::Done);
                };
                if sums.holds > 0 {
                    self.post(tx, intent, (Movement::Void, sums.holds), now)
                        .await?;
                }
                set_status(tx, intent.id, (next, None), now).await?;
                history(tx, intent.id, ("voided", Some(sums.holds), None), now).await?;
                events.push(event(&PaymentVoided(moved(sums.holds)), intent));
                Ok(OpState::Done)
            }
            (OpKind::Refund, _) => {
                let rest = sums.merchant - op.amount;
                let Some(next) = self.next(intent, Step::Refund { rest }) else {
                    return Ok(OpState::Done);
                };
                self.post(tx, intent, (Movement::Refund, op.amount), now)
                    .await?;
                set_status(tx, intent.id, (next, None), now).await?;
                history(tx, intent.id, ("refunded", Some(op.amount), None), now).await?;
                events.push(event(&PaymentRefunded(moved(op.amount)), intent));
                Ok(OpState::Done)
            }
            (OpKind::Cancel, _) => {
                history(tx, intent.id, ("released", None, None), now).await?;
                Ok(OpState::Done)
            }
        }
    }

    /// The state after `step`, or `None` (logged) when the intent moved on
    /// meanwhile in a way that does not allow it: the provider's answer is
    /// then kept in the history only.
    fn next(&self, intent: &Intent, step: Step) -> Option<IntentStatus> {
        match intent.status.after(step) {
            Ok(next) => Some(next),
            Err(e) => {
                tracing::error!(payment = %intent.id, error = %e, "A provider answer no longer fits the payment.");
                None
            }
        }
    }

    async fn fail(
        &self,
        tx: &mut Tx,
        intent: &Intent,
        reason: FailureReason,
        now: i64,
        events: &mut Vec<Envelope>,
    ) -> Result<(), StoreError> {
        let Some(next) = self.next(intent, Step::Fail(reason)) else {
            return Ok(());
        };
        set_status(tx, intent.id, (next, Some(reason)), now).await?;
        history(tx, intent.id, ("failed", None, Some(reason.as_str())), now).await?;
        let failed = PaymentFailed {
            payment_id: intent.id,
            order_id: intent.order_id,
            customer_id: intent.customer_id,
            reason,
        };
        events.push(event(&failed, intent));
        Ok(())
    }

    async fn post(
        &self,
        tx: &mut Tx,
        intent: &Intent,
        (movement, amount): (Movement, i64),
        now: i64,
    ) -> Result<(), StoreError> {
        let transfer = Transfer::new(intent.id, movement, amount, &intent.currency);
        match self.ledger.record(tx, &transfer, now).await {
            Ok(_) => Ok(()),
            Err(RecordError::Store(e)) => Err(e),
            // The checks before the provider call make this a bug, not a
            // client's mistake: nothing commits.
            Err(RecordError::Refused(e)) => Err(StoreError::Database(sqlx::Error::Protocol(
                format!("ledger refused a transfer of payment {}: {e}", intent.id),
            ))),
        }
    }

    /// Pending calls whose time to be made again has come, claimed for
    /// `lease_ms` so that other replicas leave them alone meanwhile.
    pub async fn due(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<(Intent, Operation)>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{OPERATION} WHERE state = 'pending' AND retry_at <= $1 ORDER BY retry_at LIMIT $2"
        ));
        let rows: Vec<OpRow> = self.db.sql().fetch_all(sql, (now, limit)).await?;
        let mut due = Vec::new();
        for row in rows {
            let op = Operation::try_from(row)?;
            const CLAIM: &str = "UPDATE payment_operations SET retry_at = $1, \
                attempts = attempts + 1 WHERE intent_id = $2 AND key = $3 \
                AND state = 'pending' AND retry_at <= $4";
            let claimed = self
                .db
                .sql()
                .execute(CLAIM, (now + lease_ms, op.intent_id, &op.key, now))
                .await?;
            if claimed == 1
                && let Some(intent) = self.by_id(op.intent_id).await?
            {
                due.push((intent, op));
            }
        }
        Ok(due)
    }

    /// A pending call is not made again in the background before `retry_at`.
    pub async fn retry_later(&self, op: &Operation, retry_at: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE payment_operations SET retry_at = $1 \
            WHERE intent_id = $2 AND key = $3 AND state = 'pending'";
        self.db
            .sql()
            .execute(SQL, (retry_at, op.intent_id, &op.key))
            .await?;
        Ok(())
    }

    /// Applies a provider notification once: a late capture failure fails a
    /// captured intent (the capture reversed in the ledger, `payment.failed`
    /// published); a settlement is noted in the history.
    pub async fn notice(&self, n: &Notification, now: i64) -> Result<Noticed, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let kind = match n.kind {
            NotificationKind::CaptureSettled => "capture_settled",
            NotificationKind::CaptureFailed => "capture_failed",
        };
        const RECEIPT: &str = "INSERT INTO webhook_receipts (id, kind, received_at) \
            VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
        if tx.sql().execute(RECEIPT, (n.id, kind, now)).await? == 0 {
            tx.rollback().await?;
            return Ok(Noticed::Duplicate);
        }
        let intent = match lock_intent(&mut tx, n.reference).await? {
            Some(intent) if intent.provider_id == Some(n.authorization_id) => intent,
            _ => {
                // Kept as received, so a replay of it is still a duplicate.
                tx.commit().await?;
                return Ok(Noticed::Unknown);
            }
        };
        // A notification about a capture fits only a payment that was
        // captured, in its currency, for the amount captured.
        let captured = matches!(
            intent.status,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
        );
        let sums = sums_in(&mut tx, intent.id).await?;
        if !captured || n.amount != sums.captured || n.currency != intent.currency {
            tracing::warn!(payment = %intent.id, notification = %n.id, "A provider notification does not fit the payment; ignored.");
            tx.commit().await?;
            return Ok(Noticed::Ignored);
        }
        let mut events = Vec::new();
        match n.kind {
            NotificationKind::CaptureSettled => {
                history(&mut tx, intent.id, ("settled", Some(n.amount), None), now).await?;
            }
            NotificationKind::CaptureFailed => {
                history(
                    &mut tx,
                    intent.id,
                    ("capture_failed", Some(n.amount), None),
                    now,
                )
                .await?;
                // What is still counted as the shop's is reversed: the network
                // paid nothing. Refunds made before stay recorded.
                let merchant = sums.merchant;
                if merchant > 0 {
                    self.post(&mut tx, &intent, (Movement::Reversal, merchant), now)
                        .await?;
                }
                let reason = FailureReason::CaptureFailed;
                self.fail(&mut tx, &intent, reason, now, &mut events)
                    .await?;
            }
        }
        outbox::commit_with(tx, &events).await?;
        Ok(Noticed::Applied)
    }
}

/// [`Store::with_grace`]'s default.
pub const GRACE_MS: i64 = 60_000;

/// The sums of one intent's entries by movement and account.
const SUMS: &str = "SELECT movement, account, CAST(SUM(amount) AS BIGINT) FROM ledger_entries \
    WHERE intent_id = $1 GROUP BY movement, account";

/// The intent's sums, read inside `tx`.
async fn sums_in(tx: &mut Tx, id: Uuid) -> Result<Sums, StoreError> {
    let rows: Vec<(String, String, i64)> = tx.sql().fetch_all(SUMS, (id,)).await?;
    Ok(sums(&rows))
}

fn sums(rows: &[(String, String, i64)]) -> Sums {
    rows.iter()
        .fold(Sums::default(), |mut s, (movement, account, amount)| {
            match account.as_str() {
                "holds" => s.holds += amount,
                "merchant" => s.merchant += amount,
                _ => {}
            }
            match (movement.as_str(), account.as_str()) {
                ("refund", "merchant") => s.refunded -= amount,
                ("capture", "merchant") => s.captured += amount,
                _ => {}
            }
            s
        })
}

fn event<E: emporium_contracts::Event>(payload: &E, intent: &Intent) -> Envelope {
    Envelope::new(payload, Some(intent.order_id.to_string()), None)
}

async fn lock_order(tx: &mut Tx, order_id: Uuid) -> Result<Option<Intent>, StoreError> {
    let lock = tx.locking("SELECT id FROM payment_intents WHERE order_id = $1");
    let found: Option<(Uuid,)> = tx.sql().fetch_optional(lock, (order_id,)).await?;
    match found {
        Some((id,)) => Ok(Some(intent_in(tx, id).await?)),
        None => Ok(None),
    }
}

/// The intent, its row locked until `tx` ends.
async fn lock_intent(tx: &mut Tx, id: Uuid) -> Result<Option<Intent>, StoreError> {
    let lock = tx.locking("SELECT id FROM payment_intents WHERE id = $1");
    let found: Option<(Uuid,)> = tx.sql().fetch_optional(lock, (id,)).await?;
    match found {
        Some(_) => Ok(Some(intent_in(tx, id).await?)),
        None => Ok(None),
    }
}

/// An intent the caller knows exists (it was read or locked before).
async fn locked(tx: &mut Tx, id: Uuid) -> Result<Intent, StoreError> {
    lock_intent(tx, id)
        .await?
        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
}

async fn intent_in(tx: &mut Tx, id: Uuid) -> Result<Intent, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!("{INTENT} WHERE i.id = $1"));
    let row: Option<IntentRow> = tx.sql().fetch_optional(sql, (id,)).await?;
    row.map(Intent::try_from)
        .transpose()?
        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
}

async fn op_in(tx: &mut Tx, id: Uuid, key: &str) -> Result<Option<Operation>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!("{OPERATION} WHERE intent_id = $1 AND key = $2"));
    let row: Option<OpRow> = tx.sql().fetch_optional(sql, (id, key)).await?;
    row.map(Operation::try_from).transpose()
}

async fn insert_op(
    tx: &mut Tx,
    id: Uuid,
    (kind, key): (OpKind, &str),
    amount: i64,
    (now, retry_at): (i64, i64),
) -> Result<Operation, StoreError> {
    // Not made again in the background before `retry_at`: the request that
    // recorded it is making the call now.
    const SQL: &str = "INSERT INTO payment_operations (intent_id, key, kind, amount, state, \
        attempts, retry_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $6)";
    tx.sql()
        .execute(SQL, (id, key, kind.as_str(), amount, retry_at, now))
        .await?;
    Ok(Operation {
        intent_id: id,
        key: key.to_owned(),
        kind,
        amount,
        state: OpState::Pending,
        attempts: 0,
    })
}

async fn set_status(
    tx: &mut Tx,
    id: Uuid,
    (status, reason): (IntentStatus, Option<FailureReason>),
    now: i64,
) -> Result<(), StoreError> {
    const SQL: &str = "UPDATE payment_intents SET status = $1, \
        failure_reason = COALESCE($2, failure_reason), updated_at = $3 WHERE id = $4";
    let reason = reason.map(FailureReason::as_str);
    tx.sql()
        .execute(SQL, (status.as_str(), reason, now, id))
        .await?;
    Ok(())
}

async fn history(
    tx: &mut Tx,
    id: Uuid,
    (kind, amount, reason): (&str, Option<i64>, Option<&str>),
    now: i64,
) -> Result<(), StoreError> {
    const SQL: &str = "INSERT INTO payment_history (intent_id, seq, kind, amount, reason, at) \
        SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM payment_history \
        WHERE intent_id = $1";
    tx.sql()
        .execute(SQL, (id, kind, amount, reason, now))
        .await?;
    Ok(())
}

/// The payment view's `events`, from [`Store::history`] rows.
pub fn events_of(rows: Vec<(String, Option<i64>, Option<String>, i64)>) -> Vec<PaymentEvent> {
    rows.into_iter()
        .map(|(kind, amount, reason, at)| PaymentEvent {
            kind,
            amount,
            reason: reason.as_deref().and_then(FailureReason::parse),
            at: emporium_http::time::rfc3339(at),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_split_holds_captured_and_refunded() {
        let rows = [
            ("authorize", "customer", -1000),
            ("authorize", "holds", 1000),
            ("capture", "holds", -800),
            ("capture", "merchant", 800),
            ("void", "holds", -200),
            ("refund", "merchant", -300),
            ("refund", "customer", 300),
        ]
        .map(|(m, a, x)| (m.to_owned(), a.to_owned(), x));
        let s = sums(&rows);
        assert_eq!(
            s,
            Sums {
                holds: 0,
                merchant: 500,
                refunded: 300,
                captured: 800,
            }
        );
    }
}
