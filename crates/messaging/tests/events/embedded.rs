//! On the embedded bus: the same guarantees without a broker.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use emporium_messaging::Bus;
use emporium_messaging::embedded::EmbeddedBus;

use crate::harness::{
    Consumer, Producer, WAIT, crash_after_commit, eventually, listen,
    scenario_dead_letter_and_replay, scenario_outbox_atomicity, spawn_relay,
};

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

/// A bus on a file of its own, removed when the file is dropped.
async fn embedded_bus() -> (BusFile, Arc<dyn Bus>) {
    let file = BusFile::new();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&file.0).await.unwrap());
    (file, bus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_publishes_committed_changes_exactly_once() {
    let (_file, bus) = embedded_bus().await;
    let consumer = Consumer::sqlite("atomic").await;
    scenario_outbox_atomicity(bus, &Producer::sqlite().await, &consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_before_finishing_is_deduplicated_on_redelivery() {
    let (file, bus) = embedded_bus().await;
    let producer = Producer::sqlite().await;
    let consumer = Consumer::sqlite("crash").await;
    let (event, _stoppers) = crash_after_commit(&bus, &producer, &consumer, 5).await;

    // The process restarts: a new bus on the same file, a new dispatcher.
    let bus2 = EmbeddedBus::open(&file.0).await.unwrap();
    let _second_life = listen(&bus2, &consumer).await;
    eventually("the redelivery is recognised", WAIT, || async {
        consumer.recognised_duplicates() == 1
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
        let stopper = listen(&bus, &consumer).await;
        for n in 0..50 {
            producer.make(n, true).await;
        }
        stopper.fire();
    }
    assert_eq!(producer.unpublished().await, 50);
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&file.0).await.unwrap());
    let stopper = listen(bus.as_ref(), &consumer).await;
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    eventually("all 50 arrive after the restart", WAIT, || async {
        consumer.effects().await == 50
    })
    .await;
    assert_eq!(consumer.max_deliveries_of_one_event(), 1);
    assert_eq!(producer.unpublished().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_ends_dead_and_replays_once() {
    let (_file, bus) = embedded_bus().await;
    let consumer = Consumer::postgres("dlq").await;
    scenario_dead_letter_and_replay(bus, &Producer::postgres().await, &consumer).await;
}
