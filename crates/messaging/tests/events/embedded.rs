//! On the embedded bus: the same guarantees without a broker.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use emporium_messaging::Bus;
use emporium_messaging::embedded::EmbeddedBus;

use crate::harness::{
    Behaviour, Consumer, Producer, Stopper, eventually, quick_retry, spawn_relay,
};

const WAIT: Duration = Duration::from_secs(30);

struct BusFile(std::path::PathBuf);
impl BusFile {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("emporium-bus-{}.db", uuid::Uuid::now_v7())))
    }
}
impl Drop for BusFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_publishes_committed_changes_exactly_once() {
    let file = BusFile::new();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&file.0).await.unwrap());
    let producer = Producer::sqlite().await;
    let consumer = Consumer::sqlite("atomic").await;
    let stopper = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
        .await
        .unwrap();
    let rolled_back = producer.make(1, false).await;
    let committed = producer.make(2, true).await;
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    eventually("the committed event is applied", WAIT, || async {
        consumer.effects().await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(consumer.delivered(committed.id), 1);
    assert_eq!(consumer.delivered(rolled_back.id), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_ends_dead_and_replays_once() {
    let file = BusFile::new();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&file.0).await.unwrap());
    let producer = Producer::postgres().await;
    let consumer = Consumer::postgres("dlq").await;
    consumer.set(Behaviour::Fail);
    let stopper = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
        .await
        .unwrap();
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    let event = producer.make(3, true).await;
    eventually("three attempts", WAIT, || async {
        consumer.delivered(event.id) == 3
    })
    .await;
    eventually("a dead letter", WAIT, || async {
        bus.dead_letters(&consumer.name).await.unwrap().len() == 1
    })
    .await;
    let letter = &bus.dead_letters(&consumer.name).await.unwrap()[0];
    assert_eq!(letter.id, event.id);
    assert_eq!(letter.attempts, 3);
    assert!(letter.last_error.contains("store offline"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        consumer.delivered(event.id),
        3,
        "a dead letter is not retried"
    );

    consumer.set(Behaviour::Apply);
    assert_eq!(bus.replay(&consumer.name, None).await.unwrap(), 1);
    eventually("the replayed event is applied", WAIT, || async {
        consumer.effects().await == 1
    })
    .await;
    assert_eq!(consumer.delivered(event.id), 4);
    assert!(bus.dead_letters(&consumer.name).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_before_finishing_is_deduplicated_on_redelivery() {
    let file = BusFile::new();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&file.0).await.unwrap());
    let producer = Producer::sqlite().await;
    let consumer = Consumer::sqlite("crash").await;
    consumer.set(Behaviour::HangAfterCommit);
    let first_life = Stopper::new();
    let task = bus
        .subscribe(consumer.subscription(quick_retry(3)), first_life.stop())
        .await
        .unwrap();
    let relay_stop = Stopper::new();
    spawn_relay(producer.outbox.clone(), bus.clone(), &relay_stop);
    let event = producer.make(5, true).await;
    tokio::time::timeout(WAIT, consumer.applied_signal.notified())
        .await
        .expect("the effect committed");
    task.abort();
    let _ = task.await;

    // The process restarts: a new bus on the same file, a new dispatcher.
    consumer.set(Behaviour::Apply);
    let bus2: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&file.0).await.unwrap());
    let second_life = Stopper::new();
    bus2.subscribe(consumer.subscription(quick_retry(3)), second_life.stop())
        .await
        .unwrap();
    eventually("the redelivery is recognised", WAIT, || async {
        consumer
            .duplicates
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    assert_eq!(consumer.delivered(event.id), 2);
    assert_eq!(consumer.effects().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_unpublished_rows_delivers_them() {
    let file = BusFile::new();
    let producer = Producer::sqlite().await;
    let consumer = Consumer::sqlite("restart").await;
    {
        // First life: the consumer subscribes, events are written, the process
        // stops before its relay ever ran.
        let bus = EmbeddedBus::open(&file.0).await.unwrap();
        let stopper = Stopper::new();
        bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
            .await
            .unwrap();
        for n in 0..50 {
            producer.make(n, true).await;
        }
        stopper.fire();
    }
    assert_eq!(producer.unpublished().await, 50);
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&file.0).await.unwrap());
    let stopper = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
        .await
        .unwrap();
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    eventually("all 50 arrive after the restart", WAIT, || async {
        consumer.effects().await == 50
    })
    .await;
    assert_eq!(consumer.max_deliveries_of_one_event(), 1);
    assert_eq!(producer.unpublished().await, 0);
}
