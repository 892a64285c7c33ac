//! Events per second, end to end, against the bare broker on the same machine
//! in the same run. Needs PostgreSQL and RabbitMQ (as the tests do).
//!
//! `cargo bench -p emporium-messaging --bench throughput [-- N]`
//!
//! 1. bare lapin: persistent messages published to a durable queue in batches
//!    of 256, waiting for every publisher confirm of a batch;
//! 2. outbox → relay → RabbitMQ → consumer with inbox: N events already in a
//!    PostgreSQL outbox; the clock runs from starting the relay until the last
//!    event's inbox row has committed in the consumer's PostgreSQL database;
//! 3. the same through the embedded bus with SQLite stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use emporium_contracts::Event;
use emporium_db::Db;
use emporium_db::testing::TestDatabase;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_messaging::outbox::{Outbox, Relay, RelaySettings, RelayWaker};
use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
use emporium_messaging::{
    Bus, Envelope, EventHandler, HandlerError, RetryPolicy, Subscription, inbox, outbox,
};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::watch;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const BATCH: usize = 256;

#[derive(Serialize, Deserialize)]
struct Tick {
    n: u64,
}
impl Event for Tick {
    const TYPE: &'static str = "emporium.bench.tick.v1";
    const SOURCE: &'static str = "/emporium/bench";
}

struct Inbox {
    db: Db,
    done: AtomicUsize,
}

#[async_trait::async_trait]
impl EventHandler for Inbox {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        macro_rules! apply {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(HandlerError::new)?;
                inbox::first_delivery(&mut tx, "bench", event.id)
                    .await
                    .map_err(HandlerError::new)?;
                tx.commit().await.map_err(HandlerError::new)?;
            }};
        }
        match &self.db {
            Db::Postgres(p) => apply!(p),
            Db::Sqlite(p) => apply!(p),
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn bare_lapin(n: usize) -> f64 {
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let queue = format!("emporium-bench.bare.{}", uuid::Uuid::now_v7().simple());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("queue");
    let payload = Envelope::new(&Tick { n: 0 }, None, None).to_json();
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for _ in chunk {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    payload.as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish"),
            );
        }
        for c in confirms {
            assert!(c.await.expect("confirm").is_ack());
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    rate
}

async fn fill(outbox: &Outbox, n: usize) {
    for chunk in (0..n as u64).collect::<Vec<_>>().chunks(500) {
        let events: Vec<Envelope> = chunk
            .iter()
            .map(|i| Envelope::new(&Tick { n: *i }, Some(format!("t{}", i % 64)), None))
            .collect();
        let tx = outbox.0.begin_write().await.expect("tx");
        outbox::commit_with(tx, &events).await.expect("enqueue");
    }
}

async fn end_to_end(bus: Arc<dyn Bus>, outbox: Outbox, consumer_db: Db, n: usize) -> (f64, String) {
    let handler = Arc::new(Inbox {
        db: consumer_db,
        done: AtomicUsize::new(0),
    });
    let (stop, rx) = watch::channel(false);
    let stop_fut = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let consumer = format!("bench-{}", uuid::Uuid::now_v7().simple());
    bus.subscribe(
        Subscription {
            consumer: consumer.clone(),
            event_types: vec![Tick::TYPE.into()],
            handler: handler.clone(),
            retry: RetryPolicy::default(),
            prefetch: 256,
        },
        Box::pin(stop_fut(rx.clone())),
    )
    .await
    .expect("subscribe");
    fill(&outbox, n).await;
    let relay = Relay {
        outbox,
        bus: bus.clone(),
        settings: RelaySettings {
            batch: BATCH as i64,
            poll: Duration::from_millis(10),
            ..Default::default()
        },
        waker: RelayWaker::default(),
        service: "bench",
    };
    let started = Instant::now();
    tokio::spawn(relay.run(stop_fut(rx)));
    while handler.done.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    (rate, consumer)
}

async fn pg_with_tables() -> (TestDatabase, PgPool) {
    let db = TestDatabase::postgres().await.expect("postgres");
    let pool = emporium_db::connect_postgres(&db.url, 8)
        .await
        .expect("pool");
    emporium_messaging::migrations::run_postgres(&pool)
        .await
        .expect("migrate");
    (db, pool)
}

async fn sqlite_with_tables() -> (TestDatabase, SqlitePool) {
    let db = TestDatabase::sqlite();
    let pool = emporium_db::connect_sqlite(&db.url, 4).await.expect("pool");
    emporium_messaging::migrations::run_sqlite(&pool)
        .await
        .expect("migrate");
    (db, pool)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    println!("events: {n}, batch {BATCH}, persistent messages, publisher confirms, quorum queues");

    let bare = bare_lapin(n).await;
    println!("bare lapin publish+confirm          {bare:>9.0} events/s");

    let (_p, producer) = pg_with_tables().await;
    let (_c, consumer) = pg_with_tables().await;
    let mut settings = RabbitSettings::new(AMQP);
    settings.exchange = format!("emporium-bench.{}", uuid::Uuid::now_v7().simple());
    settings.queue_prefix = "emporium-bench.".into();
    let rabbit = Arc::new(RabbitBus::new(settings));
    let (e2e, name) = end_to_end(
        rabbit.clone(),
        Outbox(Db::Postgres(producer)),
        Db::Postgres(consumer),
        n,
    )
    .await;
    println!(
        "outbox→RabbitMQ→inbox (PostgreSQL)  {e2e:>9.0} events/s  ({:.2} of bare)",
        e2e / bare
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = rabbit.delete_queues(&name, RetryPolicy::default()).await;
    let _ = rabbit.delete_exchange().await;

    let bus_file = TestDatabase::sqlite();
    let bus_path = bus_file.url.trim_start_matches("sqlite://").to_owned();
    let embedded = Arc::new(
        EmbeddedBus::open(std::path::Path::new(&bus_path))
            .await
            .expect("bus"),
    );
    let (_p, producer) = sqlite_with_tables().await;
    let (_c, consumer) = sqlite_with_tables().await;
    let (e2e, _) = end_to_end(
        embedded,
        Outbox(Db::Sqlite(producer)),
        Db::Sqlite(consumer),
        n,
    )
    .await;
    println!("outbox→embedded bus→inbox (SQLite)  {e2e:>9.0} events/s");
}
