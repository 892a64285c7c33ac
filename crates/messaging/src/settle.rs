//! Settling one delivery, the same way on every bus: run the handler; on
//! success let the bus forget the delivery; on failure count the attempt and
//! either schedule another one after the policy's backoff or, after the last,
//! dead-letter it with its error. The decisions, metrics and logs live here;
//! each bus says only how a delivery is acknowledged, retried or parked.
//!
//! Metrics (labels `consumer` and `type`; `type` is `malformed` for a payload
//! that is not an envelope): `events_consumed_total`, `events_failed_total`,
//! `events_retried_total`, `events_dead_lettered_total`.

use std::time::Duration;

use emporium_telemetry::{Span, SpanKind, TraceParent};

use crate::bus::Subscription;
use crate::envelope::Envelope;

/// A failed attempt at one delivery.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The envelope's id as text; empty when the payload is not an envelope.
    pub id: String,
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// The policy's wait after this attempt ([`crate::RetryPolicy::delay_after`]).
    pub delay: Duration,
    /// What the handler said, or why the payload is not an envelope.
    pub error: String,
}

/// How one bus settles one delivery. Each method settles it for good: after
/// it returns `Ok`, the delivery is not handed to the handler again unless
/// the bus schedules it (retry) or someone replays it (dead letter).
#[async_trait::async_trait]
pub(crate) trait Settler: Sync {
    type Error;

    /// Whether a payload that is not an envelope is dead-lettered at once
    /// (otherwise it is retried like any failure, until the last attempt).
    const DEAD_LETTER_MALFORMED: bool;

    /// The handler applied the event.
    async fn done(&self) -> Result<(), Self::Error>;

    /// The attempt failed and another one is due after `failure.delay`.
    async fn retry(&self, failure: &Failure) -> Result<(), Self::Error>;

    /// The attempt failed and no other one will be made.
    async fn dead_letter(&self, failure: &Failure) -> Result<(), Self::Error>;
}

/// Hands `payload` (the envelope as JSON), delivered for the `attempt`th time
/// (1-based), to the subscription's handler, and settles the delivery through
/// `settler`. An error is the bus's own failure to settle; the delivery then
/// comes back (unacked, or its row unchanged).
pub(crate) async fn settle<S: Settler>(
    sub: &Subscription,
    attempt: u32,
    payload: &[u8],
    settler: &S,
) -> Result<(), S::Error> {
    let envelope: Result<Envelope, _> = serde_json::from_slice(payload);
    let (event_type, id, outcome) = match envelope {
        Ok(env) => {
            let mut span = consumer_span(sub, &env, attempt);
            let outcome = sub.handler.handle(&env).await.map_err(|e| e.0);
            if let Err(error) = &outcome {
                span.fail(error.clone());
            }
            (env.event_type.clone(), env.id.to_string(), outcome)
        }
        Err(e) => (
            "malformed".to_owned(),
            String::new(),
            Err(format!("malformed envelope: {e}")),
        ),
    };
    let labels = [("consumer", sub.consumer.clone()), ("type", event_type)];
    let error = match outcome {
        Ok(()) => {
            metrics::counter!("events_consumed_total", &labels).increment(1);
            return settler.done().await;
        }
        Err(error) => error,
    };
    metrics::counter!("events_failed_total", &labels).increment(1);
    let malformed = id.is_empty();
    let last = attempt >= sub.retry.max_attempts || (malformed && S::DEAD_LETTER_MALFORMED);
    if last {
        metrics::counter!("events_dead_lettered_total", &labels).increment(1);
        tracing::warn!(consumer = %sub.consumer, %error, attempt, "Event dead-lettered.");
    } else {
        metrics::counter!("events_retried_total", &labels).increment(1);
    }
    let failure = Failure {
        id,
        attempt,
        delay: sub.retry.delay_after(attempt),
        error,
    };
    if last {
        settler.dead_letter(&failure).await
    } else {
        settler.retry(&failure).await
    }
}

