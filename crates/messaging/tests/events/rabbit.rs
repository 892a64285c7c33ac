//! On RabbitMQ (127.0.0.1:5672, or EMPORIUM_TEST_AMQP_URL). These fail, never
//! skip, when the broker is unreachable.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use emporium_db::Engine;
use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
use emporium_messaging::{Bus, RetryPolicy};
use uuid::Uuid;

use crate::harness::{
    Behaviour, Consumer, Producer, WAIT, all_applied, crash_after_commit, eventually, listen,
    quick_retry, scenario_dead_letter_and_replay, scenario_outbox_atomicity, spawn_relay,
};
use crate::proxy::Proxy;

fn broker() -> String {
    std::env::var("EMPORIUM_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn broker_addr() -> String {
    let url = broker();
    let rest = url.split('@').nth(1).unwrap_or("127.0.0.1:5672/");
    rest.split('/').next().unwrap().to_owned()
}

/// A bus on its own exchange, so tests never see each other's events.
fn bus_at(url: &str, exchange: &str) -> RabbitBus {
    RabbitBus::new(bus_settings(url, exchange))
}

fn bus_settings(url: &str, exchange: &str) -> RabbitSettings {
    let mut settings = RabbitSettings::new(url);
    settings.exchange = exchange.to_owned();
    settings.queue_prefix = "emporium-test.".into();
    settings
}

fn exchange() -> String {
    format!("emporium-test.events.{}", Uuid::now_v7().simple())
}

/// Deletes a test's queues and exchange when dropped, so a failing test
/// leaves nothing behind on the broker either. Declare it before the
/// `Stopper`s, so the consumers are told to stop before their queues go.
struct Cleanup {
    exchange: String,
    consumer: String,
    retry: RetryPolicy,
}

impl Cleanup {
    fn new(exchange: &str, consumer: &str, retry: RetryPolicy) -> Self {
        Self {
            exchange: exchange.to_owned(),
            consumer: consumer.to_owned(),
            retry,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let settings = bus_settings(&broker(), &self.exchange);
        RabbitBus::remove_blocking(settings, self.consumer.clone(), self.retry);
    }
}

/// What a test runs on: a bus at `url` on an exchange of the test's own, a
/// producer and a consumer named `name` on `engine`, and the cleanup of the
/// exchange and the consumer's queues. Bind it before the test's `Stopper`s,
/// so it is dropped after them.
struct Rig {
    _cleanup: Cleanup,
    exchange: String,
    bus: Arc<dyn Bus>,
    producer: Producer,
    consumer: Arc<Consumer>,
}

impl Rig {
    async fn new(url: &str, engine: Engine, name: &str) -> Self {
        let exchange = exchange();
        let consumer = Consumer::on(engine, name).await;
        Self {
            _cleanup: Cleanup::new(&exchange, &consumer.name, quick_retry(3)),
            bus: Arc::new(bus_at(url, &exchange)),
            producer: Producer::on(engine).await,
            exchange,
            consumer,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_publishes_committed_changes_exactly_once() {
    let rig = Rig::new(&broker(), Engine::Postgres, "atomic").await;
    scenario_outbox_atomicity(rig.bus.clone(), &rig.producer, &rig.consumer).await;
}

/// A broker outage in the middle of a stream of events: nothing crosses the
/// cut link, nothing is lost, and every delivery the outage makes the broker
/// repeat is recognised by the inbox (not merely absorbed by the effects
/// table's primary key, which would fail the handler and dead-letter the event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing_and_applies_nothing_twice() {
    let proxy = Proxy::start(&broker_addr()).await;
    let rig = Rig::new(&proxy.url(), Engine::Sqlite, "outage").await;
    let (bus, producer, consumer) = (&rig.bus, &rig.producer, &rig.consumer);
    let stopper = listen(bus.as_ref(), consumer).await;
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);

    let (before, during, total) = (100u64, 200u64, 300u64);
    for n in 0..before {
        producer.make(n, true).await;
    }
    eventually("every event before the cut is applied", WAIT, || async {
        consumer.effects().await == before as i64
    })
    .await;

    // One more event is applied and left unacknowledged when the link goes
    // down (its handler commits, then hangs, as a process dying before its
    // ack): the broker must deliver it again, and the inbox must know it.
    consumer.set(Behaviour::HangAfterCommit);
    let unacked = producer.make(before, true).await;
    tokio::time::timeout(WAIT, consumer.applied_signal.notified())
        .await
        .expect("the last event before the cut was applied");
    // ...and its publisher confirm has been seen, so no publish is in flight either.
    eventually("the outbox is empty before the cut", WAIT, || async {
        producer.unpublished().await == 0
    })
    .await;
    proxy.cut();
    consumer.set(Behaviour::Apply);
    let at_cut = consumer.effects().await;
    assert_eq!(at_cut, before as i64 + 1);

    for n in before + 1..during {
        producer.make(n, true).await;
    }
    // What must not happen cannot be polled for: give a leaking link a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Nothing was in flight at the cut (every event before it had been
    // applied, the unacknowledged one included), so nothing may cross it:
    // not one of the events made since leaves the outbox, none is applied.
    assert_eq!(
        producer.unpublished().await,
        (during - before - 1) as i64,
        "the relay published through a cut link"
    );
    assert_eq!(
        consumer.effects().await,
        at_cut,
        "the consumer received through a cut link"
    );
    proxy.restore();

    for n in during..total {
        producer.make(n, true).await;
    }
    all_applied("every event is applied after the outage", consumer, total).await;
    eventually("the outbox is drained", WAIT, || async {
        producer.unpublished().await == 0
    })
    .await;
    eventually(
        "the event unacknowledged at the cut is delivered again",
        WAIT,
        || async { consumer.delivered(unacked.id) >= 2 },
    )
    .await;
    // Settled: every repeated delivery recognised, or a handler failed.
    eventually("the repeated deliveries are settled", WAIT, || async {
        consumer.failed_calls() > 0
            || consumer
                .redelivered()
                .iter()
                .all(|(_, deliveries, recognised)| *recognised == deliveries - 1)
    })
    .await;
    assert_eq!(
        consumer.failed_calls(),
        0,
        "a delivery failed: a repeat the inbox missed runs into the effects table's key"
    );
    for (id, deliveries, recognised) in consumer.redelivered() {
        assert_eq!(
            recognised,
            deliveries - 1,
            "event {id}: {deliveries} deliveries, {recognised} recognised by the inbox"
        );
    }
    assert!(
        bus.dead_letters(&consumer.name).await.unwrap().is_empty(),
        "nothing was dead-lettered"
    );
    assert_eq!(consumer.effects().await, total as i64);
    stopper.fire();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_before_its_ack_is_deduplicated_on_redelivery() {
    let rig = Rig::new(&broker(), Engine::Postgres, "crash").await;
    let (bus, producer, consumer) = (&rig.bus, &rig.producer, &rig.consumer);
    let (event, _stoppers) = crash_after_commit(bus, producer, consumer, 7).await;
    let _second_life = listen(bus.as_ref(), consumer).await;

    eventually("the event is redelivered", WAIT, || async {
        consumer.delivered(event.id) == 2
    })
    .await;
    eventually("the redelivery is recognised", WAIT, || async {
        consumer.recognised_duplicates() == 1
    })
    .await;
    assert_eq!(consumer.effects().await, 1, "applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_outbox_publish_each_event_once() {
    let rig = Rig::new(&broker(), Engine::Postgres, "relays").await;
    let (bus, producer, consumer) = (&rig.bus, &rig.producer, &rig.consumer);
    let stopper = listen(bus.as_ref(), consumer).await;
    // A second replica's relay: its own bus connection, the same outbox table.
    let other: Arc<dyn Bus> = Arc::new(bus_at(&broker(), &rig.exchange));
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    spawn_relay(producer.outbox.clone(), other, &stopper);

    let total = 400u64;
    for n in 0..total {
        producer.make(n, true).await;
    }
    all_applied("every event is applied", consumer, total).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        consumer.max_deliveries_of_one_event(),
        1,
        "no event was published twice"
    );
    assert_eq!(consumer.recognised_duplicates(), 0);
    stopper.fire();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_about_one_subject_are_applied_in_order() {
    let rig = Rig::new(&broker(), Engine::Postgres, "order").await;
    let (bus, producer, consumer) = (&rig.bus, &rig.producer, &rig.consumer);
    let stopper = listen(bus.as_ref(), consumer).await;
    let total = 400u64;
    for n in 0..total {
        producer
            .make_about(n, &format!("subject-{}", n % 5), true)
            .await;
    }
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    // The handler records what it applied just after its commit: wait for the
    // record too, not only for the rows.
    eventually(
        "every event is applied",
        Duration::from_secs(60),
        || async {
            consumer.effects().await == total as i64
                && consumer.applied.lock().unwrap().len() == total as usize
        },
    )
    .await;
    let applied = consumer.applied.lock().unwrap().clone();
    for subject in 0..5 {
        let ns: Vec<u64> = applied
            .iter()
            .filter(|(s, _)| *s == format!("subject-{subject}"))
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(ns.len(), 80);
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "subject-{subject} out of order: {ns:?}"
        );
    }
    stopper.fire();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_ends_in_the_dead_letter_queue_and_replays_once() {
    let rig = Rig::new(&broker(), Engine::Sqlite, "dlq").await;
    scenario_dead_letter_and_replay(rig.bus.clone(), &rig.producer, &rig.consumer).await;
}
