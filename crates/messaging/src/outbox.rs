//! The transactional outbox and its relay.
//!
//! [`enqueue`] writes an event in the producer's own transaction: the event
//! exists if and only if the state change committed. The [`Relay`] publishes
//! unpublished rows in `seq` order, in batches, and marks them published only
//! after the bus confirmed the whole batch; a failure leaves them for the next
//! round (so delivery is at least once; consumers deduplicate with the inbox).
//!
//! Order: rows are published in `seq` order by one relay at a time. On
//! PostgreSQL several replicas may run relays; a transaction-scoped advisory
//! lock lets one of them work per round while the others wait, so no row is
//! published twice under normal operation and events of one subject keep
//! their order. (A producer writes its outbox row after updating the subject's
//! own row, so two changes to one subject cannot commit out of `seq` order.)
//! The SQLite outbox serves one process and one relay.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium_db::Db;
use sqlx::Row;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::bus::{Bus, BusError, OutgoingEvent};
use crate::envelope::Envelope;

/// How a store change commits: at `now`, with `events` written to the outbox
/// in its transaction (only if the change happened).
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    pub now: i64,
    pub events: &'a [Envelope],
}

impl<'a> Commit<'a> {
    /// A change made now by `clock`'s time, with `events`.
    pub fn now(clock: &emporium_db::SharedClock, events: &'a [Envelope]) -> Self {
        Self {
            now: clock.now_ms(),
            events,
        }
    }
}

/// Writes every one of `events` into the outbox inside `tx`, the producer's
/// own transaction.
pub async fn enqueue_in(tx: &mut emporium_db::Tx, events: &[Envelope]) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO outbox (event_id, event_type, subject, envelope, created_at) \
        VALUES ($1, $2, $3, $4, $5)";
    for e in events {
        let values = (
            e.id,
            e.event_type.as_str(),
            e.subject.as_deref(),
            e.to_json(),
            crate::now_ms(),
        );
        tx.sql().execute(SQL, values).await?;
    }
    Ok(())
}

/// Writes `events` into the outbox inside `tx` and commits: the last step of
/// a store change that other services hear about.
pub async fn commit_with(mut tx: emporium_db::Tx, events: &[Envelope]) -> Result<(), sqlx::Error> {
    enqueue_in(&mut tx, events).await?;
    tx.commit().await
}

/// A service's outbox table, in its database.
#[derive(Clone)]
pub struct Outbox(pub Db);

impl From<Db> for Outbox {
    fn from(db: Db) -> Self {
        Self(db)
    }
}

/// The key of the advisory lock that lets one relay per database work at a time.
const RELAY_LOCK: i64 = 0x656d_706f_7269_756d; // "emporium"

fn to_outgoing(rows: Vec<(i64, Uuid, String, String)>) -> (Vec<i64>, Vec<OutgoingEvent>) {
    rows.into_iter()
        .map(|(seq, id, event_type, envelope)| {
            (
                seq,
                OutgoingEvent {
                    id,
                    event_type,
                    envelope,
                },
            )
        })
        .unzip()
}

