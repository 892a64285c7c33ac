//! An order as an event-sourced aggregate: the events its history is made
//! of, the fold that rebuilds its state from them, and the step the saga
//! takes next.
//!
//! The history is the truth. [`Order::apply`] refuses every event the
//! order's state does not allow, so a stored stream always replays, and
//! [`Order::next_step`] reads what to do from the fold alone: after a crash
//! the orchestrator replays the stream and carries on, or compensates, from
//! exactly where it stopped. Every remote step is idempotent per order, so
//! repeating one whose event was never written is harmless.
//!
//! - Checkout: `placed` → `priced` → `stock_reserved` → `payment_authorized`
//!   → `confirmed`. A checkout that fails records `checkout_failed` with the
//!   reason, gives back what it holds in the reverse of the order it took it
//!   (`payment_voided`, then `stock_released`) and ends `rejected`. A failure
//!   while nothing is held goes straight to `rejected`.
//! - Cancel, from `pending` (overtaking the checkout) or `confirmed`:
//!   `cancel_requested` → `payment_voided` → `stock_released` → `cancelled`.
//! - Ship, from `confirmed`: `ship_requested` → `payment_captured` →
//!   `stock_committed` → `shipped`; then `delivered`. Money is taken before
//!   the goods leave.
//! - Refund, from `delivered`: `refund_requested` → `restocked` →
//!   `payment_refunded` → `refunded`.
//! - Payments reporting a late capture failure moves a confirmed, shipped or
//!   delivered order to `needs_attention`, where a person takes over.
//!
//! One transition runs at a time ([`Order::in_progress`]): an order being
//! shipped cannot be cancelled, a cancelled checkout takes no more forward
//! steps. Who may ask for a transition (a customer only for their own order,
//! shipping by an admin) is the API's business, not this module's; the
//! statuses a customer may cancel from, `pending` and `confirmed`, are the
//! only ones anyone may.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use emporium_contracts::payments::FailureReason;

use super::address::ShippingAddress;
use super::totals::{Line, Totals};

/// Where an order stands, as customers and admins see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed; the checkout (or a cancel that overtook it) is running.
    Pending,
    /// Stock reserved and payment authorized: the shop owes the goods.
    Confirmed,
    /// The checkout failed and everything it held was given back.
    Rejected,
    /// Cancelled before shipping; everything held was given back.
    Cancelled,
    /// Payment captured and the goods left the warehouse.
    Shipped,
    Delivered,
    /// Delivered, then the goods came back and the money went back.
    Refunded,
    /// Payments refused a capture it had accepted (or something else the
    /// saga cannot put right): a person must look. No event leaves it yet.
    NeedsAttention,
}

impl OrderStatus {
    /// Every status, roughly in the order an order goes through them.
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Confirmed,
        Self::Rejected,
        Self::Cancelled,
        Self::Shipped,
        Self::Delivered,
        Self::Refunded,
        Self::NeedsAttention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Refunded => "refunded",
            Self::NeedsAttention => "needs_attention",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a checkout ended `rejected` (the order's `rejection_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// The catalog could not reserve every item.
    OutOfStock,
    /// The card was declined.
    PaymentDeclined,
    InsufficientFunds,
    /// Payments or its card provider could not be reached in time.
    PaymentUnavailable,
    /// The catalog could not be reached in time.
    CatalogUnavailable,
    /// A product is unknown or deleted, or priced in another currency than
    /// the rest of the order.
    ProductUnavailable,
    /// The checkout did not finish in the time it is given; what it held
    /// was given back rather than kept waiting.
    Expired,
}

impl RejectionReason {
    pub const ALL: [Self; 7] = [
        Self::OutOfStock,
        Self::PaymentDeclined,
        Self::InsufficientFunds,
        Self::PaymentUnavailable,
        Self::CatalogUnavailable,
        Self::ProductUnavailable,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::PaymentDeclined => "payment_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::PaymentUnavailable => "payment_unavailable",
            Self::CatalogUnavailable => "catalog_unavailable",
            Self::ProductUnavailable => "product_unavailable",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Why to reject a checkout whose authorization failed for `reason`.
    /// `None` for a capture failure: that comes after confirmation and leads
    /// to `needs_attention`, not to a rejection.
    pub fn of_payment_failure(reason: FailureReason) -> Option<Self> {
        match reason {
            FailureReason::CardDeclined => Some(Self::PaymentDeclined),
            FailureReason::InsufficientFunds => Some(Self::InsufficientFunds),
            FailureReason::ProviderError => Some(Self::PaymentUnavailable),
            FailureReason::CaptureFailed => None,
        }
    }
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked for a transition, kept in the history for audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Customer,
    Admin,
    /// The service itself (a sweeper, a recovery).
    System,
}

/// `{"kind": "customer", "id": "…"}`; a system actor has no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

impl Actor {
    pub fn customer(id: Uuid) -> Self {
        Self {
            kind: ActorKind::Customer,
            id: Some(id),
        }
    }

    pub fn admin(id: Uuid) -> Self {
        Self {
            kind: ActorKind::Admin,
            id: Some(id),
        }
    }

    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
        }
    }
}

/// One thing that happened to an order. Stored as `{"type": "…", "data":
/// {…}}`; an event that carries nothing is `{"type": "…"}` alone.
///
/// Events are facts: a changed meaning is a new variant, never an edit of an
/// old one, since every stored stream must still replay.
// `Placed` is far larger than the rest; events are decoded one stored row at
// a time and folded, so boxing it would only make every match clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum OrderEvent {
    /// The customer placed the order; the checkout starts. The first event
    /// of every stream, and only the first.
    Placed {
        customer_id: Uuid,
        lines: Vec<Line>,
        totals: Totals,
        shipping_address: ShippingAddress,
        /// The card token to authorize on (not the card: payments keeps that).
        payment_token: String,
        /// The SHA-256 of the request that placed it, in hex: a retry with
        /// the same `Idempotency-Key` must be this request again. Empty in
        /// orders placed other than through the API.
        #[serde(default)]
        request: String,
    },
    /// The pricing step settled what the order costs, before anything is
    /// reserved or authorized. Today it repeats the placed prices.
    Priced {
        lines: Vec<Line>,
        totals: Totals,
    },
    /// The catalog holds the stock (the reservation's id is the order's).
    StockReserved {
        reservation_id: Uuid,
    },
    /// Payments holds the total on the card.
    PaymentAuthorized {
        payment_id: Uuid,
        brand: String,
        last4: String,
    },
    /// Stock and payment are both held: the checkout succeeded.
    Confirmed,
    /// The checkout cannot succeed; what it holds is given back next, then
    /// the order is rejected for `reason`.
    CheckoutFailed {
        reason: RejectionReason,
    },
    /// The reservation was released (a compensation).
    StockReleased,
    /// The authorization was voided (a compensation).
    PaymentVoided,
    /// The checkout ended without the order, nothing held.
    Rejected {
        reason: RejectionReason,
    },
    CancelRequested {
        by: Actor,
    },
    /// Captured money went back to the card (minor units).
    PaymentRefunded {
        amount: i64,
    },
    /// Goods that had left the warehouse are back in stock.
    Restocked,
    /// The cancel finished: nothing is held any more.
    Cancelled,
    ShipRequested {
        by: Actor,
    },
    /// Payments took the money (minor units).
    PaymentCaptured {
        amount: i64,
    },
    /// The reservation was committed: the goods left the warehouse.
    StockCommitted,
    Shipped,
    Delivered {
        by: Actor,
    },
    RefundRequested {
        by: Actor,
    },
    /// The refund finished: goods back, money back.
    Refunded,
    /// Something the saga cannot put right, said in words for a person.
    NeedsAttention {
        reason: String,
    },
}

