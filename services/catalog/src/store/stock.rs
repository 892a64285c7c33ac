//! Warehouses, stock levels and the stock-movement journal.

use emporium_db::{Tx, on_db, on_tx};
use emporium_messaging::outbox;

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
        warehouse: Uuid,
        product: Uuid,
        set_to: Option<i64>,
        delta: i64,
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
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO stock_movements (product_id, warehouse_id, kind, delta_on_hand, \
             delta_reserved, on_hand_after, reserved_after, reason, actor, reservation_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(row.product_id)
        .bind(row.warehouse_id)
        .bind(kind.as_str())
        .bind(delta_on_hand)
        .bind(delta_reserved)
        .bind(row.on_hand)
        .bind(row.reserved)
        .bind(&actor.reason)
        .bind(&actor.who)
        .bind(reservation)
        .bind(at)
        .execute(conn)
        .await
        .map(drop)
    })?;
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
    (delta_on_hand, delta_reserved): (i64, i64),
    m: &Movement<'_>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE stock SET on_hand = on_hand + $3, reserved = reserved + $4 \
         WHERE product_id = $1 AND warehouse_id = $2 RETURNING {STOCK_COLUMNS}"
    );
    let row: StockRecord = on_tx!(&mut *tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(line.product_id)
            .bind(line.warehouse_id)
            .bind(delta_on_hand)
            .bind(delta_reserved)
            .fetch_one(conn)
            .await
    })?;
    let deltas = (delta_on_hand, delta_reserved);
    journal(tx, &row, m.kind, deltas, m.actor, Some(m.reservation), m.at).await
}

/// What can be sold of a product, and its low-stock threshold.
pub(super) async fn availability(tx: &mut Tx, product: Uuid) -> Result<(i64, i64), sqlx::Error> {
    let row: Option<(i64, i64)> = on_tx!(tx, |conn| {
        sqlx::query_as(
            "SELECT CAST(COALESCE((SELECT SUM(on_hand - reserved) FROM stock \
             WHERE product_id = $1), 0) AS BIGINT), low_stock_below FROM products WHERE id = $1",
        )
        .bind(product)
        .fetch_optional(conn)
        .await
    })?;
    Ok(row.unwrap_or((0, 0)))
}

/// Writes the stock event a change from `before` calls for, in the same transaction.
pub(super) async fn announce(tx: &mut Tx, product: Uuid, before: i64) -> Result<(), sqlx::Error> {
    let (after, threshold) = availability(tx, product).await?;
    if let Some(event) = crate::events::stock_transition(product, before, after, threshold) {
        outbox::enqueue_in(tx, &[event]).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl StockStore for SqlStore {
    async fn insert_warehouse(&self, w: &WarehouseRecord) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO warehouses (id, code, name, address, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(w.id)
            .bind(&w.code)
            .bind(&w.name)
            .bind(&w.address)
            .bind(w.created_at)
            .execute(pool)
            .await
            .map(drop)
        })?;
        Ok(())
    }

    async fn warehouses(&self) -> Result<Vec<WarehouseRecord>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, code, name, address, created_at FROM warehouses ORDER BY code",
            )
            .fetch_all(pool)
            .await
        })?)
    }

    async fn stock_of(&self, product: Uuid) -> Result<Vec<StockRecord>, StoreError> {
        let sql = format!(
            "SELECT {STOCK_COLUMNS} FROM stock WHERE product_id = $1 ORDER BY warehouse_id"
        );
        Ok(self.db.rows_by(&sql, product).await?)
    }

    async fn change_stock(
        &self,
        warehouse: Uuid,
        product: Uuid,
        set_to: Option<i64>,
        delta: i64,
        actor: &Actor,
    ) -> Result<StockChange, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let known: i64 = on_tx!(&mut tx, |conn| {
            sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM warehouses WHERE id = $1) \
                 + (SELECT COUNT(*) FROM products WHERE id = $2 AND deleted_at IS NULL)",
            )
            .bind(warehouse)
            .bind(product)
            .fetch_one(conn)
            .await
        })?;
        if known != 2 {
            return Ok(StockChange::NotFound);
        }
        let sql = tx.locking(&format!(
            "SELECT {STOCK_COLUMNS} FROM stock WHERE product_id = $1 AND warehouse_id = $2"
        ));
        let row: StockRecord = on_tx!(&mut tx, |conn| {
            sqlx::query(
                "INSERT INTO stock (warehouse_id, product_id, on_hand, reserved) \
                 VALUES ($1, $2, 0, 0) ON CONFLICT (product_id, warehouse_id) DO NOTHING",
            )
            .bind(warehouse)
            .bind(product)
            .execute(&mut *conn)
            .await?;
            sqlx::query_as(sql)
                .bind(product)
                .bind(warehouse)
                .fetch_one(conn)
                .await
        })?;
        let (before, _) = availability(&mut tx, product).await?;
        let target = match set_to {
            Some(target) => target,
            None => match row.on_hand.checked_add(delta) {
                Some(target) if target <= MAX_ON_HAND => target,
                _ => return Ok(StockChange::OutOfRange),
            },
        };
        if target < row.reserved || target < 0 {
            return Ok(StockChange::BelowReserved {
                reserved: row.reserved,
            });
        }
        let change = target - row.on_hand;
        let sql = format!(
            "UPDATE stock SET on_hand = $3 WHERE product_id = $1 AND warehouse_id = $2 \
             RETURNING {STOCK_COLUMNS}"
        );
        let after: StockRecord = on_tx!(&mut tx, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(product)
                .bind(warehouse)
                .bind(target)
                .fetch_one(conn)
                .await
        })?;
        let kind = if set_to.is_some() {
            MovementKind::Set
        } else {
            MovementKind::Adjust
        };
        let at = self.clock.now_ms();
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
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT seq, product_id, warehouse_id, kind, delta_on_hand, delta_reserved, \
                 on_hand_after, reserved_after, reason, actor, reservation_id, at \
                 FROM stock_movements WHERE ($1 IS NULL OR product_id = $1) AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(product)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?)
    }
}
