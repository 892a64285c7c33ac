//! What every bus offers: publishing with confirms, durable subscriptions with
//! retries and dead letters, and operations on the dead letters.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::envelope::Envelope;

/// A future that resolves when the subscriber should stop.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An outbox row on its way to the bus.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    pub id: Uuid,
    pub event_type: String,
    /// The envelope as JSON text, published as is.
    pub envelope: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the broker is unreachable: {0}")]
    Unavailable(String),
    #[error("the broker refused a message")]
    Nacked,
    /// The embedded bus's store (or another storage behind a bus) failed; the
    /// cause is kept as the error's source.
    #[error("the bus store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Keeps `?` working on storage calls inside the crate without naming sqlx in
/// the [`Bus`] contract.
impl From<sqlx::Error> for BusError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(Box::new(e))
    }
}

/// Why a handler could not apply an event. The text is kept with the event
/// when it is dead-lettered, so make it say what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// Applies events for one consumer. Use [`crate::inbox::first_delivery`] in the
/// transaction of the effect, so redeliveries are harmless.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError>;
}

/// How often and how patiently failed handling is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last the event is dead-lettered.
    pub max_attempts: u32,
    /// The wait before the second attempt; each further wait doubles.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        self.base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
    }
}

/// One consumer's subscription: its name (its queues are named after it), the
/// event types it wants, and what applies them.
#[derive(Clone)]
pub struct Subscription {
    pub consumer: String,
    pub event_types: Vec<String>,
    pub handler: Arc<dyn EventHandler>,
    pub retry: RetryPolicy,
    /// How many deliveries may be in flight at once.
    pub prefetch: u16,
}

/// An event parked after its last failed attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: Uuid,
    pub event_type: String,
    pub attempts: u32,
    pub last_error: String,
    pub envelope: serde_json::Value,
}

/// How often a running consumer reads its dead-letter queue's depth into
/// the `events_dead_letter_queue_messages{consumer}` gauge.
pub(crate) const DEAD_LETTER_GAUGE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Sets the dead-letter gauge of `consumer`.
pub(crate) fn gauge_dead_letters(consumer: &str, depth: u64) {
    metrics::gauge!("events_dead_letter_queue_messages", "consumer" => consumer.to_owned())
        .set(depth as f64);
}

/// A message bus: RabbitMQ in production, [`crate::embedded::EmbeddedBus`] in `emporium up`.
#[async_trait::async_trait]
pub trait Bus: Send + Sync {
    /// Publishes a batch; returns only when the bus has durably accepted every event.
    async fn publish(&self, batch: &[OutgoingEvent]) -> Result<(), BusError>;

    /// Starts consuming in the background until `stop` resolves; the returned
    /// task ends after the in-flight deliveries are settled.
    async fn subscribe(
        &self,
        subscription: Subscription,
        stop: Stop,
    ) -> Result<tokio::task::JoinHandle<()>, BusError>;

    async fn dead_letters(&self, consumer: &str) -> Result<Vec<DeadLetter>, BusError>;

    /// How many events `consumer` has parked (its dead-letter queue's depth),
    /// without reading them.
    async fn dead_letter_depth(&self, consumer: &str) -> Result<u64, BusError>;

    /// Whether `consumer` ever subscribed on this bus (its queue is there).
    async fn has_consumer(&self, consumer: &str) -> Result<bool, BusError>;
    /// Sends dead letters (one, or all when `id` is `None`) back for another
    /// round of attempts; returns how many.
    async fn replay(&self, consumer: &str, id: Option<Uuid>) -> Result<usize, BusError>;
    /// Drops every dead letter of the consumer; returns how many.
    async fn purge(&self, consumer: &str) -> Result<usize, BusError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
        };
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(200));
        assert_eq!(p.delay_after(4), Duration::from_millis(800));
    }
}