impl OrderEvent {
    /// The event's `type` as stored (`placed`, `stock_reserved`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "placed",
            Self::Priced { .. } => "priced",
            Self::StockReserved { .. } => "stock_reserved",
            Self::PaymentAuthorized { .. } => "payment_authorized",
            Self::Confirmed => "confirmed",
            Self::CheckoutFailed { .. } => "checkout_failed",
            Self::StockReleased => "stock_released",
            Self::PaymentVoided => "payment_voided",
            Self::Rejected { .. } => "rejected",
            Self::CancelRequested { .. } => "cancel_requested",
            Self::PaymentRefunded { .. } => "payment_refunded",
            Self::Restocked => "restocked",
            Self::Cancelled => "cancelled",
            Self::ShipRequested { .. } => "ship_requested",
            Self::PaymentCaptured { .. } => "payment_captured",
            Self::StockCommitted => "stock_committed",
            Self::Shipped => "shipped",
            Self::Delivered { .. } => "delivered",
            Self::RefundRequested { .. } => "refund_requested",
            Self::Refunded => "refunded",
            Self::NeedsAttention { .. } => "needs_attention",
        }
    }
}

/// The transition an order is in the middle of: what the saga is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// From `placed` to `confirmed` or `rejected`.
    Checkout,
    /// From `cancel_requested` to `cancelled`.
    Cancel,
    /// From `ship_requested` to `shipped`.
    Ship,
    /// From `refund_requested` to `refunded`.
    Refund,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checkout => "checkout",
            Self::Cancel => "cancel",
            Self::Ship => "ship",
            Self::Refund => "refund",
        }
    }
}

/// The payment behind an order, as much of it as may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayment {
    pub payment_id: Uuid,
    pub brand: String,
    pub last4: String,
}

/// What the orchestrator does next for an order; each step, once done, is
/// recorded by the event named on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaStep {
    /// Settle the lines' prices, discounts, shipping and tax → `priced`.
    Price,
    /// Reserve every line's stock in the catalog, under the order's id →
    /// `stock_reserved` (or, when there is not enough, a rejection).
    ReserveStock,
    /// Authorize the order's total on its payment token → `payment_authorized`
    /// (or, when declined, `checkout_failed`).
    AuthorizePayment,
    /// Stock and payment are held → `confirmed`.
    Confirm,
    /// Void the authorization → `payment_voided`.
    VoidPayment,
    /// Give `amount` of the captured money back → `payment_refunded`.
    RefundPayment { amount: i64 },
    /// Release the reservation → `stock_released`.
    ReleaseStock,
    /// Put goods that left the warehouse back in stock → `restocked`.
    Restock,
    /// Nothing is held any more → `rejected` for `reason`.
    Reject { reason: RejectionReason },
    /// Nothing is held any more → `cancelled`.
    MarkCancelled,
    /// Capture all that is authorized → `payment_captured`.
    CapturePayment,
    /// Commit the reservation: the goods leave → `stock_committed`.
    CommitStock,
    /// Paid and out of the warehouse → `shipped`.
    MarkShipped,
    /// Goods and money are back → `refunded`.
    MarkRefunded,
}

/// An event the order's state does not allow (answered 409). `status` is
/// `None` when there was no order yet: a stream that does not start with
/// `placed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalEvent {
    pub status: Option<OrderStatus>,
    pub event: &'static str,
}

/// What [`IllegalEvent::event`] says when [`Order::replay`] is given no events.
pub const NO_EVENTS: &str = "(no events)";

impl fmt::Display for IllegalEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "an order that is {status} cannot take `{}`", self.event),
            None => write!(f, "an order must start with `placed`, not `{}`", self.event),
        }
    }
}

impl std::error::Error for IllegalEvent {}

/// An order as its events make it: what it is, what it holds, and what is
/// under way. Built only by [`Order::start`], [`Order::apply`] and
/// [`Order::replay`], so it is always a state some legal history reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    id: Uuid,
    customer_id: Uuid,
    status: OrderStatus,
    lines: Vec<Line>,
    totals: Totals,
    shipping_address: ShippingAddress,
    payment_token: String,
    /// The fingerprint of the request that placed it.
    request: String,
    /// The pricing step has run.
    priced: bool,
    /// Set once stock was reserved, and kept after it is released or
    /// committed: a reservation is made once per order.
    reservation_id: Option<Uuid>,
    /// The reservation is active (reserved, not released or committed).
    stock_held: bool,
    /// The goods left the warehouse and have not come back.
    stock_committed: bool,
    /// Set once authorized, and kept after the payment is voided.
    payment: Option<OrderPayment>,
    /// The authorization holds money on the card (not captured or voided).
    payment_held: bool,
    /// Minor units captured.
    payment_captured: i64,
    /// Minor units of the capture refunded.
    refunded: i64,
    /// Set by `checkout_failed` (the checkout is being undone) or `rejected`.
    rejection_reason: Option<RejectionReason>,
    attention: Option<String>,
    in_progress: Option<Transition>,
    /// How many events are folded in: the stream's last sequence number.
    version: i64,
}

impl Order {
    /// The order that `placed` starts (version 1), or an error for any other
    /// first event.
    pub fn start(id: Uuid, placed: &OrderEvent) -> Result<Self, IllegalEvent> {
        let OrderEvent::Placed {
            customer_id,
            lines,
            totals,
            shipping_address,
            payment_token,
            request,
        } = placed
        else {
            return Err(IllegalEvent {
                status: None,
                event: placed.type_name(),
            });
        };
        Ok(Self {
            id,
            customer_id: *customer_id,
            status: OrderStatus::Pending,
            lines: lines.clone(),
            totals: totals.clone(),
            shipping_address: shipping_address.clone(),
            payment_token: payment_token.clone(),
            request: request.clone(),
            priced: false,
            reservation_id: None,
            stock_held: false,
            stock_committed: false,
            payment: None,
            payment_held: false,
            payment_captured: 0,
            refunded: 0,
            rejection_reason: None,
            attention: None,
            in_progress: Some(Transition::Checkout),
            version: 1,
        })
    }

