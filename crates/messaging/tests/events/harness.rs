#![allow(clippy::unwrap_used, dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_contracts::Event;
use emporium_db::testing::TestDatabase;
use emporium_db::{Db, Engine};
use emporium_messaging::outbox::{Outbox, Relay, RelaySettings, RelayWaker};
use emporium_messaging::{
    Bus, Envelope, EventHandler, HandlerError, RetryPolicy, Subscription, inbox, outbox,
};
use serde::{Deserialize, Serialize};

use tokio::sync::watch;
use uuid::Uuid;

/// The event the tests publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThingMade {
    pub n: u64,
}

impl Event for ThingMade {
    const TYPE: &'static str = "emporium.test.thing.made.v1";
    const SOURCE: &'static str = "/emporium/test";
}

/// A producing service's database: a `things` table and the outbox.
pub struct Producer {
    pub outbox: Outbox,
    _db: TestDatabase,
}

/// A fresh database on `engine` (4 connections on SQLite, 8 on PostgreSQL)
/// with the outbox and inbox tables, and the table the statement for that
/// engine creates.
async fn fresh_db(
    engine: Engine,
    sqlite_table: &'static str,
    postgres_table: &'static str,
) -> (Db, TestDatabase) {
    let (file, connections) = match engine {
        Engine::Sqlite => (TestDatabase::sqlite(), 4),
        Engine::Postgres => (TestDatabase::postgres().await.unwrap(), 8),
    };
    let db = Db::connect(&file.url, connections).await.unwrap();
    match &db {
        Db::Sqlite(pool) => {
            emporium_messaging::migrations::run_sqlite(pool)
                .await
                .unwrap();
            sqlx::query(sqlite_table).execute(pool).await.unwrap();
        }
        Db::Postgres(pool) => {
            emporium_messaging::migrations::run_postgres(pool)
                .await
                .unwrap();
            sqlx::query(postgres_table).execute(pool).await.unwrap();
        }
    }
    (db, file)
}

impl Producer {
    pub async fn sqlite() -> Self {
        Self::on(Engine::Sqlite).await
    }

    pub async fn postgres() -> Self {
        Self::on(Engine::Postgres).await
    }

    pub async fn on(engine: Engine) -> Self {
        let (db, file) = fresh_db(
            engine,
            "CREATE TABLE things (n INTEGER PRIMARY KEY)",
            "CREATE TABLE things (n BIGINT PRIMARY KEY)",
        )
        .await;
        Self {
            outbox: Outbox(db),
            _db: file,
        }
    }

    /// Makes thing `n` and its event in one transaction; commits or rolls back.
    pub async fn make(&self, n: u64, commit: bool) -> Envelope {
        self.make_about(n, &format!("thing-{n}"), commit).await
    }

    /// As `make`, with the event about `subject`.
    pub async fn make_about(&self, n: u64, subject: &str, commit: bool) -> Envelope {
        let env = Envelope::new(&ThingMade { n }, Some(subject.to_owned()), None);
        let mut tx = self.outbox.0.begin_write().await.unwrap();
        let sql = "INSERT INTO things (n) VALUES ($1)";
        tx.sql().execute(sql, (n as i64,)).await.unwrap();
        outbox::enqueue_in(&mut tx, std::slice::from_ref(&env))
            .await
            .unwrap();
        if commit {
            tx.commit().await.unwrap()
        } else {
            tx.rollback().await.unwrap()
        }
        env
    }

    pub async fn unpublished(&self) -> i64 {
        self.outbox.backlog().await.unwrap().0
    }
}

/// Stops background tasks when dropped or fired.
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    pub fn new() -> Self {
        Self(watch::channel(false).0)
    }
    pub fn stop(&self) -> emporium_messaging::bus::Stop {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
    }
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.fire();
    }
}

pub fn spawn_relay(
    outbox: Outbox,
    bus: Arc<dyn Bus>,
    stopper: &Stopper,
) -> tokio::task::JoinHandle<()> {
    let relay = Relay {
        outbox,
        bus,
        settings: RelaySettings {
            batch: 50,
            poll: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
        },
        waker: RelayWaker::default(),
        service: "test",
    };
    tokio::spawn(relay.run(stopper.stop()))
}

