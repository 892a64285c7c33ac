//! Warehouses, stock levels and the stock-movement journal.

use emporium_db::Tx;
use emporium_messaging::outbox;
use sqlx::AssertSqlSafe;

use super::sql::SqlStore;
use super::*;

#[async_trait::async_trait]
pub trait StockStore: Send + Sync {
    async fn insert_warehouse(&self, w: &WarehouseRecord) -> Result<(), StoreError>;

    async fn warehouses(&self) -> Result<Vec<WarehouseRecord>, StoreError>;

    async fn stock_of(&self, product: Uuid) -> Result<Vec<StockRecord>, StoreError>;

    /// Sets `on_hand` (`set_to`) or adds `delta` to it, never below what is
    /// reserved nor (adding) above [`MAX_ON_HAND`].
    async fn change_stock(
        &self,
        row: StockRow,
        level: StockLevel,
        actor: &Actor,
    ) -> Result<StockChange, StoreError>;

    async fn movements(
        &self,
        product: Option<Uuid>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MovementRecord>, StoreError>;
}

const STOCK_COLUMNS: &str = "warehouse_id, product_id, on_hand, reserved";

/// Writes the journal row of a change to one stock row (`row` as it is after).
pub(super) async fn journal(
    tx: &mut Tx,
    row: &StockRecord,
    kind: MovementKind,
    (delta_on_hand, delta_reserved): (i64, i64),
    actor: &Actor,
    reservation: Option<Uuid>,
    at: i64,
) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO stock_movements (product_id, warehouse_id, kind, \
        delta_on_hand, delta_reserved, on_hand_after, reserved_after, reason, actor, \
        reservation_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    let row_ids = (row.product_id, row.warehouse_id);
    let after = (row.on_hand, row.reserved);
    let who = (actor.reason.as_str(), actor.who.as_str());
    let values = (
        row_ids.0,
        row_ids.1,
        kind.as_str(),
        delta_on_hand,
        delta_reserved,
        after.0,
        after.1,
        who.0,
        who.1,
        reservation,
        at,
    );
    tx.sql().execute(SQL, values).await?;
    Ok(())
}

/// A journaled change to one stock row for a reservation.
pub(super) struct Movement<'a> {
    pub kind: MovementKind,
    pub actor: &'a Actor,
    pub reservation: Uuid,
    pub at: i64,
}

/// Moves one stock row by the given deltas and journals it.
pub(super) async fn move_stock(
    tx: &mut Tx,
    line: &ReservationLine,
    deltas: (i64, i64),
    m: &Movement<'_>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE stock SET on_hand = on_hand + $3, reserved = reserved + $4 \
         WHERE product_id = $1 AND warehouse_id = $2 RETURNING {STOCK_COLUMNS}"
    );
    let values = (line.product_id, line.warehouse_id, deltas.0, deltas.1);
    let row: StockRecord = tx.sql().fetch_one(AssertSqlSafe(sql), values).await?;
    journal(tx, &row, m.kind, deltas, m.actor, Some(m.reservation), m.at).await
}

/// What can be sold of a product, and its low-stock threshold.
pub(super) async fn availability(tx: &mut Tx, product: Uuid) -> Result<(i64, i64), sqlx::Error> {
    const SQL: &str = "SELECT CAST(COALESCE((SELECT SUM(on_hand - reserved) FROM stock \
        WHERE product_id = $1), 0) AS BIGINT), low_stock_below FROM products WHERE id = $1";
    let row: Option<(i64, i64)> = tx.sql().fetch_optional(SQL, (product,)).await?;
    Ok(row.unwrap_or((0, 0)))
}