    /// The order a whole stream makes, or the first event that does not fit.
    pub fn replay(id: Uuid, events: &[OrderEvent]) -> Result<Self, IllegalEvent> {
        let Some((first, rest)) = events.split_first() else {
            return Err(IllegalEvent {
                status: None,
                event: NO_EVENTS,
            });
        };
        let mut order = Self::start(id, first)?;
        for event in rest {
            order.apply(event)?;
        }
        Ok(order)
    }

    /// Folds one more event in, or refuses it and changes nothing.
    pub fn apply(&mut self, event: &OrderEvent) -> Result<(), IllegalEvent> {
        if !self.allows(event) {
            return Err(IllegalEvent {
                status: Some(self.status),
                event: event.type_name(),
            });
        }
        self.fold(event);
        self.version += 1;
        Ok(())
    }

    /// Whether [`Order::apply`] would take `event` now: the API asks before
    /// it appends a request, the saga before it records a step.
    ///
    /// Facts about what is held are taken whenever they can be true, even
    /// while a checkout is being undone: a reservation or authorization that
    /// answered after a cancel was asked for must be recorded, or nothing
    /// would give it back. The compensations themselves (`payment_voided`,
    /// `stock_released`, …) are taken in any order while something is being
    /// undone; [`Order::next_step`] decides the order, not this.
    pub fn allows(&self, event: &OrderEvent) -> bool {
        use OrderEvent as E;
        use OrderStatus as S;
        let pending = self.status == S::Pending;
        let checkout = pending && self.in_progress == Some(Transition::Checkout);
        let going_ahead = checkout && self.rejection_reason.is_none();
        let rejecting = checkout && self.rejection_reason.is_some();
        let undoing = rejecting
            || matches!(
                self.in_progress,
                Some(Transition::Cancel | Transition::Refund)
            );
        let shipping = self.in_progress == Some(Transition::Ship);
        let idle = self.in_progress.is_none();
        match event {
            E::Placed { .. } => false,
            E::Priced { .. } => going_ahead && !self.priced,
            E::StockReserved { .. } => pending && self.priced && self.reservation_id.is_none(),
            E::PaymentAuthorized { .. } => pending && self.stock_held && self.payment.is_none(),
            E::Confirmed => going_ahead && self.stock_held && self.payment_held,
            E::CheckoutFailed { .. } => going_ahead,
            E::StockReleased => undoing && self.stock_held,
            E::PaymentVoided => undoing && self.payment_held,
            E::Rejected { reason } => {
                checkout
                    && self.holds_nothing()
                    && self.rejection_reason.is_none_or(|r| r == *reason)
            }
            E::CancelRequested { .. } => going_ahead || (self.status == S::Confirmed && idle),
            E::PaymentRefunded { amount } => {
                undoing
                    && *amount > 0
                    && self
                        .refunded
                        .checked_add(*amount)
                        .is_some_and(|sum| sum <= self.payment_captured)
            }
            E::Restocked => undoing && self.stock_committed,
            E::Cancelled => self.in_progress == Some(Transition::Cancel) && self.holds_nothing(),
            E::ShipRequested { .. } => self.status == S::Confirmed && idle,
            E::PaymentCaptured { amount } => {
                shipping && self.payment_held && (1..=self.totals.total.amount).contains(amount)
            }
            // Goods leave only once they are paid for.
            E::StockCommitted => shipping && self.stock_held && self.payment_captured > 0,
            E::Shipped => {
                shipping
                    && self.stock_committed
                    && !self.stock_held
                    && self.payment_captured > 0
                    && !self.payment_held
            }
            E::Delivered { .. } => self.status == S::Shipped && idle,
            E::RefundRequested { .. } => self.status == S::Delivered && idle,
            E::Refunded => self.in_progress == Some(Transition::Refund) && self.holds_nothing(),
            E::NeedsAttention { .. } => {
                matches!(self.status, S::Confirmed | S::Shipped | S::Delivered)
            }
        }
    }

    /// Neither stock nor money is held or owed back: no reservation active,
    /// no goods out of the warehouse, no authorization open, every captured
    /// minor unit refunded.
    fn holds_nothing(&self) -> bool {
        !self.stock_held
            && !self.stock_committed
            && !self.payment_held
            && self.refunded == self.payment_captured
    }

    /// Changes the state for an event [`Order::allows`] took.
    fn fold(&mut self, event: &OrderEvent) {
        use OrderEvent as E;
        match event {
            // Only `start` takes it; `allows` refuses it after.
            E::Placed { .. } => {}
            E::Priced { lines, totals } => {
                self.lines = lines.clone();
                self.totals = totals.clone();
                self.priced = true;
            }
            E::StockReserved { reservation_id } => {
                self.reservation_id = Some(*reservation_id);
                self.stock_held = true;
            }
            E::PaymentAuthorized {
                payment_id,
                brand,
                last4,
            } => {
                self.payment = Some(OrderPayment {
                    payment_id: *payment_id,
                    brand: brand.clone(),
                    last4: last4.clone(),
                });
                self.payment_held = true;
            }
            E::Confirmed => self.settle(OrderStatus::Confirmed),
            E::CheckoutFailed { reason } => self.rejection_reason = Some(*reason),
            E::StockReleased => self.stock_held = false,
            E::PaymentVoided => self.payment_held = false,
            E::Rejected { reason } => {
                self.rejection_reason = Some(*reason);
                self.settle(OrderStatus::Rejected);
            }
            E::CancelRequested { .. } => self.in_progress = Some(Transition::Cancel),
            // `allows` checked that the sum fits and stays within the capture.
            E::PaymentRefunded { amount } => self.refunded += *amount,
            E::Restocked => self.stock_committed = false,
            E::Cancelled => self.settle(OrderStatus::Cancelled),
            E::ShipRequested { .. } => self.in_progress = Some(Transition::Ship),
            E::PaymentCaptured { amount } => {
                self.payment_held = false;
                self.payment_captured = *amount;
            }
            E::StockCommitted => {
                self.stock_held = false;
                self.stock_committed = true;
            }
            E::Shipped => self.settle(OrderStatus::Shipped),
            E::Delivered { .. } => self.status = OrderStatus::Delivered,
            E::RefundRequested { .. } => self.in_progress = Some(Transition::Refund),
            E::Refunded => self.settle(OrderStatus::Refunded),
            // What is held stays as it was: the flags still say what the
            // order took, for the person who sorts it out.
            E::NeedsAttention { reason } => {
                self.attention = Some(reason.clone());
                self.settle(OrderStatus::NeedsAttention);
            }
        }
    }

    /// A transition ended in `status`.
    fn settle(&mut self, status: OrderStatus) {
        self.status = status;
        self.in_progress = None;
    }