/// What a consumer does with an event before it commits its effect.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Apply,
    /// Fail every time.
    Fail,
    /// Commit the effect, then hang before returning (as a process dying before its ack).
    HangAfterCommit,
}

pub struct Consumer {
    pub name: String,
    db: Db,
    _file: TestDatabase,
    pub behaviour: Mutex<Behaviour>,
    /// Every call of the handler, per event id (raw deliveries).
    pub deliveries: Mutex<HashMap<Uuid, usize>>,
    pub duplicates: AtomicUsize,
    /// Deliveries the inbox recognised as already handled, per event id.
    pub recognised: Mutex<HashMap<Uuid, usize>>,
    /// Handler calls that returned an error, per event id.
    pub failures: Mutex<HashMap<Uuid, usize>>,
    pub applied_signal: tokio::sync::Notify,
    /// (subject, n) in the order effects were applied.
    pub applied: Mutex<Vec<(String, u64)>>,
}

impl Consumer {
    pub async fn sqlite(name: &str) -> Arc<Self> {
        Self::on(Engine::Sqlite, name).await
    }

    pub async fn postgres(name: &str) -> Arc<Self> {
        Self::on(Engine::Postgres, name).await
    }

    pub async fn on(engine: Engine, name: &str) -> Arc<Self> {
        let (db, file) = fresh_db(
            engine,
            "CREATE TABLE effects (event_id BLOB PRIMARY KEY, n INTEGER NOT NULL)",
            "CREATE TABLE effects (event_id UUID PRIMARY KEY, n BIGINT NOT NULL)",
        )
        .await;
        Arc::new(Self {
            name: format!("{name}-{}", Uuid::now_v7().simple()),
            db,
            _file: file,
            behaviour: Mutex::new(Behaviour::Apply),
            deliveries: Mutex::new(HashMap::new()),
            duplicates: AtomicUsize::new(0),
            recognised: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            applied_signal: tokio::sync::Notify::new(),
            applied: Mutex::new(Vec::new()),
        })
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub fn subscription(self: &Arc<Self>, retry: RetryPolicy) -> Subscription {
        Subscription {
            consumer: self.name.clone(),
            event_types: vec![ThingMade::TYPE.to_owned()],
            handler: Arc::new(Handler(self.clone())),
            retry,
            prefetch: 32,
        }
    }

    pub async fn effects(&self) -> i64 {
        emporium_db::on_db!(&self.db, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM effects"
        )
        .fetch_one(p)
        .await
        .unwrap())
    }

    pub fn max_deliveries_of_one_event(&self) -> usize {
        self.deliveries
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    pub fn delivered(&self, id: Uuid) -> usize {
        self.deliveries
            .lock()
            .unwrap()
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    /// Every event delivered more than once: (id, deliveries, deliveries the
    /// inbox recognised as duplicates).
    pub fn redelivered(&self) -> Vec<(Uuid, usize, usize)> {
        let recognised = self.recognised.lock().unwrap().clone();
        self.deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (*id, *n, recognised.get(id).copied().unwrap_or(0)))
            .collect()
    }

    /// Deliveries the inbox recognised as already handled, all events together.
    pub fn recognised_duplicates(&self) -> usize {
        self.duplicates.load(Ordering::SeqCst)
    }

    /// Handler calls that failed, all events together.
    pub fn failed_calls(&self) -> usize {
        self.failures.lock().unwrap().values().sum()
    }
}

pub struct Handler(pub Arc<Consumer>);

#[async_trait::async_trait]
impl EventHandler for Handler {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let c = &self.0;
        *c.deliveries.lock().unwrap().entry(event.id).or_default() += 1;
        let outcome = self.apply(event).await;
        if outcome.is_err() {
            *c.failures.lock().unwrap().entry(event.id).or_default() += 1;
        }
        outcome
    }
}