/// Writes the stock event a change from `before` calls for, in the same transaction.
pub(super) async fn announce(tx: &mut Tx, product: Uuid, before: i64) -> Result<(), sqlx::Error> {
    let (after, threshold) = availability(tx, product).await?;
    if let Some(event) = crate::events::stock_transition(product, before, after, threshold) {
        // `…stock.low.v1` → `low` (also `depleted`, `replenished`).
        let kind = event
            .event_type
            .rsplit('.')
            .nth(1)
            .unwrap_or("other")
            .to_owned();
        metrics::counter!("catalog_stock_transitions_total", "kind" => kind).increment(1);
        outbox::enqueue_in(tx, &[event]).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl StockStore for SqlStore {
    async fn insert_warehouse(&self, w: &WarehouseRecord) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO warehouses (id, code, name, address, created_at) \
            VALUES ($1, $2, $3, $4, $5)";
        let values = (w.id, &w.code, &w.name, &w.address, w.created_at);
        self.db.sql().execute(SQL, values).await?;
        Ok(())
    }

    async fn warehouses(&self) -> Result<Vec<WarehouseRecord>, StoreError> {
        const SQL: &str =
            "SELECT id, code, name, address, created_at FROM warehouses ORDER BY code";
        Ok(self.db.sql().fetch_all(SQL, ()).await?)
    }

    async fn stock_of(&self, product: Uuid) -> Result<Vec<StockRecord>, StoreError> {
        let sql = format!(
            "SELECT {STOCK_COLUMNS} FROM stock WHERE product_id = $1 ORDER BY warehouse_id"
        );
        Ok(self
            .db
            .sql()
            .fetch_all(AssertSqlSafe(sql), (product,))
            .await?)
    }

    async fn change_stock(
        &self,
        at: StockRow,
        level: StockLevel,
        actor: &Actor,
    ) -> Result<StockChange, StoreError> {
        let (warehouse, product) = (at.warehouse, at.product);
        let mut tx = self.db.begin_write().await?;
        const KNOWN: &str = "SELECT (SELECT COUNT(*) FROM warehouses WHERE id = $1) \
            + (SELECT COUNT(*) FROM products WHERE id = $2 AND deleted_at IS NULL)";
        let known: i64 = tx.sql().scalar(KNOWN, (warehouse, product)).await?;
        if known != 2 {
            return Ok(StockChange::NotFound);
        }
        const ROW: &str = "INSERT INTO stock (warehouse_id, product_id, on_hand, reserved) \
            VALUES ($1, $2, 0, 0) ON CONFLICT (product_id, warehouse_id) DO NOTHING";
        tx.sql().execute(ROW, (warehouse, product)).await?;
        let sql = tx.locking(&format!(
            "SELECT {STOCK_COLUMNS} FROM stock WHERE product_id = $1 AND warehouse_id = $2"
        ));
        let row: StockRecord = tx.sql().fetch_one(sql, (product, warehouse)).await?;
        let (before, _) = availability(&mut tx, product).await?;
        let target = match level {
            StockLevel::Set(target) => target,
            StockLevel::Adjust(delta) => match row.on_hand.checked_add(delta) {
                Some(target) if target <= MAX_ON_HAND => target,
                _ => return Ok(StockChange::OutOfRange),
            },
        };
        if target < row.reserved || target < 0 {
            return Ok(StockChange::BelowReserved {
                reserved: row.reserved,
            });
        }
        let sql = format!(
            "UPDATE stock SET on_hand = $3 WHERE product_id = $1 AND warehouse_id = $2 \
             RETURNING {STOCK_COLUMNS}"
        );
        let values = (product, warehouse, target);
        let after: StockRecord = tx.sql().fetch_one(AssertSqlSafe(sql), values).await?;
        let kind = match level {
            StockLevel::Set(_) => MovementKind::Set,
            StockLevel::Adjust(_) => MovementKind::Adjust,
        };
        let (change, at) = (target - row.on_hand, self.clock.now_ms());
        journal(&mut tx, &after, kind, (change, 0), actor, None, at).await?;
        announce(&mut tx, product, before).await?;
        tx.commit().await?;
        Ok(StockChange::Done(after))
    }

    async fn movements(
        &self,
        product: Option<Uuid>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MovementRecord>, StoreError> {
        const SQL: &str = "SELECT seq, product_id, warehouse_id, kind, delta_on_hand, \
            delta_reserved, on_hand_after, reserved_after, reason, actor, reservation_id, at \
            FROM stock_movements WHERE ($1 IS NULL OR product_id = $1) AND seq > $2 \
            ORDER BY seq LIMIT $3";
        Ok(self
            .db
            .sql()
            .fetch_all(SQL, (product, after, limit))
            .await?)
    }
}
