//! Events as an operator meets them: published by `serve accounts` to
//! RabbitMQ, and dead letters handled with `emporium events dlq`, on the
//! embedded bus of `emporium up` and on RabbitMQ.
//!
//! RabbitMQ is at 127.0.0.1:5672 unless EMPORIUM_TEST_AMQP_URL says otherwise;
//! these tests fail, never skip, when it is unreachable.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_contracts::Event;
use emporium_contracts::accounts::UserRegistered;
use emporium_messaging::bus::Stop;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
use emporium_messaging::{
    Bus, Envelope, EventHandler, HandlerError, OutgoingEvent, RetryPolicy, Subscription,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::TempDir;
use crate::process::Proc;

const CONSUMER: &str = "cli-test-listener";

/// The broker the tests use.
pub fn amqp_url() -> String {
    std::env::var("EMPORIUM_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(50),
    }
}

#[derive(Default)]
pub struct Recorder {
    /// Events handled successfully.
    seen: Mutex<Vec<Envelope>>,
    /// Every call of the handler, failed or not: the event's id.
    attempts: Mutex<Vec<Uuid>>,
    fail: Mutex<bool>,
}

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.attempts.lock().unwrap().push(event.id);
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

    /// Waits until every one of `ids` has been attempted `times` times.
    async fn wait_for_attempts(&self, ids: &[Uuid], times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let attempts = self.attempts.lock().unwrap().clone();
            let count = |id: &Uuid| attempts.iter().filter(|a| *a == id).count();
            if ids.iter().all(|id| count(id) >= times) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not every event was attempted {times} times: {attempts:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn seen_ids(&self) -> Vec<Uuid> {
        self.seen.lock().unwrap().iter().map(|e| e.id).collect()
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

fn rabbit_settings(exchange: &str) -> RabbitSettings {
    let mut settings = RabbitSettings::new(amqp_url());
    settings.exchange = exchange.to_owned();
    settings.queue_prefix = format!("{exchange}.");
    settings
}

pub async fn listen_on_rabbitmq(exchange: &str) -> (Arc<Recorder>, watch::Sender<bool>) {
    let recorder = Arc::new(Recorder::default());
    let (tx, stop) = stop_signal();
    RabbitBus::new(rabbit_settings(exchange))
        .subscribe(subscription(recorder.clone()), stop)
        .await
        .unwrap();
    (recorder, tx)
}

/// What stops a subscription once `true` is sent on the sender.
fn stop_signal() -> (watch::Sender<bool>, Stop) {
    let (tx, mut rx) = watch::channel(false);
    let stop: Stop = Box::pin(async move {
        let _ = rx.wait_for(|s| *s).await;
    });
    (tx, stop)
}

/// Publishes these events on `bus`.
async fn publish(bus: &dyn Bus, envelopes: &[Envelope]) {
    bus.publish(&outgoing(envelopes)).await.unwrap();
}

/// Waits until `consumer` has `n` dead letters on `bus` (at least), looking
/// every `poll`, for twenty seconds at the most.
async fn wait_for_dead_letters(bus: &dyn Bus, consumer: &str, n: usize, poll: Duration) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while bus.dead_letters(consumer).await.unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "{n} event(s) were never dead-lettered"
        );
        tokio::time::sleep(poll).await;
    }
}

/// After a purge: an event published next arrives, and of all events only
/// `applied` and it were ever handled (anything the purge sent back would
/// have come first).
async fn nothing_purged_comes_back(bus: &dyn Bus, recorder: &Recorder, applied: Uuid) {
    let after = registration("after-purge@example.com");
    publish(bus, std::slice::from_ref(&after)).await;
    recorder
        .wait_for_email("after-purge@example.com", Duration::from_secs(20))
        .await;
    assert_eq!(
        recorder.seen_ids(),
        vec![applied, after.id],
        "purged, not applied"
    );
}

/// The ids of the letters a `list` printed, sorted.
fn listed_ids(output: &[String]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = listed(output).into_iter().map(|(id, _)| id).collect();
    ids.sort();
    ids
}

/// Deletes a consumer's queues and the exchange when dropped: after a failed
/// test too. Declare it before whatever consumes (listeners, processes), so
/// those are stopped first.
pub struct RabbitCleanup {
    settings: RabbitSettings,
    consumer: String,
    retry: RetryPolicy,
}

impl RabbitCleanup {
    /// For the listener of [`listen_on_rabbitmq`] on `exchange`.
    pub fn listener(exchange: &str) -> Self {
        Self {
            settings: rabbit_settings(exchange),
            consumer: CONSUMER.to_owned(),
            retry: retry(),
        }
    }
}

impl Drop for RabbitCleanup {
    fn drop(&mut self) {
        let (settings, consumer) = (self.settings.clone(), self.consumer.clone());
        RabbitBus::remove_blocking(settings, consumer, self.retry);
    }
}

/// Runs `emporium events <args>` to a successful end and returns what it
/// printed, once `complete` holds for it: the output is read by threads (one
/// per stream), so the last lines may still be on their way at the exit.
fn events_cli(
    args: &[&str],
    env: &[(&str, &str)],
    complete: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut full = vec!["events"];
    full.extend_from_slice(args);
    let mut p = Proc::spawn(&full, env);
    assert!(
        p.wait_exit(Duration::from_secs(30)),
        "emporium {full:?} failed"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !complete(p.output().as_slice()) {
        assert!(
            Instant::now() < deadline,
            "emporium {full:?} printed less than expected: {:?}",
            p.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.output()
}

/// Asserts a line of `output` holds `text`.
fn assert_said(output: &[String], text: &str) {
    assert!(output.iter().any(|l| l.contains(text)), "{output:?}");
}

/// Output complete once a line holds `marker`.
fn printed(marker: &str) -> impl Fn(&[String]) -> bool + '_ {
    move |output: &[String]| output.iter().any(|l| l.contains(marker))
}

/// A `list`'s output is complete with its closing count and that many letters.
fn list_complete(output: &[String]) -> bool {
    output
        .iter()
        .find_map(|l| {
            l.split_once(" dead letter(s) for ")
                .and_then(|(n, _)| n.trim().parse::<usize>().ok())
        })
        .is_some_and(|n| listed(output).len() == n)
}

/// On the embedded bus under a data directory.
fn cli(dir: &TempDir, args: &[&str], complete: impl Fn(&[String]) -> bool) -> Vec<String> {
    let data = dir.0.to_str().unwrap();
    let mut full = vec!["--data-dir", data, "dlq"];
    full.extend_from_slice(args);
    events_cli(&full, &[], complete)
}

/// The letters a `list` printed: (id, the rest of the line).
fn listed(output: &[String]) -> Vec<(Uuid, String)> {
    output
        .iter()
        .filter_map(|l| {
            let (id, rest) = l.split_once('\t')?;
            Some((Uuid::parse_str(id).ok()?, rest.to_owned()))
        })
        .collect()
}

fn registration(email: &str) -> Envelope {
    Envelope::new(
        &UserRegistered {
            user_id: Uuid::now_v7(),
            email: email.into(),
            name: "D".into(),
        },
        None,
        None,
    )
}

fn outgoing(envelopes: &[Envelope]) -> Vec<OutgoingEvent> {
    envelopes
        .iter()
        .map(|e| OutgoingEvent {
            id: e.id,
            event_type: e.event_type.clone(),
            envelope: e.to_json(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_listed_shown_replayed_and_purged() {
    let dir = TempDir::new("dlq");
    let bus = EmbeddedBus::open(&dir.0.join("bus.db")).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    *recorder.fail.lock().unwrap() = true;
    let (stop, stopped) = stop_signal();
    bus.subscribe(subscription(recorder.clone()), stopped)
        .await
        .unwrap();
    let envelope = registration("dlq@example.com");
    let id = envelope.id.to_string();
    publish(&bus, std::slice::from_ref(&envelope)).await;
    wait_for_dead_letters(&bus, CONSUMER, 1, Duration::from_millis(50)).await;

    let list = cli(&dir, &["list", "--consumer", CONSUMER], list_complete);
    let line = list
        .iter()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{list:?}"));
    assert!(
        line.contains("2 attempts") && line.contains("the listener is broken"),
        "{line}"
    );
    let shown = cli(
        &dir,
        &["show", "--consumer", CONSUMER, "--id", &id],
        printed("dlq@example.com"),
    )
    .join("\n");
    assert!(shown.contains("dlq@example.com"), "{shown}");

    *recorder.fail.lock().unwrap() = false;
    let replayed = cli(
        &dir,
        &["replay", "--consumer", CONSUMER, "--id", &id],
        printed("replayed"),
    );
    assert_said(&replayed, "replayed 1 event");
    recorder
        .wait_for_email("dlq@example.com", Duration::from_secs(20))
        .await;
    assert_eq!(recorder.seen.lock().unwrap().len(), 1, "delivered once");
    let purged = cli(&dir, &["purge", "--consumer", CONSUMER], printed("purged"));
    assert_said(&purged, "purged 0");

    // Purging a queue that holds letters drops exactly those.
    *recorder.fail.lock().unwrap() = true;
    let doomed = [
        registration("doomed-1@example.com"),
        registration("doomed-2@example.com"),
    ];
    publish(&bus, &doomed).await;
    wait_for_dead_letters(&bus, CONSUMER, doomed.len(), Duration::from_millis(50)).await;
    // Mended first: a purge that sent the letters back would get them applied.
    *recorder.fail.lock().unwrap() = false;
    let purged = cli(&dir, &["purge", "--consumer", CONSUMER], printed("purged"));
    assert_said(&purged, &format!("purged {} dead letter(s)", doomed.len()));
    let list = cli(&dir, &["list", "--consumer", CONSUMER], list_complete);
    assert!(listed(&list).is_empty(), "{list:?}");
    assert!(bus.dead_letters(CONSUMER).await.unwrap().is_empty());
    nothing_purged_comes_back(&bus, &recorder, envelope.id).await;
    // A misspelt consumer is not "no dead letters"; its name is shown escaped.
    let data = dir.0.to_str().unwrap();
    let mut typo = Proc::spawn(
        &[
            "events",
            "--data-dir",
            data,
            "dlq",
            "purge",
            "--consumer",
            "orders.paymnts\u{1b}[2J",
        ],
        &[],
    );
    typo.assert_fails_saying("no consumer \"orders.paymnts\\u{1b}[2J\" on this bus");
    let _ = stop.send(true);
}

/// On RabbitMQ: three dead letters; one replayed by its id reaches the
/// (mended) consumer while the other two stay parked; purging drops exactly
/// those two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_on_rabbitmq_are_replayed_by_id_and_purged() {
    let unique = Uuid::now_v7().simple().to_string();
    let exchange = format!("emporium-test.events.{unique}");
    // The command line names a consumer's queues with the default prefix,
    // so the consumer's own name is what keeps this test's queues apart.
    let consumer = format!("cli-dlq-{unique}");
    let mut settings = RabbitSettings::new(amqp_url());
    settings.exchange = exchange.clone();
    let _cleanup = RabbitCleanup {
        settings: settings.clone(),
        consumer: consumer.clone(),
        retry: retry(),
    };
    let bus = RabbitBus::new(settings);
    let recorder = Arc::new(Recorder::default());
    *recorder.fail.lock().unwrap() = true;
    let (stop, stopped) = stop_signal();
    bus.subscribe(
        Subscription {
            consumer: consumer.clone(),
            ..subscription(recorder.clone())
        },
        stopped,
    )
    .await
    .unwrap();

    let letters = [
        registration("replayed@example.com"),
        registration("parked-1@example.com"),
        registration("parked-2@example.com"),
    ];
    publish(&bus, &letters).await;
    let ids: Vec<Uuid> = letters.iter().map(|e| e.id).collect();
    recorder
        .wait_for_attempts(&ids, 2, Duration::from_secs(30))
        .await;
    // Each look at a RabbitMQ dead-letter queue takes and returns its
    // messages, so look seldom.
    wait_for_dead_letters(&bus, &consumer, letters.len(), Duration::from_millis(250)).await;

    let url = amqp_url();
    let env = [
        ("EMPORIUM_EVENTS_AMQP_URL", url.as_str()),
        ("EMPORIUM_EVENTS_EXCHANGE", exchange.as_str()),
    ];
    let list_letters = || {
        events_cli(
            &["dlq", "list", "--consumer", &consumer],
            &env,
            list_complete,
        )
    };
    let list = list_letters();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(listed_ids(&list), all, "{list:?}");
    assert!(
        listed(&list)
            .iter()
            .all(|(_, rest)| rest.contains("2 attempts") && rest.contains("the listener is broken")),
        "{list:?}"
    );

    // Mended; one letter replayed by its id.
    *recorder.fail.lock().unwrap() = false;
    let first = ids[0].to_string();
    let replayed = events_cli(
        &["dlq", "replay", "--consumer", &consumer, "--id", &first],
        &env,
        printed("replayed"),
    );
    assert_said(&replayed, &format!("replayed 1 event(s) to {consumer}"));
    recorder
        .wait_for_email("replayed@example.com", Duration::from_secs(20))
        .await;
    let list = list_letters();
    let mut others = ids[1..].to_vec();
    others.sort();
    assert_eq!(
        listed_ids(&list),
        others,
        "only the one letter left: {list:?}"
    );
    assert_eq!(
        recorder.seen_ids(),
        vec![ids[0]],
        "only the replayed one was applied"
    );
    // Its letter is gone: replaying it again finds nothing.
    let mut again = Proc::spawn(
        &[
            "events",
            "dlq",
            "replay",
            "--consumer",
            &consumer,
            "--id",
            &first,
        ],
        &env,
    );
    again.assert_fails_saying(&format!("no dead letter {first} for {consumer}"));
    let mut typo = Proc::spawn(
        &[
            "events",
            "dlq",
            "list",
            "--consumer",
            &format!("{consumer}-typo"),
        ],
        &env,
    );
    typo.assert_fails_saying(&format!("no consumer \"{consumer}-typo\" on this bus"));

    let purged = events_cli(
        &["dlq", "purge", "--consumer", &consumer],
        &env,
        printed("purged"),
    );
    assert_said(&purged, &format!("purged 2 dead letter(s) of {consumer}"));
    let list = list_letters();
    assert!(listed(&list).is_empty(), "{list:?}");
    assert!(bus.dead_letters(&consumer).await.unwrap().is_empty());
    nothing_purged_comes_back(&bus, &recorder, ids[0]).await;
    let _ = stop.send(true);
}
