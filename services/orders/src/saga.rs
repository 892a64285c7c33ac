//! The orchestrator: drives an order's saga (checkout, cancel, ship, refund)
//! one step at a time, each step a call to catalog or payments followed by
//! the event that records it, appended with optimistic concurrency.
//!
//! - A step is asked of [`Order::next_step`]; the saga's state is the
//!   order's stream, so a crash anywhere is resumed from the last event by
//!   whichever replica claims the saga next ([`EventStore::claim`]).
//! - Every call is idempotent (keyed by the order and the step): a step
//!   repeated after a crash or a lost answer moves stock or money once.
//! - Transient failures are tried again with backoff; definite ones fail the
//!   checkout, and the compensations run (money first, then stock). A
//!   checkout still not through after `checkout.pending_timeout_ms` is failed
//!   too, so no order stays pending.
//! - Before giving anything back, a failing checkout asks catalog and
//!   payments what they hold that it never heard of (an answer lost on the
//!   way), and records it, so that it is given back as well.

use std::sync::Arc;
#[cfg(feature = "fault-points")]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use emporium_client::catalog::{ReservationError, Reservations};
use emporium_client::payments::{PaymentError, Payments};
use emporium_contracts::orders as events;
use emporium_contracts::payments::{AuthorizePayment, PaymentStatus};
use emporium_contracts::reservations::{ReservationStatus, ReserveItem};
use emporium_db::{SharedClock, StoreError};
use emporium_http::RequestContext;
use emporium_messaging::Envelope;
use emporium_messaging::outbox::RelayWaker;
use emporium_telemetry::{Span, SpanKind};
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::CheckoutConfig;
use crate::domain::{Order, OrderEvent, OrderStatus, RejectionReason, SagaStep, Transition};
use crate::store::{AppendError, EventStore};
use crate::view;

/// An order as its stream makes it, with the times of its first and last events.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub order: Order,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl Loaded {
    /// The read model document of the order as it stands.
    pub fn document(&self) -> serde_json::Value {
        view::projection(&self.order, (self.created_at, self.updated_at)).document
    }
}

/// Why the saga could not go on at all (not a step that failed: those are
/// retried or compensated).
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored stream does not replay, or an event the fold refuses was
    /// about to be appended: a bug, never a client's fault.
    #[error("order {0}: {1}")]
    Corrupt(Uuid, String),
    /// A fault point stopped this service (tests only).
    #[error("stopped at a fault point")]
    Stopped,
}

/// Where a saga stands after [`Saga::drive`].
#[derive(Debug)]
pub enum Driven {
    /// Nothing is under way any more: the order is final or waits for a request.
    Finished(Loaded),
    /// Still under way: another replica drives it, or a step waits to be
    /// tried again.
    Pending(Loaded),
}

impl Driven {
    pub fn loaded(&self) -> &Loaded {
        match self {
            Self::Finished(l) | Self::Pending(l) => l,
        }
    }

    pub fn into_loaded(self) -> Loaded {
        match self {
            Self::Finished(l) | Self::Pending(l) => l,
        }
    }
}

/// What a step came to.
enum Outcome {
    /// Append these.
    Record(Vec<OrderEvent>),
    /// Try again later; a checkout that is out of time is rejected for the
    /// reason given.
    Later(RejectionReason),
    /// As `Later`, and the call surely never reached the other service.
    NotSent(RejectionReason),
}

/// `Later`, or `NotSent` when no attempt of the call connected.
fn retry(reason: RejectionReason, never_sent: bool) -> Outcome {
    if never_sent {
        Outcome::NotSent(reason)
    } else {
        Outcome::Later(reason)
    }
}

/// What this drive knows of the checkout's reserve and authorize calls:
/// tried here, and whether any attempt may have reached the other side.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    tried: bool,
    maybe: bool,
}

impl Sent {
    fn note(&mut self, outcome: &Outcome) {
        self.tried = true;
        self.maybe |= !matches!(outcome, Outcome::NotSent(_));
    }

    /// Tried in this drive, and never delivered: nothing can be held.
    fn surely_not(self) -> bool {
        self.tried && !self.maybe
    }
}

fn fail(reason: RejectionReason) -> Outcome {
    Outcome::Record(vec![OrderEvent::CheckoutFailed { reason }])
}