impl Outbox {
    /// Publishes up to `batch` unpublished rows; returns how many were published.
    pub async fn relay_once(&self, bus: &dyn Bus, batch: i64) -> Result<usize, BusError> {
        match &self.0 {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(RELAY_LOCK)
                    .fetch_one(&mut *tx)
                    .await?;
                if !leader {
                    return Ok(0);
                }
                let rows: Vec<(i64, Uuid, String, String)> = sqlx::query_as(
                    "SELECT seq, event_id, event_type, envelope FROM outbox \
                     WHERE published_at IS NULL ORDER BY seq LIMIT $1",
                )
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let (seqs, events) = to_outgoing(rows);
                publish_timed(bus, &events).await?;
                sqlx::query("UPDATE outbox SET published_at = $1 WHERE seq = ANY($2)")
                    .bind(crate::now_ms())
                    .bind(&seqs)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(events.len())
            }
            Db::Sqlite(pool) => {
                // No transaction is held while publishing: SQLite has one writer,
                // and this relay is the only one on its file.
                let rows: Vec<(i64, Uuid, String, String)> = sqlx::query_as(
                    "SELECT seq, event_id, event_type, envelope FROM outbox \
                     WHERE published_at IS NULL ORDER BY seq LIMIT $1",
                )
                .bind(batch)
                .fetch_all(pool)
                .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let (seqs, events) = to_outgoing(rows);
                publish_timed(bus, &events).await?;
                let seqs = serde_json::to_string(&seqs).unwrap_or_else(|_| "[]".to_owned());
                sqlx::query(
                    "UPDATE outbox SET published_at = $1 \
                     WHERE seq IN (SELECT value FROM json_each($2))",
                )
                .bind(crate::now_ms())
                .bind(seqs)
                .execute(pool)
                .await?;
                Ok(events.len())
            }
        }
    }

    /// Unpublished rows, and when the oldest of them was written (ms).
    pub async fn backlog(&self) -> Result<(i64, Option<i64>), sqlx::Error> {
        let sql = "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE published_at IS NULL";
        let row = match &self.0 {
            Db::Postgres(pool) => {
                let r = sqlx::query(sql).fetch_one(pool).await?;
                (r.try_get(0)?, r.try_get(1)?)
            }
            Db::Sqlite(pool) => {
                let r = sqlx::query(sql).fetch_one(pool).await?;
                (r.try_get(0)?, r.try_get(1)?)
            }
        };
        Ok(row)
    }
}

async fn publish_timed(bus: &dyn Bus, events: &[OutgoingEvent]) -> Result<(), BusError> {
    let started = Instant::now();
    let result = bus.publish(events).await;
    metrics::histogram!("events_publish_duration_seconds").record(started.elapsed().as_secs_f64());
    if result.is_ok() {
        for e in events {
            metrics::counter!("events_published_total", "type" => e.event_type.clone())
                .increment(1);
        }
    }
    result
}

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    pub batch: i64,
    /// How often an idle relay looks for rows nobody told it about.
    pub poll: Duration,
    /// The longest wait between attempts while the bus is down.
    pub max_backoff: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch: 256,
            poll: Duration::from_millis(250),
            max_backoff: Duration::from_secs(15),
        }
    }
}

/// Wakes the relay right after a commit, so events do not wait for the poll.
#[derive(Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Publishes a service's outbox to a bus until stopped.
pub struct Relay {
    pub outbox: Outbox,
    pub bus: Arc<dyn Bus>,
    pub settings: RelaySettings,
    pub waker: RelayWaker,
    /// The `service` label of its metrics.
    pub service: &'static str,
}

impl Relay {
    pub async fn run(self, stop: impl Future<Output = ()> + Send) {
        tokio::pin!(stop);
        let mut failures = 0u32;
        let mut last_gauge = Instant::now() - Duration::from_secs(60);
        loop {
            let wait = match self
                .outbox
                .relay_once(self.bus.as_ref(), self.settings.batch)
                .await
            {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!(service = self.service, "Relay publishing again.");
                    }
                    failures = 0;
                    if n as i64 == self.settings.batch {
                        Duration::ZERO
                    } else {
                        self.settings.poll
                    }
                }
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_millis(100)
                        .saturating_mul(1 << failures.min(10))
                        .min(self.settings.max_backoff);
                    tracing::warn!(service = self.service, error = %e, retry_ms = wait.as_millis() as u64,
                        "Relay could not publish; backing off.");
                    wait
                }
            };
            if last_gauge.elapsed() >= Duration::from_secs(1) {
                last_gauge = Instant::now();
                if let Ok((count, oldest)) = self.outbox.backlog().await {
                    metrics::gauge!("outbox_backlog", "service" => self.service).set(count as f64);
                    let age = oldest.map_or(0.0, |t| (crate::now_ms() - t).max(0) as f64 / 1000.0);
                    metrics::gauge!("outbox_oldest_unpublished_age_seconds", "service" => self.service)
                        .set(age);
                }
            }
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = &mut stop => break,
                () = self.waker.0.notified(), if failures == 0 => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(service = self.service, "Relay stopped.");
    }
}
