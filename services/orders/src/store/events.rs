//! The event store: one append-only stream per order, and the read model
//! written in the same transaction as every append.
//!
//! A writer reads a stream (its version is the last sequence number), decides,
//! and appends after that version. If another writer appended meanwhile, the
//! first new sequence number is taken: the primary key refuses the insert and
//! the writer gets [`AppendError::Stale`], never a lost or reordered event. The
//! read model row moves only with its stream (its `version` must be the one the
//! writer read), so lists and lookups never show a state the stream does not.

use emporium_db::{Db, StoreError};
use emporium_messaging::{Envelope, outbox};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// An event of a stream: serialized whole (`{"type": …, "data": …}`), with
/// its type name kept beside it for queries.
pub trait StreamEvent: Serialize + DeserializeOwned {
    fn type_name(&self) -> &'static str;
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub seq: i64,
    pub event_type: String,
    /// Unix milliseconds.
    pub at: i64,
    /// The event as serialized.
    pub json: serde_json::Value,
}

impl Recorded {
    /// The event, decoded.
    pub fn decode<E: StreamEvent>(&self) -> Result<E, serde_json::Error> {
        serde_json::from_value(self.json.clone())
    }
}

/// What the read model keeps of an order: the columns lists filter and sort
/// on, and the document a lookup answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub customer_id: Uuid,
    pub status: String,
    pub total_amount: i64,
    pub currency: String,
    pub document: serde_json::Value,
    /// When the order was placed (its first event), Unix milliseconds.
    pub created_at: i64,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended after the version this one read: read again.
    #[error("the stream moved past version {expected}")]
    Stale { expected: i64 },
    #[error("an event could not be serialized: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AppendError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sqlx::Error> for AppendError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

emporium_db::record! {
    struct EventRow {
        seq: i64,
        event_type: String,
        at: i64,
        data: String,
    }
}

impl TryFrom<EventRow> for Recorded {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let json = serde_json::from_str(&r.data).map_err(|e| {
            StoreError::Database(sqlx::Error::Decode(
                format!("order event {}: {e}", r.seq).into(),
            ))
        })?;
        Ok(Self {
            seq: r.seq,
            event_type: r.event_type,
            at: r.at,
            json,
        })
    }
}

/// Orders' event store and read model.
#[derive(Debug, Clone)]
pub struct EventStore {
    db: Db,
}

impl EventStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends `events` to `order`'s stream after version `expected` (0 for
    /// a new order), moves its read model row to `projection`, and writes
    /// `outbox` events — all in one transaction. Gives the new version.
    pub async fn append<E: StreamEvent>(
        &self,
        order: Uuid,
        expected: i64,
        events: &[E],
        projection: &Projection,
        (outbox_events, now): (&[Envelope], i64),
    ) -> Result<i64, AppendError> {
        let mut encoded = Vec::with_capacity(events.len());
        for e in events {
            encoded.push((e.type_name(), serde_json::to_string(e)?));
        }
        let mut tx = self.db.begin_write().await?;
        const INSERT: &str = "INSERT INTO order_events (order_id, seq, event_type, data, at) \
            VALUES ($1, $2, $3, $4, $5)";
        let mut seq = expected;
        for (event_type, data) in &encoded {
            seq += 1;
            let inserted = tx
                .sql()
                .execute(INSERT, (order, seq, *event_type, data.as_str(), now))
                .await;
            match inserted.map_err(StoreError::from) {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => return Err(AppendError::Stale { expected }),
                Err(e) => return Err(e.into()),
            }
        }
        let document = projection.document.to_string();
        let moved = if expected == 0 {
            const NEW: &str = "INSERT INTO orders (id, customer_id, status, total_amount, \
                currency, version, document, created_at, updated_at) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
            let p = projection;
            let values = (
                order,
                p.customer_id,
                p.status.as_str(),
                p.total_amount,
                p.currency.as_str(),
                seq,
                document.as_str(),
                p.created_at,
                now,
            );
            match tx
                .sql()
                .execute(NEW, values)
                .await
                .map_err(StoreError::from)
            {
                Err(StoreError::Conflict { .. }) => 0,
                other => other?,
            }
        } else {
            const MOVE: &str = "UPDATE orders SET status = $1, total_amount = $2, currency = $3, \
                version = $4, document = $5, updated_at = $6 WHERE id = $7 AND version = $8";
            let p = projection;
            let values = (
                p.status.as_str(),
                p.total_amount,
                p.currency.as_str(),
                seq,
                document.as_str(),
                now,
                order,
                expected,
            );
            tx.sql().execute(MOVE, values).await?
        };
        if moved != 1 {
            tx.rollback().await?;
            return Err(AppendError::Stale { expected });
        }
        outbox::commit_with(tx, outbox_events).await?;
        Ok(seq)
    }

    /// Every event of `order`'s stream, in order (empty: no such order).
    pub async fn stream(&self, order: Uuid) -> Result<Vec<Recorded>, StoreError> {
        const SQL: &str = "SELECT seq, event_type, at, data FROM order_events \
            WHERE order_id = $1 ORDER BY seq";
        let rows: Vec<EventRow> = self.db.sql().fetch_all(SQL, (order,)).await?;
        rows.into_iter().map(Recorded::try_from).collect()
    }

    /// The read model's document of `order` and its version.
    pub async fn projected(
        &self,
        order: Uuid,
    ) -> Result<Option<(i64, serde_json::Value)>, StoreError> {
        const SQL: &str = "SELECT version, document FROM orders WHERE id = $1";
        let row: Option<(i64, String)> = self.db.sql().fetch_optional(SQL, (order,)).await?;
        row.map(|(version, document)| {
            let document = serde_json::from_str(&document).map_err(|e| {
                StoreError::Database(sqlx::Error::Decode(format!("order {order}: {e}").into()))
            })?;
            Ok((version, document))
        })
        .transpose()
    }

    /// Replaces the whole read model with what `project` makes of every
    /// stream, in one transaction: what `emporium orders rebuild-projections`
    /// runs after the projection changed or the read model was lost. Gives
    /// how many orders were projected.
    pub async fn rebuild(
        &self,
        project: impl Fn(Uuid, &[Recorded]) -> anyhow::Result<Projection>,
    ) -> anyhow::Result<usize> {
        let mut tx = self.db.begin_write().await?;
        tx.sql().execute("DELETE FROM orders", ()).await?;
        let ids: Vec<(Uuid,)> = tx
            .sql()
            .fetch_all(
                "SELECT DISTINCT order_id FROM order_events ORDER BY order_id",
                (),
            )
            .await?;
        const SQL: &str = "SELECT seq, event_type, at, data FROM order_events \
            WHERE order_id = $1 ORDER BY seq";
        const INSERT: &str = "INSERT INTO orders (id, customer_id, status, total_amount, \
            currency, version, document, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        for (id,) in &ids {
            let rows: Vec<EventRow> = tx.sql().fetch_all(SQL, (*id,)).await?;
            let stream = rows
                .into_iter()
                .map(Recorded::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            let p = project(*id, &stream)?;
            let (version, updated_at) = stream.last().map_or((0, 0), |e| (e.seq, e.at));
            let document = p.document.to_string();
            let values = (
                *id,
                p.customer_id,
                p.status.as_str(),
                p.total_amount,
                p.currency.as_str(),
                version,
                document.as_str(),
                p.created_at,
                updated_at,
            );
            tx.sql().execute(INSERT, values).await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }
}