impl Handler {
    async fn apply(&self, event: &Envelope) -> Result<(), HandlerError> {
        let c = &self.0;
        let behaviour = *c.behaviour.lock().unwrap();
        if behaviour == Behaviour::Fail {
            return Err(HandlerError(format!(
                "cannot apply thing: store offline (event {})",
                event.id
            )));
        }
        let thing: ThingMade = event.decode().map_err(HandlerError::new)?;
        macro_rules! apply {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(HandlerError::new)?;
                let fresh = inbox::first_delivery(&mut tx, &c.name, event.id)
                    .await
                    .map_err(HandlerError::new)?;
                if fresh {
                    sqlx::query("INSERT INTO effects (event_id, n) VALUES ($1, $2)")
                        .bind(event.id)
                        .bind(thing.n as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(HandlerError::new)?;
                } else {
                    c.duplicates.fetch_add(1, Ordering::SeqCst);
                    *c.recognised.lock().unwrap().entry(event.id).or_default() += 1;
                }
                tx.commit().await.map_err(HandlerError::new)?;
                if fresh {
                    let subject = event.subject.clone().unwrap_or_default();
                    c.applied.lock().unwrap().push((subject, thing.n));
                }
            }};
        }
        match &c.db {
            Db::Postgres(p) => apply!(p),
            Db::Sqlite(p) => apply!(p),
        }
        if behaviour == Behaviour::HangAfterCommit {
            c.applied_signal.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits, a minute at the most, until `consumer` holds `total` effects.
pub async fn all_applied(what: &str, consumer: &Consumer, total: u64) {
    eventually(what, Duration::from_secs(60), || async {
        consumer.effects().await == total as i64
    })
    .await;
}

pub fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(100),
    }
}

pub const WAIT: Duration = Duration::from_secs(30);

/// Subscribes `consumer` (three attempts) to `bus` until the returned
/// stopper fires or is dropped.
pub async fn listen(bus: &dyn Bus, consumer: &Arc<Consumer>) -> Stopper {
    let stopper = Stopper::new();
    bus.subscribe(consumer.subscription(quick_retry(3)), stopper.stop())
        .await
        .unwrap();
    stopper
}

/// A consumer that dies before its ack: subscribes `consumer` with a handler
/// that hangs after its commit, relays thing `n`'s event to it, and once the
/// effect is committed kills the subscription and mends the handler. Returns
/// the event and the stoppers of the dead subscription and of the relay,
/// which keeps running while they are held.
pub async fn crash_after_commit(
    bus: &Arc<dyn Bus>,
    producer: &Producer,
    consumer: &Arc<Consumer>,
    n: u64,
) -> (Envelope, [Stopper; 2]) {
    consumer.set(Behaviour::HangAfterCommit);
    let first_life = Stopper::new();
    let task = bus
        .subscribe(consumer.subscription(quick_retry(3)), first_life.stop())
        .await
        .unwrap();
    let relay_stop = Stopper::new();
    spawn_relay(producer.outbox.clone(), bus.clone(), &relay_stop);
    let event = producer.make(n, true).await;
    tokio::time::timeout(WAIT, consumer.applied_signal.notified())
        .await
        .expect("the effect committed");
    // The process dies: its connection goes away with the delivery unacked.
    task.abort();
    let _ = task.await;
    consumer.set(Behaviour::Apply);
    (event, [first_life, relay_stop])
}

