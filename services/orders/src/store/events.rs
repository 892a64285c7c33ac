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
    /// The saga under way (`checkout`, `cancel`, …), if one is: what the
    /// recovery scan looks for.
    pub in_progress: Option<String>,
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
    lease: Lease,
}

/// Who drives sagas through this store, and for how long a claim holds.
#[derive(Debug, Clone)]
pub struct Lease {
    /// This replica's name in `lease_owner`.
    pub owner: String,
    /// How long a claim holds without being renewed.
    pub ms: i64,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            owner: Uuid::new_v4().to_string(),
            ms: 30_000,
        }
    }
}

impl EventStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            lease: Lease::default(),
        }
    }

    /// The same store, claiming sagas as `lease`.
    pub fn with_lease(mut self, lease: Lease) -> Self {
        self.lease = lease;
        self
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends `events` to `order`'s stream after version `expected` (0 for
    /// a new order), moves its read model row to `projection`, and writes
    /// `outbox` events — all in one transaction. Gives the new version.
    ///
    /// A new order with a saga under way is claimed by this store's lease
    /// owner (the request that placed it drives its checkout); an append that
    /// ends the saga lets go of the claim.
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
                currency, version, document, created_at, updated_at, in_progress, \
                lease_owner, lease_until) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
            let p = projection;
            let claim = p.in_progress.as_ref().map(|_| &self.lease);
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
                p.in_progress.as_deref(),
                claim.map(|l| l.owner.as_str()),
                claim.map(|l| now.saturating_add(l.ms)),
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
            // A saga that ends lets go of its claim; one that goes on keeps it.
            const MOVE: &str = "UPDATE orders SET status = $1, total_amount = $2, currency = $3, \
                version = $4, document = $5, updated_at = $6, in_progress = $9, \
                lease_owner = CASE WHEN $9 IS NULL THEN NULL ELSE lease_owner END, \
                lease_until = CASE WHEN $9 IS NULL THEN NULL ELSE lease_until END \
                WHERE id = $7 AND version = $8";
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
                p.in_progress.as_deref(),
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
        row.map(|(version, document)| Ok((version, document_of(order, &document)?)))
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
            currency, version, document, created_at, updated_at, in_progress) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
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
                p.in_progress.as_deref(),
            );
            tx.sql().execute(INSERT, values).await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }

    /// Claims `order`'s saga for this store's owner until `now` + the lease:
    /// `true` when it is this owner's now (it was unclaimed, its claim ran
    /// out, or this owner held it already). Nothing to claim when no saga is
    /// under way.
    pub async fn claim(&self, order: Uuid, now: i64) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE orders SET lease_owner = $2, lease_until = $3 \
            WHERE id = $1 AND in_progress IS NOT NULL \
            AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $2)";
        let until = now.saturating_add(self.lease.ms);
        let values = (order, self.lease.owner.as_str(), until, now);
        Ok(self.db.sql().execute(SQL, values).await? == 1)
    }

    /// Lets go of `order`'s saga until `retry_at`: nobody takes it before
    /// then (a transient failure is tried again later, by any replica).
    pub async fn put_off(&self, order: Uuid, retry_at: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE orders SET lease_owner = NULL, lease_until = $3 \
            WHERE id = $1 AND lease_owner = $2";
        let values = (order, self.lease.owner.as_str(), retry_at);
        self.db.sql().execute(SQL, values).await?;
        Ok(())
    }

    /// Up to `limit` orders with a saga under way that nobody holds at
    /// `now`, the longest waiting first.
    pub async fn unfinished(&self, now: i64, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        const SQL: &str = "SELECT id FROM orders WHERE in_progress IS NOT NULL \
            AND (lease_until IS NULL OR lease_until < $1) ORDER BY updated_at LIMIT $2";
        let rows: Vec<(Uuid,)> = self.db.sql().fetch_all(SQL, (now, limit)).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// How many orders have a saga under way, and when the oldest of them
    /// was last moved (Unix milliseconds).
    pub async fn backlog(&self) -> Result<(i64, Option<i64>), StoreError> {
        const SQL: &str = "SELECT CAST(COUNT(*) AS BIGINT), MIN(updated_at) FROM orders \
            WHERE in_progress IS NOT NULL";
        Ok(self.db.sql().fetch_one(SQL, ()).await?)
    }

    /// A page of the read model, newest first: every order or one
    /// customer's, of one status or all, after `(created_at, id)` when
    /// paging on. Gives `(created_at, id, document)` rows, at most `limit`.
    pub async fn list(
        &self,
        filter: &ListFilter,
        after: Option<(i64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<(i64, Uuid, serde_json::Value)>, StoreError> {
        const SQL: &str = "SELECT created_at, id, document FROM orders \
            WHERE ($1 IS NULL OR customer_id = $1) AND ($2 IS NULL OR status = $2) \
            AND ($3 IS NULL OR created_at < $3 OR (created_at = $3 AND id < $4)) \
            ORDER BY created_at DESC, id DESC LIMIT $5";
        let (at, id) = after.unzip();
        let values = (filter.customer, filter.status.as_deref(), at, id, limit);
        let rows: Vec<(i64, Uuid, String)> = self.db.sql().fetch_all(SQL, values).await?;
        rows.into_iter()
            .map(|(at, id, document)| Ok((at, id, document_of(id, &document)?)))
            .collect()
    }
}

/// A read model document as stored.
fn document_of(order: Uuid, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Database(sqlx::Error::Decode(format!("order {order}: {e}").into()))
    })
}

/// Which orders a list shows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub customer: Option<Uuid>,
    pub status: Option<String>,
}
