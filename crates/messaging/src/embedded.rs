//! The embedded bus of `emporium up`: the same contract as RabbitMQ, kept in a
//! SQLite file, so one process needs no broker and a restart loses nothing.
//!
//! Publishing inserts one delivery row per subscribed consumer in one
//! transaction (that commit is the publisher confirm; a re-published event id
//! is ignored). Each subscription runs a dispatcher that takes due rows in
//! order, hands them to the handler, deletes them on success, and otherwise
//! schedules the next attempt with exponential backoff until the last one,
//! after which the row is marked dead with its error.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::bus::{
    Bus, BusError, DEAD_LETTER_GAUGE_EVERY, DeadLetter, OutgoingEvent, Stop, Subscription,
    gauge_dead_letters,
};
use crate::settle::{Failure, Settler, settle};

#[derive(Clone)]
pub struct EmbeddedBus {
    pool: SqlitePool,
    /// Wakes a consumer's dispatcher when something is published for it.
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl EmbeddedBus {
    /// Opens (creating if needed) the bus file.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let pool = emporium_db::connect_sqlite(&emporium_db::sqlite_url(path), 4).await?;
        crate::migrations::run_bus(&pool).await?;
        Ok(Self {
            pool,
            wakers: Arc::default(),
        })
    }

    fn waker(&self, consumer: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.entry(consumer.to_owned()).or_default().clone()
    }

    async fn due(
        &self,
        consumer: &str,
        limit: i64,
    ) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT seq, envelope, attempts FROM bus_deliveries \
             WHERE consumer = $1 AND dead = 0 AND next_attempt_at <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(consumer)
        .bind(crate::now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn next_due_at(&self, consumer: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM bus_deliveries WHERE consumer = $1 AND dead = 0",
        )
        .bind(consumer)
        .fetch_one(&self.pool)
        .await
    }

    async fn dispatch(&self, sub: &Subscription) -> Result<usize, sqlx::Error> {
        let rows = self
            .due(&sub.consumer, i64::from(sub.prefetch.max(1)))
            .await?;
        let n = rows.len();
        for (seq, text, attempts) in rows {
            let row = Row {
                pool: &self.pool,
                seq,
            };
            settle(sub, attempts as u32 + 1, text.as_bytes(), &row).await?;
        }
        Ok(n)
    }
}

/// One delivery row, settled in place: deleted once handled, otherwise kept
/// with its attempt count, last error and the time of its next attempt, and
/// marked dead after the last.
struct Row<'a> {
    pool: &'a SqlitePool,
    seq: i64,
}