    /// What the orchestrator does next, or `None` when nothing is under way
    /// (the order waits for a request, or is final).
    ///
    /// Forward steps go in the order the module doc gives. Undoing gives
    /// back the money first and the stock second, the reverse of how a
    /// checkout took them, except a refund: goods that come back are
    /// restocked before their money goes back, the reverse of shipping.
    pub fn next_step(&self) -> Option<SagaStep> {
        let step = match self.in_progress? {
            Transition::Checkout => match self.rejection_reason {
                Some(reason) => self.give_back().unwrap_or(SagaStep::Reject { reason }),
                None if !self.priced => SagaStep::Price,
                None if self.reservation_id.is_none() => SagaStep::ReserveStock,
                None if self.payment.is_none() => SagaStep::AuthorizePayment,
                None => SagaStep::Confirm,
            },
            Transition::Cancel => self.give_back().unwrap_or(SagaStep::MarkCancelled),
            Transition::Ship if self.payment_held => SagaStep::CapturePayment,
            Transition::Ship if self.stock_held => SagaStep::CommitStock,
            Transition::Ship => SagaStep::MarkShipped,
            Transition::Refund if self.stock_committed => SagaStep::Restock,
            Transition::Refund => self.refund_rest().unwrap_or(SagaStep::MarkRefunded),
        };
        Some(step)
    }

    /// The next thing to give back, money first.
    fn give_back(&self) -> Option<SagaStep> {
        if self.payment_held {
            Some(SagaStep::VoidPayment)
        } else if let Some(refund) = self.refund_rest() {
            Some(refund)
        } else if self.stock_held {
            Some(SagaStep::ReleaseStock)
        } else if self.stock_committed {
            Some(SagaStep::Restock)
        } else {
            None
        }
    }

    /// A refund of what is captured and not yet refunded, if anything is.
    fn refund_rest(&self) -> Option<SagaStep> {
        let amount = self.payment_captured - self.refunded;
        (amount > 0).then_some(SagaStep::RefundPayment { amount })
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn customer_id(&self) -> Uuid {
        self.customer_id
    }

    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// The lines as last priced (as placed, before the pricing step).
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    pub fn shipping_address(&self) -> &ShippingAddress {
        &self.shipping_address
    }

    /// The card token the checkout authorizes on.
    pub fn payment_token(&self) -> &str {
        &self.payment_token
    }

    /// Whether the pricing step has run.
    /// The fingerprint of the request that placed it (empty when it was
    /// placed other than through the API).
    pub fn request(&self) -> &str {
        &self.request
    }

    pub fn priced(&self) -> bool {
        self.priced
    }

    /// The reservation, once made (kept after it is released or committed).
    pub fn reservation_id(&self) -> Option<Uuid> {
        self.reservation_id
    }

    /// The payment, once authorized (kept after it is voided).
    pub fn payment(&self) -> Option<&OrderPayment> {
        self.payment.as_ref()
    }

    /// Why the checkout failed: set while it is being undone, and after.
    pub fn rejection_reason(&self) -> Option<RejectionReason> {
        self.rejection_reason
    }

    /// Whether a failed checkout is giving back what it holds.
    pub fn is_rejecting(&self) -> bool {
        self.status == OrderStatus::Pending
            && self.in_progress == Some(Transition::Checkout)
            && self.rejection_reason.is_some()
    }

    /// Why the order needs a person, once it does.
    pub fn attention(&self) -> Option<&str> {
        self.attention.as_deref()
    }

    /// The reservation is active: stock is set aside for the order.
    pub fn stock_held(&self) -> bool {
        self.stock_held
    }

    /// The goods left the warehouse and have not come back.
    pub fn stock_committed(&self) -> bool {
        self.stock_committed
    }

    /// An authorization holds money on the card.
    pub fn payment_held(&self) -> bool {
        self.payment_held
    }

    /// Minor units captured.
    pub fn payment_captured(&self) -> i64 {
        self.payment_captured
    }

    /// Minor units refunded of the capture.
    pub fn refunded(&self) -> i64 {
        self.refunded
    }

    pub fn in_progress(&self) -> Option<Transition> {
        self.in_progress
    }

    /// How many events are folded in: the version to append after.
    pub fn version(&self) -> i64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::OrderEvent as E;
    use super::SagaStep as Step;
    use super::*;

    const ORDER: Uuid = Uuid::from_u128(1);
    const CUSTOMER: Uuid = Uuid::from_u128(2);
    const PAYMENT: Uuid = Uuid::from_u128(3);
    const ADMIN: Uuid = Uuid::from_u128(4);
    const PRODUCT: Uuid = Uuid::from_u128(10);
    /// Two mugs at 12.50.
    const TOTAL: i64 = 2500;

    fn lines() -> Vec<Line> {
        vec![Line::new(PRODUCT, "MUG-1", "Mug", 1250, 2).unwrap()]
    }

    fn totals() -> Totals {
        Totals::of(&lines(), 0, "EUR").unwrap()
    }

    fn address() -> ShippingAddress {
        ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "Unter den Linden 1".into(),
            line2: None,
            city: "Berlin".into(),
            region: None,
            postal_code: "10117".into(),
            country: "DE".into(),
            phone: None,
        }
    }

    fn placed() -> OrderEvent {
        E::Placed {
            customer_id: CUSTOMER,
            lines: lines(),
            totals: totals(),
            shipping_address: address(),
            payment_token: "tok_visa".into(),
            request: String::new(),
        }
    }

    fn priced() -> OrderEvent {
        E::Priced {
            lines: lines(),
            totals: totals(),
        }
    }

    fn reserved() -> OrderEvent {
        E::StockReserved {
            reservation_id: ORDER,
        }
    }

    fn authorized() -> OrderEvent {
        E::PaymentAuthorized {
            payment_id: PAYMENT,
            brand: "visa".into(),
            last4: "4242".into(),
        }
    }

    fn customer() -> Actor {
        Actor::customer(CUSTOMER)
    }

    fn admin() -> Actor {
        Actor::admin(ADMIN)
    }

    fn failed(reason: RejectionReason) -> OrderEvent {
        E::CheckoutFailed { reason }
    }

    fn rejected(reason: RejectionReason) -> OrderEvent {
        E::Rejected { reason }
    }

    fn checkout() -> Vec<OrderEvent> {
        vec![placed(), priced(), reserved(), authorized(), E::Confirmed]
    }

    fn then(
        mut history: Vec<OrderEvent>,
        more: impl IntoIterator<Item = OrderEvent>,
    ) -> Vec<OrderEvent> {
        history.extend(more);
        history
    }

    fn shipped() -> Vec<OrderEvent> {
        then(
            checkout(),
            [
                E::ShipRequested { by: admin() },
                E::PaymentCaptured { amount: TOTAL },
                E::StockCommitted,
                E::Shipped,
            ],
        )
    }

    fn delivered() -> Vec<OrderEvent> {
        then(shipped(), [E::Delivered { by: admin() }])
    }

    fn refunded() -> Vec<OrderEvent> {
        then(
            delivered(),
            [
                E::RefundRequested { by: admin() },
                E::Restocked,
                E::PaymentRefunded { amount: TOTAL },
                E::Refunded,
            ],
        )
    }

    fn declined() -> Vec<OrderEvent> {
        use RejectionReason::PaymentDeclined;
        vec![
            placed(),
            priced(),
            reserved(),
            failed(PaymentDeclined),
            E::StockReleased,
            rejected(PaymentDeclined),
        ]
    }

