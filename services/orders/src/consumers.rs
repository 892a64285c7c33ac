//! What orders hears from other services: accounts' profile changes (its
//! copy of each customer's name and email, erased when the account is
//! deleted), and payments' late failures (a capture the card network
//! refused after the order was confirmed moves it to `needs_attention`).

use std::sync::Arc;

use emporium_contracts::Event;
use emporium_contracts::accounts::{UserDeleted, UserProfileUpdated, UserRegistered};
use emporium_contracts::payments::{FailureReason, PaymentFailed};
use emporium_http::RequestContext;
use emporium_messaging::{Envelope, EventHandler, HandlerError, RetryPolicy, Subscription};

use crate::domain::OrderEvent;
use crate::saga::Saga;
use crate::store::Carts;

/// Keeps orders' copy of each customer.
pub struct Customers {
    pub carts: Carts,
    pub clock: emporium_db::SharedClock,
}

impl Customers {
    pub fn subscription(self) -> Subscription {
        Subscription {
            consumer: "orders.customers".into(),
            event_types: vec![
                UserRegistered::TYPE.into(),
                UserProfileUpdated::TYPE.into(),
                UserDeleted::TYPE.into(),
            ],
            handler: Arc::new(self),
            retry: RetryPolicy::default(),
            prefetch: 16,
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::new(format!("malformed event: {e}"))
}

#[async_trait::async_trait]
impl EventHandler for Customers {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let now = self.clock.now_ms();
        let (user, change) = match event.event_type.as_str() {
            UserRegistered::TYPE => {
                let e: UserRegistered = event.decode().map_err(malformed)?;
                (e.user_id, Some((e.name, Some(e.email))))
            }
            UserProfileUpdated::TYPE => {
                let e: UserProfileUpdated = event.decode().map_err(malformed)?;
                (e.user_id, Some((e.name, None)))
            }
            UserDeleted::TYPE => {
                let e: UserDeleted = event.decode().map_err(malformed)?;
                (e.user_id, None)
            }
            _ => return Ok(()),
        };
        let change = change
            .as_ref()
            .map(|(name, email)| (name.as_str(), email.as_deref()));
        self.carts
            .customer_changed(event.id, user, change, now)
            .await
            .map_err(HandlerError::new)
    }
}

/// Moves an order whose capture failed late to `needs_attention`.
pub struct LateFailures {
    pub saga: Saga,
}

impl LateFailures {
    pub fn subscription(self) -> Subscription {
        Subscription {
            consumer: "orders.payments".into(),
            event_types: vec![PaymentFailed::TYPE.into()],
            handler: Arc::new(self),
            // An order's saga under way (a shipment waiting for a service)
            // is waited for: 12 attempts, doubling from a second, span
            // over an hour before the event is parked.
            retry: RetryPolicy {
                max_attempts: 12,
                base_delay: std::time::Duration::from_secs(1),
            },
            prefetch: 16,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for LateFailures {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let failed: PaymentFailed = event.decode().map_err(malformed)?;
        // A failed authorization is the checkout's own business: it saw it.
        if failed.reason != FailureReason::CaptureFailed {
            return Ok(());
        }
        let ctx = RequestContext::caused_by(crate::SERVICE, event.traceparent.as_deref());
        let attention = OrderEvent::NeedsAttention {
            reason: "the card network refused the capture after it was accepted".into(),
        };
        // The event's effect is idempotent by state: an order already in
        // `needs_attention` (or one that never was ours) is left alone.
        for _ in 0..5 {
            let loaded = self.saga.load(failed.order_id).await;
            let mut loaded = match loaded {
                Ok(Some(loaded)) => loaded,
                Ok(None) => return Ok(()),
                Err(e) => return Err(HandlerError::new(e)),
            };
            // A saga under way (the shipment that captured) finishes first:
            // the event comes back after the bus's retry delay.
            if loaded.order.in_progress().is_some() {
                return Err(HandlerError::new("the order is moving; later"));
            }
            if !loaded.order.allows(&attention) {
                return Ok(());
            }
            match self
                .saga
                .record(&mut loaded, std::slice::from_ref(&attention), &ctx)
                .await
            {
                Ok(true) => {
                    tracing::warn!(order = %failed.order_id, "A capture failed late; the order needs attention.");
                    return Ok(());
                }
                Ok(false) => continue,
                Err(e) => return Err(HandlerError::new(e)),
            }
        }
        Err(HandlerError::new("the order kept changing"))
    }
}
