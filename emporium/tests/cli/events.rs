//! Events as an operator meets them: published by `serve accounts` to
//! RabbitMQ, and dead letters handled with `emporium events dlq`.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_contracts::Event;
use emporium_contracts::accounts::UserRegistered;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
use emporium_messaging::{
    Bus, Envelope, EventHandler, HandlerError, OutgoingEvent, RetryPolicy, Subscription,
};
use tokio::sync::watch;

use crate::TempDir;
use crate::process::Proc;

const CONSUMER: &str = "cli-test-listener";

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(50),
    }
}

#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Vec<Envelope>>,
    fail: Mutex<bool>,
}

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        if *self.fail.lock().unwrap() {
            return Err(HandlerError("the listener is broken".into()));
        }
        self.seen.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Recorder {
    pub async fn wait_for_email(&self, email: &str, timeout: Duration) -> Envelope {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|e| e.data["email"] == email)
            {
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no registration of {email} arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn subscription(recorder: Arc<Recorder>) -> Subscription {
    Subscription {
        consumer: CONSUMER.into(),
        event_types: vec![UserRegistered::TYPE.into()],
        handler: recorder,
        retry: retry(),
        prefetch: 8,
    }
}

fn rabbit(exchange: &str) -> RabbitBus {
    let mut settings = RabbitSettings::new("amqp://guest:guest@127.0.0.1:5672/%2f");
    settings.exchange = exchange.to_owned();
    settings.queue_prefix = format!("{exchange}.");
    RabbitBus::new(settings)
}

pub async fn listen_on_rabbitmq(exchange: &str) -> (Arc<Recorder>, watch::Sender<bool>) {
    let recorder = Arc::new(Recorder::default());
    let (tx, mut rx) = watch::channel(false);
    rabbit(exchange)
        .subscribe(
            subscription(recorder.clone()),
            Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
        )
        .await
        .unwrap();
    (recorder, tx)
}

pub async fn forget_rabbitmq(exchange: &str) {
    let bus = rabbit(exchange);
    bus.delete_queues(CONSUMER, retry()).await.unwrap();
    bus.delete_exchange().await.unwrap();
}

fn cli(dir: &TempDir, args: &[&str]) -> Vec<String> {
    let data = dir.0.to_str().unwrap();
    let mut full = vec!["events", "--data-dir", data, "dlq"];
    full.extend_from_slice(args);
    let mut p = Proc::spawn(&full, &[]);
    assert!(
        p.wait_exit(Duration::from_secs(30)),
        "emporium {full:?} failed"
    );
    p.output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_listed_shown_replayed_and_purged() {
    let dir = TempDir::new("dlq");
    let bus = EmbeddedBus::open(&dir.0.join("bus.db")).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    *recorder.fail.lock().unwrap() = true;
    let (stop, mut rx) = watch::channel(false);
    bus.subscribe(
        subscription(recorder.clone()),
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        }),
    )
    .await
    .unwrap();
    let envelope = Envelope::new(
        &UserRegistered {
            user_id: uuid::Uuid::now_v7(),
            email: "dlq@example.com".into(),
            name: "D".into(),
        },
        None,
        None,
    );
    let id = envelope.id.to_string();
    bus.publish(&[OutgoingEvent {
        id: envelope.id,
        event_type: envelope.event_type.clone(),
        envelope: envelope.to_json(),
    }])
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while bus.dead_letters(CONSUMER).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the event was never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let listed = cli(&dir, &["list", "--consumer", CONSUMER]);
    let line = listed
        .iter()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert!(
        line.contains("2 attempts") && line.contains("the listener is broken"),
        "{line}"
    );
    let shown = cli(&dir, &["show", "--consumer", CONSUMER, "--id", &id]).join("\n");
    assert!(shown.contains("dlq@example.com"), "{shown}");

    *recorder.fail.lock().unwrap() = false;
    let replayed = cli(&dir, &["replay", "--consumer", CONSUMER, "--id", &id]);
    assert!(
        replayed.iter().any(|l| l.contains("replayed 1 event")),
        "{replayed:?}"
    );
    recorder
        .wait_for_email("dlq@example.com", Duration::from_secs(20))
        .await;
    assert_eq!(recorder.seen.lock().unwrap().len(), 1, "delivered once");
    let purged = cli(&dir, &["purge", "--consumer", CONSUMER]);
    assert!(purged.iter().any(|l| l.contains("purged 0")), "{purged:?}");
    let _ = stop.send(true);
}
