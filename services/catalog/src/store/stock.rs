//! Warehouses, stock levels and the stock-movement journal.

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

/// Implements [`StockStore`] for a store over `$db`; instantiated in `sql.rs`
/// for each engine, where the helpers it calls live.
macro_rules! impl_stock_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl StockStore for $store {
            async fn insert_warehouse(&self, w: &WarehouseRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO warehouses (id, code, name, address, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(w.id)
                .bind(&w.code)
                .bind(&w.name)
                .bind(&w.address)
                .bind(w.created_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)?;
                Ok(())
            }

            async fn warehouses(&self) -> Result<Vec<WarehouseRecord>, StoreError> {
                Ok(sqlx::query_as("SELECT id, code, name, address, created_at FROM warehouses ORDER BY code")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn stock_of(&self, product: Uuid) -> Result<Vec<StockRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT warehouse_id, product_id, on_hand, reserved FROM stock \
                     WHERE product_id = $1 ORDER BY warehouse_id",
                )
                .bind(product)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn change_stock(
                &self,
                warehouse: Uuid,
                product: Uuid,
                set_to: Option<i64>,
                delta: i64,
                actor: &Actor,
            ) -> Result<StockChange, StoreError> {
                let mut tx = self.begin_write().await?;
                let known: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM warehouses WHERE id = $1) \
                     + (SELECT COUNT(*) FROM products WHERE id = $2 AND deleted_at IS NULL)",
                )
                .bind(warehouse)
                .bind(product)
                .fetch_one(&mut *tx)
                .await?;
                if known != 2 {
                    return Ok(StockChange::NotFound);
                }
                sqlx::query(
                    "INSERT INTO stock (warehouse_id, product_id, on_hand, reserved) VALUES ($1, $2, 0, 0) \
                     ON CONFLICT (product_id, warehouse_id) DO NOTHING",
                )
                .bind(warehouse)
                .bind(product)
                .execute(&mut *tx)
                .await?;
                let row: StockRecord = sqlx::query_as(<$db as Dialect>::locking(
                    "SELECT warehouse_id, product_id, on_hand, reserved FROM stock \
                     WHERE product_id = $1 AND warehouse_id = $2",
                ))
                .bind(product)
                .bind(warehouse)
                .fetch_one(&mut *tx)
                .await?;
                let (before, _) = Self::availability(&mut tx, product).await?;
                let target = match set_to {
                    Some(target) => target,
                    None => match row.on_hand.checked_add(delta) {
                        Some(target) if target <= MAX_ON_HAND => target,
                        _ => return Ok(StockChange::OutOfRange),
                    },
                };
                if target < row.reserved || target < 0 {
                    return Ok(StockChange::BelowReserved { reserved: row.reserved });
                }
                let change = target - row.on_hand;
                let after: StockRecord = sqlx::query_as(
                    "UPDATE stock SET on_hand = $3 WHERE product_id = $1 AND warehouse_id = $2 \
                     RETURNING warehouse_id, product_id, on_hand, reserved",
                )
                .bind(product)
                .bind(warehouse)
                .bind(target)
                .fetch_one(&mut *tx)
                .await?;
                let kind = if set_to.is_some() { MovementKind::Set } else { MovementKind::Adjust };
                Self::journal(&mut tx, &after, kind, (change, 0), actor, None, self.clock.now_ms()).await?;
                Self::announce(&mut tx, product, before).await?;
                tx.commit().await?;
                Ok(StockChange::Done(after))
            }

            async fn movements(
                &self,
                product: Option<Uuid>,
                after: i64,
                limit: i64,
            ) -> Result<Vec<MovementRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT seq, product_id, warehouse_id, kind, delta_on_hand, delta_reserved, \
                     on_hand_after, reserved_after, reason, actor, reservation_id, at \
                     FROM stock_movements WHERE ($1 IS NULL OR product_id = $1) AND seq > $2 \
                     ORDER BY seq LIMIT $3",
                )
                .bind(product)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

pub(super) use impl_stock_store;
