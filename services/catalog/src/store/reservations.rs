//! Stock reservations for the services that sell.

use super::*;

#[async_trait::async_trait]
pub trait ReservationStore: Send + Sync {
    /// Reserves `items` for `client`; the same id again from the same client
    /// with the same items is the reservation made before.
    async fn reserve(
        &self,
        id: Uuid,
        client: &str,
        items: &BTreeMap<Uuid, i64>,
        expires_at: i64,
        actor: &Actor,
    ) -> Result<ReserveOutcome, StoreError>;

    async fn reservation(&self, id: Uuid) -> Result<Option<Reservation>, StoreError>;

    /// Gives the reserved stock back (`kind` is [`MovementKind::Release`] or
    /// [`MovementKind::Expire`]; anything else counts as a release).
    async fn release(
        &self,
        id: Uuid,
        kind: MovementKind,
        actor: &Actor,
    ) -> Result<SettleOutcome, StoreError>;

    /// Turns reserved stock into shipped stock: `on_hand` and `reserved` both
    /// fall. Past `expires_at` it expires the reservation instead ([`SettleOutcome::ExpiredNow`]).
    async fn commit(&self, id: Uuid, actor: &Actor) -> Result<SettleOutcome, StoreError>;

    async fn expired_reservations(&self, now: i64, limit: i64) -> Result<Vec<Uuid>, StoreError>;
}

/// Implements [`ReservationStore`] for a store over `$db`; instantiated in `sql.rs`
/// for each engine, where the helpers it calls live.
macro_rules! impl_reservations_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl ReservationStore for $store {
            async fn reserve(
                &self,
                id: Uuid,
                client: &str,
                items: &BTreeMap<Uuid, i64>,
                expires_at: i64,
                actor: &Actor,
            ) -> Result<ReserveOutcome, StoreError> {
                let mut tx = self.begin_write().await?;
                // Lock every stock row of the wanted products, products in id order
                // and warehouses in id order within each: no two reservations can
                // wait on each other.
                let mut free = BTreeMap::new();
                let mut unknown = Vec::new();
                for product in items.keys() {
                    let live: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM products WHERE id = $1 AND deleted_at IS NULL",
                    )
                    .bind(product)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if live.is_none() {
                        unknown.push(*product);
                        continue;
                    }
                    let rows: Vec<StockRecord> = sqlx::query_as(<$db as Dialect>::locking(
                        "SELECT warehouse_id, product_id, on_hand, reserved FROM stock \
                         WHERE product_id = $1 ORDER BY warehouse_id",
                    ))
                    .bind(product)
                    .fetch_all(&mut *tx)
                    .await?;
                    for r in rows {
                        free.insert((r.warehouse_id, r.product_id), r.on_hand - r.reserved);
                    }
                }
                // Checked after the locks: a concurrent request with the same id has
                // either committed (and is seen here) or not started its writes.
                if let Some(existing) = Self::load_reservation(&mut tx, id, false).await? {
                    return Ok(repeated(existing, client, items));
                }
                if !unknown.is_empty() {
                    return Ok(ReserveOutcome::UnknownProducts(unknown));
                }
                let Some(plan) = allocate(items, &free) else {
                    let short = items
                        .iter()
                        .filter(|(p, q)| {
                            free.iter().filter(|((_, fp), _)| fp == *p).map(|(_, f)| (*f).max(0)).sum::<i64>() < **q
                        })
                        .map(|(p, _)| *p)
                        .collect();
                    return Ok(ReserveOutcome::OutOfStock(short));
                };
                let now = self.clock.now_ms();
                let inserted = sqlx::query(
                    "INSERT INTO reservations (id, status, items, expires_at, created_at, updated_at, client_id) \
                     VALUES ($1, 'active', $2, $3, $4, $4, $5)",
                )
                .bind(id)
                .bind(Json(items))
                .bind(expires_at)
                .bind(now)
                .bind(client)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from);
                if let Err(StoreError::Conflict { .. }) = inserted {
                    // Another request with this id but other products won the race.
                    drop(tx);
                    let mut conn = self.pool.acquire().await?;
                    return Ok(match Self::load_reservation(&mut conn, id, false).await? {
                        Some(existing) => repeated(existing, client, items),
                        None => ReserveOutcome::Mismatch,
                    });
                }
                inserted?;
                let mut lines = Vec::with_capacity(plan.len());
                for a in plan {
                    let line = ReservationLine {
                        warehouse_id: a.warehouse_id,
                        product_id: a.product_id,
                        quantity: a.quantity,
                    };
                    sqlx::query(
                        "INSERT INTO reservation_lines (reservation_id, warehouse_id, product_id, quantity) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id)
                    .bind(line.warehouse_id)
                    .bind(line.product_id)
                    .bind(line.quantity)
                    .execute(&mut *tx)
                    .await?;
                    Self::move_stock(&mut tx, &line, (0, line.quantity), MovementKind::Reserve, actor, id, now).await?;
                    lines.push(line);
                }
                for product in items.keys() {
                    let before: i64 = free.iter().filter(|((_, p), _)| p == product).map(|(_, f)| *f).sum();
                    Self::announce(&mut tx, *product, before).await?;
                }
                tx.commit().await?;
                lines.sort_by_key(|l| (l.product_id, l.warehouse_id));
                Ok(ReserveOutcome::Created(Reservation {
                    id,
                    client_id: client.to_owned(),
                    status: ReservationStatus::Active,
                    items: items.clone(),
                    lines,
                    expires_at,
                }))
            }

            async fn reservation(&self, id: Uuid) -> Result<Option<Reservation>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Ok(Self::load_reservation(&mut conn, id, false).await?)
            }

            async fn release(&self, id: Uuid, kind: MovementKind, actor: &Actor) -> Result<SettleOutcome, StoreError> {
                let kind = if kind == MovementKind::Expire { MovementKind::Expire } else { MovementKind::Release };
                self.settle(id, kind, actor).await
            }

            async fn commit(&self, id: Uuid, actor: &Actor) -> Result<SettleOutcome, StoreError> {
                self.settle(id, MovementKind::Commit, actor).await
            }

            async fn expired_reservations(&self, now: i64, limit: i64) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM reservations WHERE status = 'active' AND expires_at <= $1 \
                     ORDER BY expires_at LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

pub(super) use impl_reservations_store;