/// Stops the service at a given saga step, as a crash would: right after
/// the step's event is persisted, or after its call was answered and before
/// the event is. Only in builds with the `fault-points` feature (tests).
#[derive(Debug, Default)]
pub struct Faults {
    #[cfg(feature = "fault-points")]
    after: AtomicU32,
    #[cfg(feature = "fault-points")]
    before_saving: AtomicBool,
    #[cfg(feature = "fault-points")]
    persisted: AtomicU32,
    stopped: AtomicBool,
}

impl Faults {
    /// Counts a persisted step; `true` when the service must stop now.
    fn persisted(&self) -> bool {
        #[cfg(feature = "fault-points")]
        {
            let after = self.after.load(Ordering::SeqCst);
            let n = self.persisted.fetch_add(1, Ordering::SeqCst) + 1;
            if after > 0 && n >= after && !self.before_saving.load(Ordering::SeqCst) {
                self.stopped.store(true, Ordering::SeqCst);
            }
        }
        self.stopped()
    }

    /// A step's call was answered and its event is about to be saved;
    /// `true` when the service must stop before saving it.
    fn answered(&self) -> bool {
        #[cfg(feature = "fault-points")]
        {
            let after = self.after.load(Ordering::SeqCst);
            let n = self.persisted.load(Ordering::SeqCst) + 1;
            if after > 0 && n >= after && self.before_saving.load(Ordering::SeqCst) {
                self.stopped.store(true, Ordering::SeqCst);
            }
        }
        self.stopped()
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// The orchestrator of every order's saga.
#[derive(Clone)]
pub struct Saga {
    pub store: EventStore,
    pub reservations: Reservations,
    pub payments: Payments,
    pub clock: SharedClock,
    pub relay: RelayWaker,
    pub settings: CheckoutConfig,
    pub faults: Arc<Faults>,
}

impl Saga {
    /// Makes this service stop driving sagas, as if it crashed, right after
    /// the `n`-th saga step from now is persisted.
    #[cfg(feature = "fault-points")]
    pub fn stop_after_steps(&self, n: u32) {
        self.faults.persisted.store(0, Ordering::SeqCst);
        self.faults.before_saving.store(false, Ordering::SeqCst);
        self.faults.after.store(n, Ordering::SeqCst);
    }

    /// Makes this service stop, as if it crashed, once the call of the
    /// `n`-th saga step from now has been answered and before its event is
    /// saved (the other service did the work; orders does not know).
    #[cfg(feature = "fault-points")]
    pub fn stop_before_saving_step(&self, n: u32) {
        self.faults.persisted.store(0, Ordering::SeqCst);
        self.faults.before_saving.store(true, Ordering::SeqCst);
        self.faults.after.store(n, Ordering::SeqCst);
    }

    /// How many saga steps this service persisted since the last fault
    /// point was set.
    #[cfg(feature = "fault-points")]
    pub fn steps_persisted(&self) -> u32 {
        self.faults.persisted.load(Ordering::SeqCst)
    }

    /// The order as its stream makes it, if there is one.
    pub async fn load(&self, id: Uuid) -> Result<Option<Loaded>, SagaError> {
        let stream = self.store.stream(id).await?;
        let (Some(first), Some(last)) = (stream.first(), stream.last()) else {
            return Ok(None);
        };
        let events = stream
            .iter()
            .map(|r| r.decode::<OrderEvent>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SagaError::Corrupt(id, e.to_string()))?;
        let order =
            Order::replay(id, &events).map_err(|e| SagaError::Corrupt(id, e.to_string()))?;
        Ok(Some(Loaded {
            order,
            created_at: first.at,
            updated_at: last.at,
        }))
    }

    /// Starts an order's stream with `placed` and `priced`: the placing
    /// request holds the saga from here. `None` when an order with this id
    /// exists already (a concurrent request with the same key made it).
    pub async fn create(
        &self,
        id: Uuid,
        placed: OrderEvent,
        priced: OrderEvent,
        ctx: &RequestContext,
    ) -> Result<Option<Loaded>, SagaError> {
        let corrupt = |e: crate::domain::IllegalEvent| SagaError::Corrupt(id, e.to_string());
        let mut order = Order::start(id, &placed).map_err(corrupt)?;
        order.apply(&priced).map_err(corrupt)?;
        let now = self.clock.now_ms();
        let loaded = Loaded {
            order,
            created_at: now,
            updated_at: now,
        };
        let events = [placed, priced];
        let projection = view::projection(&loaded.order, (now, now));
        let outbox = announcements(&loaded.order, &events, ctx);
        let appended = self
            .store
            .append(id, 0, &events, &projection, (&outbox, now))
            .await;
        if !took(id, appended)? {
            return Ok(None);
        }
        self.relay.wake();
        if self.faults.persisted() {
            return Err(SagaError::Stopped);
        }
        Ok(Some(loaded))
    }

    /// Appends `events` after the version `loaded` holds and folds them in;
    /// `false` when the stream moved meanwhile (read it again). The events
    /// announced to other services carry `ctx`'s trace.
    pub async fn record(
        &self,
        loaded: &mut Loaded,
        events: &[OrderEvent],
        ctx: &RequestContext,
    ) -> Result<bool, SagaError> {
        let id = loaded.order.id();
        let mut next = loaded.order.clone();
        for event in events {
            next.apply(event)
                .map_err(|e| SagaError::Corrupt(id, e.to_string()))?;
        }
        let now = self.clock.now_ms().max(loaded.updated_at);
        let projection = view::projection(&next, (loaded.created_at, now));
        let outbox = announcements(&next, events, ctx);
        let version = loaded.order.version();
        let appended = self
            .store
            .append(id, version, events, &projection, (&outbox, now))
            .await;
        if !took(id, appended)? {
            return Ok(false);
        }
        if !outbox.is_empty() {
            self.relay.wake();
        }
        if next.status() != loaded.order.status() {
            let reason = next.rejection_reason().map_or("none", |r| r.as_str());
            metrics::counter!(
                "orders_status_changes_total",
                "status" => next.status().as_str(),
                "reason" => reason,
            )
            .increment(1);
        }
        loaded.order = next;
        loaded.updated_at = now;
        Ok(true)
    }

    /// Drives the order's saga until nothing is under way, or until
    /// `deadline` when a step must wait; `held` says the caller holds the
    /// claim already (it just created the order). Each step is a span of
    /// `ctx`'s trace, and the calls it makes are its children.
    pub async fn drive(
        &self,
        id: Uuid,
        held: bool,
        deadline: Instant,
        ctx: &RequestContext,
    ) -> Result<Option<Driven>, SagaError> {
        let Some(loaded) = self.load(id).await? else {
            return Ok(None);
        };
        self.drive_from(loaded, held, deadline, ctx).await.map(Some)
    }

    /// As [`Saga::drive`], from the order as the caller holds it (just
    /// created, so not read back).
    pub async fn drive_from(
        &self,
        mut loaded: Loaded,
        held: bool,
        deadline: Instant,
        ctx: &RequestContext,
    ) -> Result<Driven, SagaError> {
        let id = loaded.order.id();
        let lease = self.store.lease().ms;
        let mut claimed_at = held.then(|| self.clock.now_ms());
        let mut retries = 0_u32;
        let mut resolved = false;
        let (mut reserve, mut authorize) = (Sent::default(), Sent::default());
        loop {
            if self.faults.stopped() {
                return Err(SagaError::Stopped);
            }
            let Some(step) = loaded.order.next_step() else {
                return Ok(Driven::Finished(loaded));
            };
            let now = self.clock.now_ms();
            if claimed_at.is_none_or(|at| now - at > lease / 3) {
                if !self.store.claim(id, now).await? {
                    return Ok(Driven::Pending(loaded));
                }
                claimed_at = Some(now);
            }
            let resolving = undoing_checkout(&loaded.order) && !resolved;
            let step_ctx = ctx.child();
            let mut span = Span::start(
                ctx.service,
                SpanKind::Internal,
                &step_ctx.trace,
                Some(ctx.trace.parent_id),
                || {
                    let name = if resolving {
                        "resolve"
                    } else {
                        step_name(step)
                    };
                    format!("saga {name}").into()
                },
            );
            if span.is_recording() {
                span.set("order.id", id.to_string());
            }
            let outcome = if resolving {
                let skip = (reserve.surely_not(), authorize.surely_not());
                match self.unrecorded(&loaded.order, skip, &step_ctx).await {
                    Some(outcome) => outcome,
                    None => {
                        resolved = true;
                        continue;
                    }
                }
            } else {
                let started = std::time::Instant::now();
                let outcome = self.step(&loaded.order, step, &step_ctx).await;
                let name = step_name(step);
                metrics::histogram!("orders_saga_step_duration_seconds", "step" => name)
                    .record(started.elapsed().as_secs_f64());
                if !matches!(outcome, Outcome::Record(_)) {
                    metrics::counter!("orders_saga_step_retries_total", "step" => name)
                        .increment(1);
                }
                match step {
                    SagaStep::ReserveStock => reserve.note(&outcome),
                    SagaStep::AuthorizePayment => authorize.note(&outcome),
                    _ => {}
                }
                outcome
            };
            match outcome {
                Outcome::Record(events) => {
                    if self.faults.answered() {
                        return Err(SagaError::Stopped);
                    }
                    let mut saved = self.record(&mut loaded, &events, &step_ctx).await?;
                    while !saved {
                        // Someone else moved the order meanwhile (a cancel
                        // during the checkout). What another service now
                        // holds is a fact all the same: recorded if it can
                        // be, so that the cancel gives it back.
                        loaded = self.reload(id).await?;
                        let facts = events.iter().all(|e| {
                            matches!(
                                e,
                                OrderEvent::StockReserved { .. }
                                    | OrderEvent::PaymentAuthorized { .. }
                            ) && loaded.order.allows(e)
                        });
                        if !facts {
                            break;
                        }
                        saved = self.record(&mut loaded, &events, &step_ctx).await?;
                    }
                    if !saved {
                        continue;
                    }
                    retries = 0;
                    if self.faults.persisted() {
                        return Err(SagaError::Stopped);
                    }
                }
                Outcome::Later(reason) | Outcome::NotSent(reason) => {
                    span.set("saga.retry_reason", reason.as_str());
                    let checkout_going_ahead = loaded.order.in_progress()
                        == Some(Transition::Checkout)
                        && !loaded.order.is_rejecting();
                    let age = self.clock.now_ms() - loaded.created_at;
                    if checkout_going_ahead && age >= self.settings.pending_timeout_ms {
                        tracing::warn!(order = %id, %reason, "Checkout out of time; rejecting it.");
                        if !self
                            .record(
                                &mut loaded,
                                &[OrderEvent::CheckoutFailed { reason }],
                                &step_ctx,
                            )
                            .await?
                        {
                            loaded = self.reload(id).await?;
                        }
                        continue;
                    }
                    retries += 1;
                    let wait = self.backoff(retries);
                    if Instant::now() + wait < deadline {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let retry_at = self.clock.now_ms() + wait.as_millis() as i64;
                    self.store.put_off(id, retry_at).await?;
                    return Ok(Driven::Pending(loaded));
                }
            }
        }
    }

    async fn reload(&self, id: Uuid) -> Result<Loaded, SagaError> {
        self.load(id)
            .await?
            .ok_or_else(|| SagaError::Corrupt(id, "the stream is gone".into()))
    }

    /// The wait before try number `retries + 1` of a step.
    fn backoff(&self, retries: u32) -> Duration {
        let s = &self.settings;
        let ms = s
            .retry_after_ms
            .saturating_mul(1_i64 << retries.saturating_sub(1).min(20))
            .min(s.retry_max_ms);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Drives every saga nobody holds, up to `limit` of them: what each
    /// replica runs on start and every `checkout.scan_every_ms`. Gives how
    /// many were looked at.
    pub async fn recover(&self, limit: i64) -> Result<usize, SagaError> {
        let ids = self.store.unfinished(self.clock.now_ms(), limit).await?;
        for id in &ids {
            // Each gets its turn: a step that must wait is put off at once.
            // Resumed work is a trace of its own, rooted in this pass.
            let ctx = RequestContext::background(crate::SERVICE);
            let mut span =
                Span::start(crate::SERVICE, SpanKind::Internal, &ctx.trace, None, || {
                    "saga resume".into()
                });
            if span.is_recording() {
                span.set("order.id", id.to_string());
            }
            let driven = self.drive(*id, false, Instant::now(), &ctx).await;
            drop(span);
            if let Err(e) = driven {
                if matches!(e, SagaError::Stopped) {
                    return Err(e);
                }
                tracing::error!(order = %id, error = %e, "Driving a saga failed.");
            }
        }
        Ok(ids.len())
    }

    /// What a failing checkout holds that its stream does not say: a
    /// reservation or authorization whose answer was lost. `None` when
    /// nothing is (or the failure itself says nothing could be, or the calls
    /// surely never arrived: `(reserve, authorize)` of `never_sent`).
    async fn unrecorded(
        &self,
        order: &Order,
        never_sent: (bool, bool),
        ctx: &RequestContext,
    ) -> Option<Outcome> {
        use RejectionReason as R;
        let id = order.id();
        let reason = order.rejection_reason();
        let reserve_failed_definitely =
            matches!(reason, Some(R::OutOfStock | R::ProductUnavailable));
        if order.priced()
            && order.reservation_id().is_none()
            && !reserve_failed_definitely
            && !never_sent.0
        {
            match self.reservations.get(id, Some(ctx)).await {
                Ok(r) if r.status == ReservationStatus::Active => {
                    return Some(Outcome::Record(vec![OrderEvent::StockReserved {
                        reservation_id: r.id,
                    }]));
                }
                Ok(_) | Err(ReservationError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(order = %id, error = %e, "Cannot tell what the catalog holds yet.");
                    return Some(Outcome::Later(R::CatalogUnavailable));
                }
            }
        }
        let declined = matches!(reason, Some(R::PaymentDeclined | R::InsufficientFunds));
        if order.stock_held() && order.payment().is_none() && !declined && !never_sent.1 {
            match self.payments.get(id, Some(ctx)).await {
                Ok(p) if p.status == PaymentStatus::Authorized => {
                    return Some(Outcome::Record(vec![OrderEvent::PaymentAuthorized {
                        payment_id: p.id,
                        brand: p.brand,
                        last4: p.last4,
                    }]));
                }
                Ok(p) if p.status == PaymentStatus::RequiresAuthorization => {
                    return Some(Outcome::Later(R::PaymentUnavailable));
                }
                Ok(_) | Err(PaymentError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(order = %id, error = %e, "Cannot tell what payments holds yet.");
                    return Some(Outcome::Later(R::PaymentUnavailable));
                }
            }
        }
        None
    }

    /// Runs one step.
    async fn step(&self, order: &Order, step: SagaStep, ctx: &RequestContext) -> Outcome {
        use OrderEvent as E;
        use RejectionReason as R;
        let id = order.id();
        let record = |event: OrderEvent| Outcome::Record(vec![event]);
        match step {
            SagaStep::Price => record(E::Priced {
                lines: order.lines().to_vec(),
                totals: order.totals().clone(),
            }),
            SagaStep::ReserveStock => {
                let items = order
                    .lines()
                    .iter()
                    .map(|l| ReserveItem {
                        product_id: l.product_id,
                        quantity: l.quantity,
                    })
                    .collect();
                match self.reservations.reserve(id, items, Some(ctx)).await {
                    Ok(r) => record(E::StockReserved {
                        reservation_id: r.id,
                    }),
                    Err(e) if e.is_retryable() => retry(R::CatalogUnavailable, e.never_sent()),
                    Err(ReservationError::OutOfStock(_)) => fail(R::OutOfStock),
                    Err(ReservationError::Invalid(_)) => fail(R::ProductUnavailable),
                    Err(ReservationError::Expired) => fail(R::Expired),
                    Err(e) => {
                        tracing::error!(order = %id, error = %e, "The catalog refused a reservation.");
                        fail(R::CatalogUnavailable)
                    }
                }
            }
            SagaStep::AuthorizePayment => {
                let totals = order.totals();
                let request = AuthorizePayment {
                    order_id: id,
                    customer_id: order.customer_id(),
                    token: order.payment_token().to_owned(),
                    amount: totals.total.amount,
                    currency: totals.currency().to_owned(),
                };
                match self.payments.authorize(&request, Some(ctx)).await {
                    Ok(p) if p.status == PaymentStatus::Authorized => {
                        record(E::PaymentAuthorized {
                            payment_id: p.id,
                            brand: p.brand,
                            last4: p.last4,
                        })
                    }
                    Ok(p) if p.status == PaymentStatus::Failed => fail(
                        p.failure_reason
                            .and_then(R::of_payment_failure)
                            .unwrap_or(R::PaymentDeclined),
                    ),
                    Ok(_) => Outcome::Later(R::PaymentUnavailable),
                    Err(e) if e.is_retryable() => retry(R::PaymentUnavailable, e.never_sent()),
                    // An unknown, used or expired card token.
                    Err(PaymentError::Invalid(_)) => fail(R::PaymentDeclined),
                    Err(e) => {
                        tracing::error!(order = %id, error = %e, "Payments refused an authorization.");
                        fail(R::PaymentUnavailable)
                    }
                }
            }
            SagaStep::Confirm => match self.reservations.keep(id, Some(ctx)).await {
                Ok(_) => record(E::Confirmed),
                Err(e) if e.is_retryable() => Outcome::Later(R::CatalogUnavailable),
                Err(ReservationError::Expired) => fail(R::Expired),
                Err(e) => {
                    tracing::error!(order = %id, error = %e, "The catalog refused to keep a reservation.");
                    fail(R::CatalogUnavailable)
                }
            },
            SagaStep::VoidPayment => match self.payments.void(id, Some(ctx)).await {
                Ok(p) if p.authorized == 0 => record(E::PaymentVoided),
                Err(PaymentError::NotFound) => record(E::PaymentVoided),
                Err(PaymentError::Refused(..)) => self.held_no_more(id, ctx).await,
                other => later(id, "void", other.err()),
            },
            SagaStep::RefundPayment { amount } => {
                // The same refund after a crash has the same key: paid back once.
                let key = format!("{id}:refund:{}", order.refunded());
                match self.payments.refund(id, &key, amount, Some(ctx)).await {
                    Ok(_) => record(E::PaymentRefunded { amount }),
                    other => later(id, "refund", other.err()),
                }
            }
            SagaStep::ReleaseStock => match self.reservations.release(id, Some(ctx)).await {
                Ok(r) if r.status != ReservationStatus::Active => record(E::StockReleased),
                Err(ReservationError::NotFound) => record(E::StockReleased),
                other => later(id, "release", other.err()),
            },
            SagaStep::Restock => match self.reservations.restock(id, Some(ctx)).await {
                Ok(_) => record(E::Restocked),
                other => later(id, "restock", other.err()),
            },
            SagaStep::Reject { reason } => record(E::Rejected { reason }),
            SagaStep::MarkCancelled => record(E::Cancelled),
            SagaStep::CapturePayment => match self.payments.capture(id, None, Some(ctx)).await {
                Ok(p) if p.captured > 0 => record(E::PaymentCaptured { amount: p.captured }),
                Ok(p) if p.status == PaymentStatus::Failed => record(E::NeedsAttention {
                    reason: "the card network refused the capture".into(),
                }),
                Err(PaymentError::Refused(kind, detail)) => record(E::NeedsAttention {
                    reason: format!("payments refused the capture ({kind}): {detail}"),
                }),
                other => later(id, "capture", other.err()),
            },
            SagaStep::CommitStock => match self.reservations.commit(id, Some(ctx)).await {
                Ok(_) => record(E::StockCommitted),
                Err(ReservationError::Expired) => record(E::NeedsAttention {
                    reason: "the reservation expired before shipping; its stock went back on sale"
                        .into(),
                }),
                other => later(id, "commit", other.err()),
            },
            SagaStep::MarkShipped => record(E::Shipped),
            SagaStep::MarkRefunded => record(E::Refunded),
        }
    }

    /// After payments refused a void: whether the authorization still holds money.
    async fn held_no_more(&self, id: Uuid, ctx: &RequestContext) -> Outcome {
        match self.payments.get(id, Some(ctx)).await {
            Ok(p) if p.authorized == 0 => Outcome::Record(vec![OrderEvent::PaymentVoided]),
            other => later(id, "void", other.err()),
        }
    }
}

/// A step to try again later, logged by how surprising its failure was.
fn later(id: Uuid, step: &str, error: Option<impl std::fmt::Display + Retryable>) -> Outcome {
    match error {
        Some(e) if e.retryable() => {
            tracing::info!(order = %id, step, error = %e, "A saga step will be tried again.");
        }
        Some(e) => {
            tracing::error!(order = %id, step, error = %e, "A saga step was refused; trying again later.");
        }
        None => {
            tracing::warn!(order = %id, step, "A saga step did not take effect yet; trying again later.");
        }
    }
    Outcome::Later(RejectionReason::CatalogUnavailable)
}

/// Errors that say whether trying again can help.
trait Retryable {
    fn retryable(&self) -> bool;
}

impl Retryable for ReservationError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

impl Retryable for PaymentError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }
}

/// The events other services hear of, for `events` just folded into `order`.
fn announcements(order: &Order, events: &[OrderEvent], ctx: &RequestContext) -> Vec<Envelope> {
    let summary = || events::OrderSummary {
        order_id: order.id(),
        customer_id: order.customer_id(),
        status: order.status().as_str().to_owned(),
        items: order
            .lines()
            .iter()
            .map(|l| events::OrderItem {
                product_id: l.product_id,
                quantity: l.quantity,
            })
            .collect(),
        total: order.totals().total.amount,
        currency: order.totals().currency().to_owned(),
        reason: order.rejection_reason().map(|r| r.as_str().to_owned()),
    };
    let subject = Some(order.id().to_string());
    let trace = Some(ctx.trace.header_value());
    let announce = |event: &OrderEvent| -> Option<Envelope> {
        let (s, t) = (subject.clone(), trace.clone());
        Some(match event {
            OrderEvent::Placed { .. } => Envelope::new(&events::OrderPlaced(summary()), s, t),
            OrderEvent::Confirmed => Envelope::new(&events::OrderConfirmed(summary()), s, t),
            OrderEvent::Rejected { .. } => Envelope::new(&events::OrderRejected(summary()), s, t),
            OrderEvent::Cancelled => Envelope::new(&events::OrderCancelled(summary()), s, t),
            OrderEvent::Shipped => Envelope::new(&events::OrderShipped(summary()), s, t),
            OrderEvent::Delivered { .. } => Envelope::new(&events::OrderDelivered(summary()), s, t),
            OrderEvent::Refunded => Envelope::new(&events::OrderRefunded(summary()), s, t),
            _ => return None,
        })
    };
    events.iter().filter_map(announce).collect()
}

/// Whether an append to `id`'s stream took: `false` when another writer
/// moved the stream first; an event that cannot be stored is a bug.
fn took(id: Uuid, appended: Result<i64, AppendError>) -> Result<bool, SagaError> {
    match appended {
        Ok(_) => Ok(true),
        Err(AppendError::Stale { .. }) => Ok(false),
        Err(AppendError::Encode(e)) => Err(SagaError::Corrupt(id, e.to_string())),
        Err(AppendError::Store(e)) => Err(e.into()),
    }
}

/// The step's name in metrics (a bounded set).
fn step_name(step: SagaStep) -> &'static str {
    match step {
        SagaStep::Price => "price",
        SagaStep::ReserveStock => "reserve_stock",
        SagaStep::AuthorizePayment => "authorize_payment",
        SagaStep::Confirm => "confirm",
        SagaStep::VoidPayment => "void_payment",
        SagaStep::RefundPayment { .. } => "refund_payment",
        SagaStep::ReleaseStock => "release_stock",
        SagaStep::Restock => "restock",
        SagaStep::Reject { .. } => "reject",
        SagaStep::MarkCancelled => "mark_cancelled",
        SagaStep::CapturePayment => "capture_payment",
        SagaStep::CommitStock => "commit_stock",
        SagaStep::MarkShipped => "mark_shipped",
        SagaStep::MarkRefunded => "mark_refunded",
    }
}

/// A checkout being undone before it finished: failed, or cancelled while
/// pending. What it holds may not all be in its stream yet.
fn undoing_checkout(order: &Order) -> bool {
    order.status() == OrderStatus::Pending
        && (order.is_rejecting() || order.in_progress() == Some(Transition::Cancel))
}