impl Row<'_> {
    async fn failed(&self, failure: &Failure, dead: bool) -> Result<(), sqlx::Error> {
        let next = crate::now_ms() + failure.delay.as_millis() as i64;
        sqlx::query(
            "UPDATE bus_deliveries SET attempts = $2, last_error = $3, \
             next_attempt_at = $4, dead = $5 WHERE seq = $1",
        )
        .bind(self.seq)
        .bind(i64::from(failure.attempt))
        .bind(failure.error.as_str())
        .bind(next)
        .bind(dead)
        .execute(self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl<'a> Settler for Row<'a> {
    type Error = sqlx::Error;
    /// A malformed row is retried like any failure, then marked dead.
    const DEAD_LETTER_MALFORMED: bool = false;

    async fn done(&self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM bus_deliveries WHERE seq = $1")
            .bind(self.seq)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    async fn retry(&self, failure: &Failure) -> Result<(), sqlx::Error> {
        self.failed(failure, false).await
    }

    async fn dead_letter(&self, failure: &Failure) -> Result<(), sqlx::Error> {
        self.failed(failure, true).await
    }
}

#[async_trait::async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, batch: &[OutgoingEvent]) -> Result<(), BusError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = crate::now_ms();
        let mut consumers: Vec<String> = Vec::new();
        for event in batch {
            let targets: Vec<String> = sqlx::query_scalar(
                "INSERT INTO bus_deliveries (consumer, event_id, event_type, envelope, next_attempt_at) \
                 SELECT consumer, $1, $2, $3, $4 FROM bus_subscriptions WHERE event_type = $2 \
                 ON CONFLICT (consumer, event_id) DO NOTHING RETURNING consumer",
            )
            .bind(event.id)
            .bind(&event.event_type)
            .bind(&event.envelope)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            consumers.extend(targets);
        }
        tx.commit().await?;
        consumers.sort();
        consumers.dedup();
        for consumer in consumers {
            self.waker(&consumer).notify_one();
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        sub: Subscription,
        stop: Stop,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for event_type in &sub.event_types {
            sqlx::query(
                "INSERT INTO bus_subscriptions (consumer, event_type) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&sub.consumer)
            .bind(event_type)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let bus = self.clone();
        let waker = self.waker(&sub.consumer);
        Ok(tokio::spawn(async move {
            tokio::pin!(stop);
            let mut gauged: Option<std::time::Instant> = None;
            loop {
                if gauged.is_none_or(|at| at.elapsed() >= DEAD_LETTER_GAUGE_EVERY) {
                    match bus.dead_letter_depth(&sub.consumer).await {
                        Ok(depth) => gauge_dead_letters(&sub.consumer, depth),
                        Err(e) => {
                            tracing::debug!(consumer = %sub.consumer, error = %e, "Dead letters not counted.");
                        }
                    }
                    gauged = Some(std::time::Instant::now());
                }
                let idle = match bus.dispatch(&sub).await {
                    Ok(0) => {
                        // Sleep until the next retry is due, or until woken; at most a second.
                        let next = bus.next_due_at(&sub.consumer).await.ok().flatten();
                        let ms = next.map_or(1000, |t| (t - crate::now_ms()).clamp(1, 1000));
                        Some(Duration::from_millis(ms as u64))
                    }
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(consumer = %sub.consumer, error = %e, "Embedded bus failed; retrying.");
                        Some(Duration::from_millis(500))
                    }
                };
                match idle {
                    None => {
                        tokio::select! {
                            () = &mut stop => break,
                            () = tokio::task::yield_now() => {}
                        }
                    }
                    Some(wait) => tokio::select! {
                        () = &mut stop => break,
                        () = waker.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    },
                }
            }
            tracing::info!(consumer = %sub.consumer, "Consumer stopped.");
        }))
    }

    async fn dead_letters(&self, consumer: &str) -> Result<Vec<DeadLetter>, BusError> {
        let rows: Vec<(Uuid, String, i64, Option<String>, String)> = sqlx::query_as(
            "SELECT event_id, event_type, attempts, last_error, envelope FROM bus_deliveries \
             WHERE consumer = $1 AND dead = 1 ORDER BY seq",
        )
        .bind(consumer)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, event_type, attempts, last_error, envelope)| DeadLetter {
                    id,
                    event_type,
                    attempts: attempts as u32,
                    last_error: last_error.unwrap_or_default(),
                    envelope: serde_json::from_str(&envelope)
                        .unwrap_or(serde_json::Value::String(envelope)),
                },
            )
            .collect())
    }

    async fn has_consumer(&self, consumer: &str) -> Result<bool, BusError> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM bus_subscriptions WHERE consumer = $1 LIMIT 1")
                .bind(consumer)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn dead_letter_depth(&self, consumer: &str) -> Result<u64, BusError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM bus_deliveries WHERE consumer = $1 AND dead = 1")
                .bind(consumer)
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn replay(&self, consumer: &str, id: Option<Uuid>) -> Result<usize, BusError> {
        let done = sqlx::query(
            "UPDATE bus_deliveries SET dead = 0, attempts = 0, next_attempt_at = $3 \
             WHERE consumer = $1 AND dead = 1 AND ($2 IS NULL OR event_id = $2)",
        )
        .bind(consumer)
        .bind(id)
        .bind(crate::now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.waker(consumer).notify_one();
        Ok(done as usize)
    }

    async fn purge(&self, consumer: &str) -> Result<usize, BusError> {
        let done = sqlx::query("DELETE FROM bus_deliveries WHERE consumer = $1 AND dead = 1")
            .bind(consumer)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(done as usize)
    }
}