/// A rolled-back change publishes nothing; a committed one arrives exactly once.
pub async fn scenario_outbox_atomicity(
    bus: Arc<dyn Bus>,
    producer: &Producer,
    consumer: &Arc<Consumer>,
) {
    let stopper = listen(bus.as_ref(), consumer).await;
    let rolled_back = producer.make(1, false).await;
    let committed = producer.make(2, true).await;
    assert_eq!(
        producer.unpublished().await,
        1,
        "the rolled-back change left no event"
    );
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    eventually("the committed event is applied", WAIT, || async {
        consumer.effects().await == 1
    })
    .await;
    eventually("the outbox is drained", WAIT, || async {
        producer.unpublished().await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(consumer.delivered(committed.id), 1);
    assert_eq!(consumer.delivered(rolled_back.id), 0);
}

/// A handler that always fails: dead-lettered after three attempts with its
/// error, not retried any further, listed without being consumed, and applied
/// once when replayed after the fix.
pub async fn scenario_dead_letter_and_replay(
    bus: Arc<dyn Bus>,
    producer: &Producer,
    consumer: &Arc<Consumer>,
) {
    emporium_telemetry::metrics_handle();
    consumer.set(Behaviour::Fail);
    let stopper = listen(bus.as_ref(), consumer).await;
    spawn_relay(producer.outbox.clone(), bus.clone(), &stopper);
    assert_eq!(bus.dead_letter_depth(&consumer.name).await.unwrap(), 0);
    let event = producer.make(9, true).await;

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
    assert!(
        letter.last_error.contains("store offline"),
        "{}",
        letter.last_error
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        consumer.delivered(event.id),
        3,
        "a dead letter is not retried"
    );
    assert_eq!(
        bus.dead_letters(&consumer.name).await.unwrap().len(),
        1,
        "listing does not consume"
    );
    assert_eq!(consumer.effects().await, 0);
    assert_eq!(bus.dead_letter_depth(&consumer.name).await.unwrap(), 1);
    // Another consumer's letters are its own: none for one that never had any.
    let nobody = format!("nobody-{}", Uuid::now_v7().simple());
    assert_eq!(bus.dead_letter_depth(&nobody).await.unwrap(), 0);
    // The running consumer reads its depth into the gauge.
    let gauged = |depth: u64| {
        let line = format!(
            "events_dead_letter_queue_messages{{consumer=\"{}\"}} {depth}",
            consumer.name
        );
        emporium_telemetry::metrics_handle()
            .render()
            .lines()
            .any(|l| l == line)
    };
    eventually("the dead-letter gauge says 1", WAIT, || async { gauged(1) }).await;

    consumer.set(Behaviour::Apply);
    assert_eq!(bus.replay(&consumer.name, Some(event.id)).await.unwrap(), 1);
    eventually("the replayed event is applied", WAIT, || async {
        consumer.effects().await == 1
    })
    .await;
    assert_eq!(consumer.delivered(event.id), 4);
    assert!(bus.dead_letters(&consumer.name).await.unwrap().is_empty());
    assert_eq!(bus.purge(&consumer.name).await.unwrap(), 0);

    // Purging a queue that holds letters drops exactly those, and only once.
    consumer.set(Behaviour::Fail);
    let doomed = [producer.make(10, true).await, producer.make(11, true).await];
    eventually("the last attempts of two more events", WAIT, || async {
        doomed.iter().all(|e| consumer.delivered(e.id) == 3)
    })
    .await;
    eventually("two more dead letters", WAIT, || async {
        bus.dead_letters(&consumer.name).await.unwrap().len() == 2
    })
    .await;
    assert_eq!(bus.dead_letter_depth(&consumer.name).await.unwrap(), 2);
    eventually("the dead-letter gauge says 2", WAIT, || async { gauged(2) }).await;
    // Mended first: a purge that delivered the letters again would now apply them.
    consumer.set(Behaviour::Apply);
    assert_eq!(bus.purge(&consumer.name).await.unwrap(), 2);
    assert!(bus.dead_letters(&consumer.name).await.unwrap().is_empty());
    assert_eq!(bus.dead_letter_depth(&consumer.name).await.unwrap(), 0);
    eventually("the dead-letter gauge says 0", WAIT, || async { gauged(0) }).await;
    assert_eq!(bus.purge(&consumer.name).await.unwrap(), 0);
    // A later event is delivered and applied; by then anything the purge
    // had sent back would have been delivered before it (one queue, in order).
    let sentinel = producer.make(12, true).await;
    eventually("the event after the purge is applied", WAIT, || async {
        consumer.effects().await == 2
    })
    .await;
    assert_eq!(consumer.delivered(sentinel.id), 1);
    for e in &doomed {
        assert_eq!(
            consumer.delivered(e.id),
            3,
            "purged letters are not delivered again"
        );
    }
    assert_eq!(
        consumer.effects().await,
        2,
        "purged letters are not applied"
    );
}
