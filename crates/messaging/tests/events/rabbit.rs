//! On RabbitMQ (127.0.0.1:5672, or EMPORIUM_TEST_AMQP_URL). These fail, never
//! skip, when the broker is unreachable.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use emporium_messaging::Bus;
use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
use uuid::Uuid;

use crate::harness::{
    Behaviour, Consumer, Producer, Stopper, WAIT, eventually, quick_retry,
    scenario_dead_letter_and_replay, scenario_outbox_atomicity, spawn_relay,
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
    let mut settings = RabbitSettings::new(url);
    settings.exchange = exchange.to_owned();
    settings.queue_prefix = "emporium-test.".into();
    RabbitBus::new(settings)
}

fn exchange() -> String {
    format!("emporium-test.events.{}", Uuid::now_v7().simple())
}

async fn cleanup(exchange: &str, consumer: &str, retry: emporium_messaging::RetryPolicy) {
    let bus = bus_at(&broker(), exchange);
    bus.delete_queues(consumer, retry).await.unwrap();
    bus.delete_exchange().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_publishes_committed_changes_exactly_once() {
    let ex = exchange();
    let consumer = Consumer::postgres("atomic").await;
    let producer = Producer::postgres().await;
    scenario_outbox_atomicity(Arc::new(bus_at(&broker(), &ex)), &producer, &consumer).await;
    cleanup(&ex, &consumer.name, quick_retry(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing_and_applies_nothing_twice() {
    let proxy = Proxy::start(&broker_addr()).await;
    let ex = exchange();
    let bus: Arc<dyn Bus> = Arc::new(bus_at(&proxy.url(), &ex));
    let producer = Producer::sqlite().await;
    let consumer = Consumer::sqlite("outage").await;
    let stopper = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
        .await
        .unwrap();
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);

    let total = 300u64;
    for n in 0..total {
        producer.make(n, true).await;
        if n == 100 {
            eventually("some events arrived before the cut", WAIT, || async {
                consumer.effects().await > 0
            })
            .await;
            proxy.cut();
        }
        if n == 200 {
            // The outage is real: what was produced since the cut cannot leave the outbox.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                producer.unpublished().await >= 50,
                "the relay published through a cut link"
            );
            let seen = consumer.effects().await;
            assert!(
                seen < 200,
                "the consumer received through a cut link ({seen})"
            );
            proxy.restore();
        }
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    eventually(
        "every event is applied after the outage",
        Duration::from_secs(60),
        || async { consumer.effects().await == total as i64 },
    )
    .await;
    eventually("the outbox is drained", WAIT, || async {
        producer.unpublished().await == 0
    })
    .await;
    // Redeliveries may have happened (that is at-least-once), but each event was applied once.
    assert_eq!(consumer.effects().await, total as i64);
    stopper.fire();
    cleanup(&ex, &consumer.name, quick_retry(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_before_its_ack_is_deduplicated_on_redelivery() {
    let ex = exchange();
    let bus: Arc<dyn Bus> = Arc::new(bus_at(&broker(), &ex));
    let producer = Producer::postgres().await;
    let consumer = Consumer::postgres("crash").await;
    consumer.set(Behaviour::HangAfterCommit);
    let first_life = Stopper::new();
    let task = bus
        .subscribe(consumer.subscription(quick_retry(3)), first_life.stop())
        .await
        .unwrap();
    let relay_stop = Stopper::new();
    spawn_relay(producer.outbox.clone(), bus.clone(), &relay_stop);
    let event = producer.make(7, true).await;

    tokio::time::timeout(WAIT, consumer.applied_signal.notified())
        .await
        .expect("the effect committed");
    // The process dies: its connection goes away with the delivery unacked.
    task.abort();
    let _ = task.await;
    consumer.set(Behaviour::Apply);
    let second_life = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), second_life.stop())
        .await
        .unwrap();

    eventually("the event is redelivered", WAIT, || async {
        consumer.delivered(event.id) == 2
    })
    .await;
    eventually("the redelivery is recognised", WAIT, || async {
        consumer
            .duplicates
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    assert_eq!(consumer.effects().await, 1, "applied once");
    cleanup(&ex, &consumer.name, quick_retry(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_ends_in_the_dead_letter_queue_and_replays_once() {
    let ex = exchange();
    let consumer = Consumer::sqlite("dlq").await;
    let producer = Producer::sqlite().await;
    scenario_dead_letter_and_replay(Arc::new(bus_at(&broker(), &ex)), &producer, &consumer).await;
    cleanup(&ex, &consumer.name, quick_retry(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_outbox_publish_each_event_once() {
    let ex = exchange();
    let bus: Arc<dyn Bus> = Arc::new(bus_at(&broker(), &ex));
    let producer = Producer::postgres().await;
    let consumer = Consumer::postgres("relays").await;
    let stopper = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
        .await
        .unwrap();
    // A second replica's relay: its own bus connection, the same outbox table.
    let other: Arc<dyn Bus> = Arc::new(bus_at(&broker(), &ex));
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    spawn_relay(producer.outbox.clone(), other, &stopper);

    let total = 400u64;
    for n in 0..total {
        producer.make(n, true).await;
    }
    eventually(
        "every event is applied",
        Duration::from_secs(60),
        || async { consumer.effects().await == total as i64 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        consumer.max_deliveries_of_one_event(),
        1,
        "no event was published twice"
    );
    assert_eq!(
        consumer
            .duplicates
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    stopper.fire();
    cleanup(&ex, &consumer.name, quick_retry(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_about_one_subject_are_applied_in_order() {
    let ex = exchange();
    let bus: Arc<dyn Bus> = Arc::new(bus_at(&broker(), &ex));
    let producer = Producer::postgres().await;
    let consumer = Consumer::postgres("order").await;
    let stopper = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
        .await
        .unwrap();
    let total = 400u64;
    for n in 0..total {
        producer
            .make_about(n, &format!("subject-{}", n % 5), true)
            .await;
    }
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    eventually(
        "every event is applied",
        Duration::from_secs(60),
        || async { consumer.effects().await == total as i64 },
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
    cleanup(&ex, &consumer.name, quick_retry(3)).await;
}