/// The span of one delivery's handling, in the trace its producer's
/// `traceparent` names (a trace of its own when it names none). The service
/// is the consumer name's first part (`orders.customers`: `orders`).
fn consumer_span(sub: &Subscription, env: &Envelope, attempt: u32) -> Span {
    let producer = env.traceparent.as_deref().and_then(TraceParent::parse);
    let own = producer.map_or_else(TraceParent::generate, |p| p.child());
    let service = sub.consumer.split('.').next().unwrap_or_default();
    let mut span = Span::start(
        service,
        SpanKind::Consumer,
        &own,
        producer.map(|p| p.parent_id),
        || format!("process {}", env.event_type).into(),
    );
    if span.is_recording() {
        span.set("messaging.operation.type", "process");
        span.set("messaging.destination.name", env.event_type.clone());
        span.set("messaging.consumer.group.name", sub.consumer.clone());
        span.set("messaging.message.id", env.id.to_string());
        span.set("messaging.message.delivery_count", i64::from(attempt));
    }
    span
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::bus::{EventHandler, HandlerError, RetryPolicy};

    struct Failing;

    #[async_trait::async_trait]
    impl EventHandler for Failing {
        async fn handle(&self, _event: &Envelope) -> Result<(), HandlerError> {
            Err(HandlerError::new("nope"))
        }
    }

    /// Records what it was asked to do.
    #[derive(Default)]
    struct Record<const MALFORMED_IS_FINAL: bool>(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl<const MALFORMED_IS_FINAL: bool> Settler for Record<MALFORMED_IS_FINAL> {
        type Error = std::convert::Infallible;
        const DEAD_LETTER_MALFORMED: bool = MALFORMED_IS_FINAL;

        async fn done(&self) -> Result<(), Self::Error> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push("done".into());
            Ok(())
        }

        async fn retry(&self, f: &Failure) -> Result<(), Self::Error> {
            let line = format!("retry {} {}ms {}", f.attempt, f.delay.as_millis(), f.error);
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            Ok(())
        }

        async fn dead_letter(&self, f: &Failure) -> Result<(), Self::Error> {
            let line = format!("dead {} {}", f.attempt, f.error);
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            Ok(())
        }
    }

    fn sub() -> Subscription {
        Subscription {
            consumer: "test".into(),
            event_types: vec![],
            handler: Arc::new(Failing),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(100),
            },
            prefetch: 1,
        }
    }

    fn taken<const M: bool>(r: &Record<M>) -> Vec<String> {
        std::mem::take(&mut *r.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    #[tokio::test]
    async fn failures_back_off_then_dead_letter() {
        let envelope = serde_json::json!({
            "specversion": "1.0",
            "id": "0190b3f2-8f2c-7cc0-8000-000000000001",
            "source": "test",
            "type": "test.happened",
            "time": "2024-01-01T00:00:00Z",
            "datacontenttype": "application/json",
            "data": {},
        })
        .to_string();
        let r = Record::<false>::default();
        for attempt in 1..=3 {
            let _ = settle(&sub(), attempt, envelope.as_bytes(), &r).await;
        }
        assert_eq!(
            taken(&r),
            ["retry 1 100ms nope", "retry 2 200ms nope", "dead 3 nope"]
        );
    }

    #[tokio::test]
    async fn malformed_is_final_only_where_the_bus_says_so() {
        let retried = Record::<false>::default();
        let _ = settle(&sub(), 1, b"{", &retried).await;
        let dead = Record::<true>::default();
        let _ = settle(&sub(), 1, b"{", &dead).await;
        let (retried, dead) = (taken(&retried), taken(&dead));
        assert!(
            retried[0].starts_with("retry 1 100ms malformed envelope: "),
            "{retried:?}"
        );
        assert!(
            dead[0].starts_with("dead 1 malformed envelope: "),
            "{dead:?}"
        );
    }
}