    fn cancelled_after_confirmation() -> Vec<OrderEvent> {
        then(
            checkout(),
            [
                E::CancelRequested { by: customer() },
                E::PaymentVoided,
                E::StockReleased,
                E::Cancelled,
            ],
        )
    }

    fn run(events: &[OrderEvent]) -> Order {
        Order::replay(ORDER, events).unwrap()
    }

    /// `next_step` after each event of `events`, the first included.
    fn steps(events: &[OrderEvent]) -> Vec<Option<SagaStep>> {
        let mut order = Order::start(ORDER, &events[0]).unwrap();
        let mut steps = vec![order.next_step()];
        for event in &events[1..] {
            order.apply(event).unwrap();
            steps.push(order.next_step());
        }
        steps
    }

    /// The type of the event that records `step` done.
    fn records(step: SagaStep) -> &'static str {
        match step {
            Step::Price => "priced",
            Step::ReserveStock => "stock_reserved",
            Step::AuthorizePayment => "payment_authorized",
            Step::Confirm => "confirmed",
            Step::VoidPayment => "payment_voided",
            Step::RefundPayment { .. } => "payment_refunded",
            Step::ReleaseStock => "stock_released",
            Step::Restock => "restocked",
            Step::Reject { .. } => "rejected",
            Step::MarkCancelled => "cancelled",
            Step::CapturePayment => "payment_captured",
            Step::CommitStock => "stock_committed",
            Step::MarkShipped => "shipped",
            Step::MarkRefunded => "refunded",
        }
    }

    /// One event of every kind, with the amounts the histories above use.
    fn one_of_each() -> Vec<OrderEvent> {
        vec![
            placed(),
            priced(),
            reserved(),
            authorized(),
            E::Confirmed,
            failed(RejectionReason::PaymentDeclined),
            E::StockReleased,
            E::PaymentVoided,
            rejected(RejectionReason::OutOfStock),
            E::CancelRequested { by: customer() },
            E::PaymentRefunded { amount: TOTAL },
            E::Restocked,
            E::Cancelled,
            E::ShipRequested { by: admin() },
            E::PaymentCaptured { amount: TOTAL },
            E::StockCommitted,
            E::Shipped,
            E::Delivered { by: admin() },
            E::RefundRequested { by: admin() },
            E::Refunded,
            E::NeedsAttention {
                reason: "capture failed after shipping".into(),
            },
        ]
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(OrderStatus::NeedsAttention.as_str(), "needs_attention");
        assert_eq!(OrderStatus::parse("Pending"), None);
        for r in RejectionReason::ALL {
            assert_eq!(RejectionReason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        assert_eq!(RejectionReason::OutOfStock.as_str(), "out_of_stock");
        assert_eq!(RejectionReason::parse("OutOfStock"), None);
    }

    #[test]
    fn payment_failures_map_to_rejection_reasons() {
        use FailureReason::*;
        assert_eq!(
            RejectionReason::of_payment_failure(CardDeclined),
            Some(RejectionReason::PaymentDeclined)
        );
        assert_eq!(
            RejectionReason::of_payment_failure(InsufficientFunds),
            Some(RejectionReason::InsufficientFunds)
        );
        assert_eq!(
            RejectionReason::of_payment_failure(ProviderError),
            Some(RejectionReason::PaymentUnavailable)
        );
        assert_eq!(RejectionReason::of_payment_failure(CaptureFailed), None);
    }

    #[test]
    fn the_happy_checkout() {
        let events = checkout();
        assert_eq!(
            steps(&events),
            [
                Some(Step::Price),
                Some(Step::ReserveStock),
                Some(Step::AuthorizePayment),
                Some(Step::Confirm),
                None,
            ]
        );
        let order = run(&events);
        assert_eq!(order.id(), ORDER);
        assert_eq!(order.customer_id(), CUSTOMER);
        assert_eq!(order.status(), OrderStatus::Confirmed);
        assert_eq!(order.version(), 5);
        assert!(order.priced() && order.stock_held() && order.payment_held());
        assert_eq!(order.reservation_id(), Some(ORDER));
        assert_eq!(
            order.payment(),
            Some(&OrderPayment {
                payment_id: PAYMENT,
                brand: "visa".into(),
                last4: "4242".into(),
            })
        );
        assert_eq!(order.totals().total.amount, TOTAL);
        assert_eq!(order.lines(), lines().as_slice());
        assert_eq!(order.shipping_address(), &address());
        assert_eq!(order.payment_token(), "tok_visa");
        assert_eq!(order.rejection_reason(), None);
        assert_eq!(order.in_progress(), None);
    }

    #[test]
    fn placing_starts_a_pending_checkout() {
        let order = Order::start(ORDER, &placed()).unwrap();
        assert_eq!(order.status(), OrderStatus::Pending);
        assert_eq!(order.in_progress(), Some(Transition::Checkout));
        assert_eq!(order.version(), 1);
        assert!(!order.priced() && !order.stock_held() && !order.payment_held());
    }

    #[test]
    fn the_priced_lines_and_totals_replace_the_placed_ones() {
        let dearer = vec![Line::new(PRODUCT, "MUG-1", "Mug", 1300, 2).unwrap()];
        let dearer_totals = Totals::of(&dearer, 0, "EUR").unwrap();
        let order = run(&[
            placed(),
            E::Priced {
                lines: dearer.clone(),
                totals: dearer_totals.clone(),
            },
        ]);
        assert_eq!(order.lines(), dearer.as_slice());
        assert_eq!(order.totals(), &dearer_totals);
    }

    #[test]
    fn a_failure_with_nothing_held_rejects_at_once() {
        use RejectionReason::*;
        let out_of_stock = [placed(), priced(), rejected(OutOfStock)];
        assert_eq!(
            steps(&out_of_stock),
            [Some(Step::Price), Some(Step::ReserveStock), None]
        );
        let order = run(&out_of_stock);
        assert_eq!(order.status(), OrderStatus::Rejected);
        assert_eq!(order.rejection_reason(), Some(OutOfStock));
        for reason in [ProductUnavailable, CatalogUnavailable, Expired] {
            let order = run(&[placed(), rejected(reason)]);
            assert_eq!(order.status(), OrderStatus::Rejected);
            assert_eq!(order.rejection_reason(), Some(reason));
        }
        // Recording the failure first is as good.
        let recorded = [placed(), priced(), failed(OutOfStock)];
        assert_eq!(
            run(&recorded).next_step(),
            Some(Step::Reject { reason: OutOfStock })
        );
        assert!(run(&recorded).is_rejecting());
    }

    #[test]
    fn a_declined_payment_releases_the_stock_then_rejects() {
        use RejectionReason::PaymentDeclined;
        let events = declined();
        assert_eq!(
            steps(&events),
            [
                Some(Step::Price),
                Some(Step::ReserveStock),
                Some(Step::AuthorizePayment),
                Some(Step::ReleaseStock),
                Some(Step::Reject {
                    reason: PaymentDeclined
                }),
                None,
            ]
        );
        let order = run(&events);
        assert_eq!(order.status(), OrderStatus::Rejected);
        assert_eq!(order.rejection_reason(), Some(PaymentDeclined));
        assert!(!order.stock_held());
        assert_eq!(order.reservation_id(), Some(ORDER), "kept as history");
        assert!(!order.is_rejecting());
    }

    #[test]
    fn a_failure_with_both_held_gives_them_back_in_reverse() {
        use RejectionReason::Expired;
        let events = [
            placed(),
            priced(),
            reserved(),
            authorized(),
            failed(Expired),
            E::PaymentVoided,
            E::StockReleased,
            rejected(Expired),
        ];
        assert_eq!(
            steps(&events)[4..],
            [
                Some(Step::VoidPayment),
                Some(Step::ReleaseStock),
                Some(Step::Reject { reason: Expired }),
                None,
            ]
        );
        let order = run(&events);
        assert_eq!(order.status(), OrderStatus::Rejected);
        assert!(!order.payment_held() && !order.stock_held());
        assert!(order.payment().is_some(), "kept as history");
    }

    #[test]
    fn a_rejection_waits_for_every_compensation_and_keeps_its_reason() {
        use RejectionReason::*;
        let holding = run(&[
            placed(),
            priced(),
            reserved(),
            authorized(),
            failed(PaymentUnavailable),
        ]);
        let refused = |order: &Order, event: OrderEvent| {
            let mut after = order.clone();
            assert_eq!(
                after.apply(&event),
                Err(IllegalEvent {
                    status: Some(OrderStatus::Pending),
                    event: "rejected"
                })
            );
        };
        refused(&holding, rejected(PaymentUnavailable));
        let mut order = holding.clone();
        order.apply(&E::PaymentVoided).unwrap();
        refused(&order, rejected(PaymentUnavailable));
        order.apply(&E::StockReleased).unwrap();
        refused(&order, rejected(OutOfStock));
        order.apply(&rejected(PaymentUnavailable)).unwrap();
        assert_eq!(order.status(), OrderStatus::Rejected);
        // Compensations are taken in either order; next_step picks one.
        let mut other_way = holding;
        other_way.apply(&E::StockReleased).unwrap();
        assert_eq!(other_way.next_step(), Some(Step::VoidPayment));
        other_way.apply(&E::PaymentVoided).unwrap();
        assert_eq!(
            other_way.next_step(),
            Some(Step::Reject {
                reason: PaymentUnavailable
            })
        );
    }

    #[test]
    fn cancel_while_pending_gives_back_what_the_checkout_took() {
        let nothing_yet = [
            placed(),
            E::CancelRequested { by: customer() },
            E::Cancelled,
        ];
        assert_eq!(
            steps(&nothing_yet),
            [Some(Step::Price), Some(Step::MarkCancelled), None]
        );
        assert_eq!(run(&nothing_yet).status(), OrderStatus::Cancelled);

        let reserved_only = [
            placed(),
            priced(),
            reserved(),
            E::CancelRequested { by: customer() },
            E::StockReleased,
            E::Cancelled,
        ];
        assert_eq!(
            steps(&reserved_only)[3..],
            [Some(Step::ReleaseStock), Some(Step::MarkCancelled), None]
        );
        let order = run(&reserved_only);
        assert_eq!(order.status(), OrderStatus::Cancelled);
        assert_eq!(order.rejection_reason(), None);
    }

    #[test]
    fn a_hold_that_answers_after_the_cancel_is_recorded_and_given_back() {
        let events = [
            placed(),
            priced(),
            reserved(),
            E::CancelRequested { by: customer() },
            authorized(),
            E::PaymentVoided,
            E::StockReleased,
            E::Cancelled,
        ];
        assert_eq!(
            steps(&events)[3..],
            [
                Some(Step::ReleaseStock),
                Some(Step::VoidPayment),
                Some(Step::ReleaseStock),
                Some(Step::MarkCancelled),
                None,
            ]
        );
        let late_reservation = [
            placed(),
            priced(),
            E::CancelRequested { by: customer() },
            reserved(),
        ];
        assert_eq!(run(&late_reservation).next_step(), Some(Step::ReleaseStock));
        // But no step goes forward once the cancel is asked for.
        let mut order = run(&late_reservation[..3]);
        assert!(!order.allows(&priced()));
        assert!(!order.allows(&failed(RejectionReason::Expired)));
        order.apply(&reserved()).unwrap();
        order.apply(&authorized()).unwrap();
        assert!(!order.allows(&E::Confirmed));
    }

    #[test]
    fn cancel_after_confirmation_voids_then_releases() {
        let events = cancelled_after_confirmation();
        assert_eq!(
            steps(&events)[4..],
            [
                None,
                Some(Step::VoidPayment),
                Some(Step::ReleaseStock),
                Some(Step::MarkCancelled),
                None,
            ]
        );
        let order = run(&events);
        assert_eq!(order.status(), OrderStatus::Cancelled);
        assert!(!order.payment_held() && !order.stock_held());
        assert_eq!(order.payment_captured(), 0);
        // Not before both are given back.
        let half = run(&events[..7]);
        assert!(!half.allows(&E::Cancelled));
    }

    #[test]
    fn ship_deliver_and_refund() {
        let events = refunded();
        assert_eq!(
            steps(&events)[4..],
            [
                None,
                Some(Step::CapturePayment),
                Some(Step::CommitStock),
                Some(Step::MarkShipped),
                None,
                None,
                Some(Step::Restock),
                Some(Step::RefundPayment { amount: TOTAL }),
                Some(Step::MarkRefunded),
                None,
            ]
        );
        let on_its_way = run(&shipped());
        assert_eq!(on_its_way.status(), OrderStatus::Shipped);
        assert_eq!(on_its_way.payment_captured(), TOTAL);
        assert!(
            on_its_way.stock_committed() && !on_its_way.stock_held() && !on_its_way.payment_held()
        );
        assert_eq!(run(&delivered()).status(), OrderStatus::Delivered);
        let back = run(&events);
        assert_eq!(back.status(), OrderStatus::Refunded);
        assert_eq!(back.refunded(), TOTAL);
        assert!(!back.stock_committed());
        assert_eq!(back.version(), 14);
    }

    #[test]
    fn shipping_takes_the_money_before_the_goods_leave() {
        let asked = run(&then(checkout(), [E::ShipRequested { by: admin() }]));
        assert!(!asked.allows(&E::StockCommitted));
        assert!(!asked.allows(&E::Shipped));
        assert!(!asked.allows(&E::PaymentCaptured { amount: 0 }));
        assert!(!asked.allows(&E::PaymentCaptured { amount: -1 }));
        assert!(!asked.allows(&E::PaymentCaptured { amount: TOTAL + 1 }));
        assert!(asked.allows(&E::PaymentCaptured { amount: TOTAL }));
        assert!(
            asked.allows(&E::PaymentCaptured { amount: 1 }),
            "partial capture"
        );
        assert!(
            !asked.allows(&E::CancelRequested { by: admin() }),
            "one transition at a time"
        );
        let captured = run(&then(
            checkout(),
            [
                E::ShipRequested { by: admin() },
                E::PaymentCaptured { amount: TOTAL },
            ],
        ));
        assert!(!captured.allows(&E::Shipped));
        assert!(captured.allows(&E::StockCommitted));
    }

    #[test]
    fn refunds_stay_within_the_capture() {
        let asked = run(&then(delivered(), [E::RefundRequested { by: admin() }]));
        for amount in [0, -1, TOTAL + 1, i64::MAX, i64::MIN] {
            assert!(!asked.allows(&E::PaymentRefunded { amount }), "{amount}");
        }
        assert!(!asked.allows(&E::Refunded), "nothing given back yet");
        let mut partly = asked.clone();
        partly.apply(&E::PaymentRefunded { amount: 1000 }).unwrap();
        assert_eq!(partly.next_step(), Some(Step::Restock));
        partly.apply(&E::Restocked).unwrap();
        assert_eq!(
            partly.next_step(),
            Some(Step::RefundPayment {
                amount: TOTAL - 1000
            })
        );
        assert!(!partly.allows(&E::PaymentRefunded { amount: TOTAL }));
        assert!(
            !partly.allows(&E::PaymentRefunded { amount: i64::MAX }),
            "no overflow"
        );
        assert!(!partly.allows(&E::Refunded));
        partly
            .apply(&E::PaymentRefunded {
                amount: TOTAL - 1000,
            })
            .unwrap();
        assert_eq!(partly.next_step(), Some(Step::MarkRefunded));
        partly.apply(&E::Refunded).unwrap();
        assert_eq!(partly.status(), OrderStatus::Refunded);
    }

    #[test]
    fn a_late_capture_failure_needs_attention() {
        let reason = || E::NeedsAttention {
            reason: "capture_failed".into(),
        };
        for history in [checkout(), shipped(), delivered()] {
            let order = run(&then(history, [reason()]));
            assert_eq!(order.status(), OrderStatus::NeedsAttention);
            assert_eq!(order.attention(), Some("capture_failed"));
            assert_eq!(order.next_step(), None);
        }
        // Mid-shipping too: the ship stops where it was.
        let mid = run(&then(
            checkout(),
            [
                E::ShipRequested { by: admin() },
                E::PaymentCaptured { amount: TOTAL },
                reason(),
            ],
        ));
        assert_eq!(mid.status(), OrderStatus::NeedsAttention);
        assert_eq!(mid.in_progress(), None);
        assert!(mid.stock_held(), "still held, for a person to see");
    }

    /// A state reached by `history`, its status, and the event types of
    /// [`one_of_each`] it takes.
    type Row = (
        &'static str,
        Vec<OrderEvent>,
        OrderStatus,
        &'static [&'static str],
    );

    fn row(
        name: &'static str,
        history: Vec<OrderEvent>,
        status: OrderStatus,
        allowed: &'static [&'static str],
    ) -> Row {
        (name, history, status, allowed)
    }

    /// Every status, reached by short histories, refuses every event but the
    /// ones its row allows, and a refused event changes nothing.
    #[test]
    fn every_status_refuses_every_event_it_does_not_allow() {
        use RejectionReason::PaymentDeclined;
        let cancel = || E::CancelRequested { by: customer() };
        let ship = || E::ShipRequested { by: admin() };
        let table = [
            row(
                "placed",
                vec![placed()],
                OrderStatus::Pending,
                &["priced", "checkout_failed", "rejected", "cancel_requested"],
            ),
            row(
                "priced",
                vec![placed(), priced()],
                OrderStatus::Pending,
                &[
                    "stock_reserved",
                    "checkout_failed",
                    "rejected",
                    "cancel_requested",
                ],
            ),
            row(
                "reserved",
                vec![placed(), priced(), reserved()],
                OrderStatus::Pending,
                &["payment_authorized", "checkout_failed", "cancel_requested"],
            ),
            row(
                "authorized",
                vec![placed(), priced(), reserved(), authorized()],
                OrderStatus::Pending,
                &["confirmed", "checkout_failed", "cancel_requested"],
            ),
            row(
                "rejecting, stock held",
                vec![placed(), priced(), reserved(), failed(PaymentDeclined)],
                OrderStatus::Pending,
                &["stock_released", "payment_authorized"],
            ),
            row(
                "rejecting, both held",
                vec![
                    placed(),
                    priced(),
                    reserved(),
                    authorized(),
                    failed(PaymentDeclined),
                ],
                OrderStatus::Pending,
                &["stock_released", "payment_voided"],
            ),
            row(
                "rejecting, nothing held",
                vec![placed(), priced(), failed(PaymentDeclined)],
                OrderStatus::Pending,
                &["stock_reserved"],
            ),
            row(
                "cancelling a pending order",
                vec![placed(), priced(), reserved(), cancel()],
                OrderStatus::Pending,
                &["stock_released", "payment_authorized"],
            ),
            row(
                "confirmed",
                checkout(),
                OrderStatus::Confirmed,
                &["cancel_requested", "ship_requested", "needs_attention"],
            ),
            row(
                "cancelling a confirmed order",
                then(checkout(), [cancel()]),
                OrderStatus::Confirmed,
                &["payment_voided", "stock_released", "needs_attention"],
            ),
            row(
                "shipping",
                then(checkout(), [ship()]),
                OrderStatus::Confirmed,
                &["payment_captured", "needs_attention"],
            ),
            row(
                "shipping, paid",
                then(checkout(), [ship(), E::PaymentCaptured { amount: TOTAL }]),
                OrderStatus::Confirmed,
                &["stock_committed", "needs_attention"],
            ),
            row("rejected", declined(), OrderStatus::Rejected, &[]),
            row(
                "cancelled",
                cancelled_after_confirmation(),
                OrderStatus::Cancelled,
                &[],
            ),
            row(
                "shipped",
                shipped(),
                OrderStatus::Shipped,
                &["delivered", "needs_attention"],
            ),
            row(
                "delivered",
                delivered(),
                OrderStatus::Delivered,
                &["refund_requested", "needs_attention"],
            ),
            row(
                "refunding",
                then(delivered(), [E::RefundRequested { by: admin() }]),
                OrderStatus::Delivered,
                &["payment_refunded", "restocked", "needs_attention"],
            ),
            row("refunded", refunded(), OrderStatus::Refunded, &[]),
            row(
                "needs attention",
                then(
                    shipped(),
                    [E::NeedsAttention {
                        reason: "capture_failed".into(),
                    }],
                ),
                OrderStatus::NeedsAttention,
                &[],
            ),
        ];
        for status in OrderStatus::ALL {
            assert!(
                table.iter().any(|(_, _, s, _)| *s == status),
                "{status} is not in the table"
            );
        }
        for (name, history, status, allowed) in &table {
            let order = run(history);
            assert_eq!(order.status(), *status, "{name}");
            for event in one_of_each() {
                let mut after = order.clone();
                let result = after.apply(&event);
                let kind = event.type_name();
                if allowed.contains(&kind) {
                    assert_eq!(result, Ok(()), "{name} refused {kind}");
                    assert_eq!(after.version(), order.version() + 1);
                } else {
                    assert_eq!(
                        result,
                        Err(IllegalEvent {
                            status: Some(*status),
                            event: kind
                        }),
                        "{name} took {kind}"
                    );
                    assert_eq!(after, order, "{name}: a refused {kind} changed the order");
                }
                assert_eq!(order.allows(&event), result.is_ok(), "{name} {kind}");
            }
        }
    }

    #[test]
    fn a_stream_starts_with_placed_and_only_once() {
        for event in one_of_each().into_iter().skip(1) {
            assert_eq!(
                Order::start(ORDER, &event),
                Err(IllegalEvent {
                    status: None,
                    event: event.type_name()
                })
            );
        }
        assert_eq!(
            Order::replay(ORDER, &[]),
            Err(IllegalEvent {
                status: None,
                event: NO_EVENTS
            })
        );
        assert_eq!(
            Order::replay(ORDER, &[placed(), placed()]),
            Err(IllegalEvent {
                status: Some(OrderStatus::Pending),
                event: "placed"
            })
        );
        let error = Order::replay(ORDER, &[placed(), E::Confirmed]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "an order that is pending cannot take `confirmed`"
        );
        let error = Order::start(ORDER, &E::Shipped).unwrap_err();
        assert_eq!(
            error.to_string(),
            "an order must start with `placed`, not `shipped`"
        );
    }

    fn histories() -> Vec<Vec<OrderEvent>> {
        use RejectionReason::*;
        vec![
            checkout(),
            shipped(),
            delivered(),
            refunded(),
            declined(),
            cancelled_after_confirmation(),
            vec![placed(), priced(), rejected(OutOfStock)],
            vec![
                placed(),
                priced(),
                reserved(),
                authorized(),
                failed(Expired),
                E::PaymentVoided,
                E::StockReleased,
                rejected(Expired),
            ],
            vec![
                placed(),
                priced(),
                reserved(),
                E::CancelRequested { by: customer() },
                E::StockReleased,
                E::Cancelled,
            ],
        ]
    }

    #[test]
    fn replay_is_step_by_step_application() {
        for events in histories() {
            let mut order = Order::start(ORDER, &events[0]).unwrap();
            assert_eq!(Order::replay(ORDER, &events[..1]), Ok(order.clone()));
            for (i, event) in events.iter().enumerate().skip(1) {
                order.apply(event).unwrap();
                // Replaying the stream up to here gives the same order.
                assert_eq!(Order::replay(ORDER, &events[..=i]), Ok(order.clone()));
                assert_eq!(order.version(), i64::try_from(i + 1).unwrap());
            }
        }
    }

    #[test]
    fn each_saga_step_is_what_the_next_event_records() {
        // Requests and failures come from outside the saga; every other
        // event is the step the fold asked for just before it.
        let outside = [
            "cancel_requested",
            "ship_requested",
            "delivered",
            "refund_requested",
            "checkout_failed",
            "needs_attention",
        ];
        for events in histories() {
            let mut order = Order::start(ORDER, &events[0]).unwrap();
            for event in &events[1..] {
                let kind = event.type_name();
                match order.next_step() {
                    Some(step) if !outside.contains(&kind) && kind != "rejected" => {
                        assert_eq!(records(step), kind, "{events:?}")
                    }
                    // A failure at reservation rejects without a step of its own.
                    Some(Step::ReserveStock) if kind == "rejected" => {}
                    Some(step) if kind == "rejected" => assert_eq!(records(step), kind),
                    Some(_) => {}
                    None => assert!(outside.contains(&kind), "{kind} came while idle"),
                }
                order.apply(event).unwrap();
            }
            assert_eq!(order.next_step(), None, "every history here ends at rest");
        }
    }

    #[test]
    fn every_pending_order_has_a_next_step() {
        for events in histories() {
            for end in 1..=events.len() {
                let order = run(&events[..end]);
                assert_eq!(
                    order.next_step().is_some(),
                    order.in_progress().is_some(),
                    "{:?}",
                    &events[..end]
                );
                if order.status() == OrderStatus::Pending {
                    assert!(order.next_step().is_some());
                }
            }
        }
    }

    #[test]
    fn every_event_round_trips_through_json_as_type_and_data() {
        let events = one_of_each();
        let mut names: Vec<&str> = events.iter().map(OrderEvent::type_name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 21, "one of each kind");
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.type_name(), "{json}");
            let object = json.as_object().unwrap();
            match object.get("data") {
                Some(data) => {
                    assert!(data.is_object(), "{json}");
                    assert_eq!(object.len(), 2, "{json}");
                }
                None => assert_eq!(object.len(), 1, "{json}"),
            }
            let back: OrderEvent = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, event, "{json}");
        }
    }

    #[test]
    fn events_have_the_documented_json_shape() {
        use serde_json::json;
        let shape = |event: &OrderEvent| serde_json::to_value(event).unwrap();
        assert_eq!(shape(&E::Confirmed), json!({"type": "confirmed"}));
        assert_eq!(
            shape(&reserved()),
            json!({"type": "stock_reserved", "data": {"reservation_id": ORDER.to_string()}})
        );
        assert_eq!(
            shape(&E::PaymentRefunded { amount: TOTAL }),
            json!({"type": "payment_refunded", "data": {"amount": TOTAL}})
        );
        assert_eq!(
            shape(&rejected(RejectionReason::OutOfStock)),
            json!({"type": "rejected", "data": {"reason": "out_of_stock"}})
        );
        assert_eq!(
            shape(&E::CancelRequested { by: customer() }),
            json!({
                "type": "cancel_requested",
                "data": {"by": {"kind": "customer", "id": CUSTOMER.to_string()}}
            })
        );
        assert_eq!(
            shape(&E::Delivered {
                by: Actor::system()
            }),
            json!({"type": "delivered", "data": {"by": {"kind": "system"}}})
        );
        let first = shape(&placed());
        assert_eq!(first["type"], "placed");
        assert_eq!(
            first["data"]["totals"]["total"],
            json!({"amount": TOTAL, "currency": "EUR"})
        );
        assert_eq!(first["data"]["shipping_address"]["country"], "DE");
        assert_eq!(first["data"]["lines"][0]["quantity"], 2);
        assert_eq!(first["data"]["payment_token"], "tok_visa");
        assert_eq!(first["data"]["customer_id"], CUSTOMER.to_string());
        // What a stored stream holds decodes back.
        let stored = json!({"type": "payment_authorized", "data": {
            "payment_id": PAYMENT.to_string(), "brand": "visa", "last4": "4242"
        }});
        assert_eq!(
            serde_json::from_value::<OrderEvent>(stored).unwrap(),
            authorized()
        );
        assert!(serde_json::from_value::<OrderEvent>(json!({"type": "teleported"})).is_err());
    }
}
