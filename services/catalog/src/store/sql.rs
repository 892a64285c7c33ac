//! The SQL behind [`CatalogStore`], written once and instantiated for both
//! engines; they differ in how a write transaction begins and in the row-lock
//! suffix (`FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already
//! serialises writers).

use std::collections::BTreeMap;
use std::sync::Arc;

use emporium_db::{Db, Dialect, Engine, SharedClock};
use emporium_messaging::Envelope;
use emporium_messaging::migrations::open_service_db;
use emporium_messaging::outbox::{self, Outbox};
use sqlx::types::Json;
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use super::search;
use super::*;
use crate::domain::allocate;

pub struct PostgresStore {
    pool: PgPool,
    clock: SharedClock,
}

pub struct SqliteStore {
    pool: SqlitePool,
    clock: SharedClock,
}

/// The service's own migration files, per engine.
pub const POSTGRES: &[emporium_db::embed::MigrationFile] = emporium_db::migration_files!("migrations/postgres": "0001_catalog.sql", "0002_search.sql", "0003_reservation_owner.sql");
pub const SQLITE: &[emporium_db::embed::MigrationFile] = emporium_db::migration_files!("migrations/sqlite": "0001_catalog.sql", "0002_search.sql", "0003_reservation_owner.sql");

/// The service's own migrations (the outbox's come from emporium-messaging).
fn own_migrations(engine: Engine) -> sqlx::migrate::Migrator {
    match engine {
        Engine::Postgres => emporium_db::embed::migrator(POSTGRES),
        Engine::Sqlite => emporium_db::embed::migrator(SQLITE),
    }
}

/// Opens the store named by `url`, applying migrations (its own, then the outbox's),
/// on the system clock.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn CatalogStore>> {
    connect_at(url, max_connections, emporium_db::system_clock()).await
}

/// As [`connect`], reading the time from `clock` (tests move it).
pub async fn connect_at(
    url: &str,
    max_connections: u32,
    clock: SharedClock,
) -> anyhow::Result<Arc<dyn CatalogStore>> {
    Ok(
        match open_service_db(url, max_connections, own_migrations).await? {
            Db::Postgres(pool) => Arc::new(PostgresStore { pool, clock }),
            Db::Sqlite(pool) => Arc::new(SqliteStore { pool, clock }),
        },
    )
}

/// A reservation id used again: by another client it is taken; by the same
/// client with the same items it is the reservation made before.
fn repeated(existing: Reservation, client: &str, items: &BTreeMap<Uuid, i64>) -> ReserveOutcome {
    if existing.client_id != client {
        ReserveOutcome::Taken
    } else if existing.items == *items {
        ReserveOutcome::Existing(existing)
    } else {
        ReserveOutcome::Mismatch
    }
}

const PRODUCT_SELECT: &str = "SELECT p.id, p.sku, p.name, p.description, p.price_amount, \
    p.price_currency, p.category_id, p.attributes, p.images, p.low_stock_below, p.version, \
    p.created_at, p.updated_at, CAST(COALESCE((SELECT SUM(s.on_hand - s.reserved) FROM stock s \
    WHERE s.product_id = p.id), 0) AS BIGINT) AS available FROM products p";

const CATEGORY_COLUMNS: &str =
    "id, parent_id, name, slug, path, position, attributes, created_at, updated_at";

macro_rules! impl_catalog_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn begin_write(&self) -> Result<sqlx::Transaction<'static, $db>, sqlx::Error> {
                emporium_db::begin_write(&self.pool).await
            }

            async fn journal(
                conn: &mut <$db as sqlx::Database>::Connection,
                row: &StockRecord,
                kind: &str,
                (delta_on_hand, delta_reserved): (i64, i64),
                actor: &Actor,
                reservation: Option<Uuid>,
                at: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO stock_movements (product_id, warehouse_id, kind, delta_on_hand, \
                     delta_reserved, on_hand_after, reserved_after, reason, actor, reservation_id, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(row.product_id)
                .bind(row.warehouse_id)
                .bind(kind)
                .bind(delta_on_hand)
                .bind(delta_reserved)
                .bind(row.on_hand)
                .bind(row.reserved)
                .bind(&actor.reason)
                .bind(&actor.who)
                .bind(reservation)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Moves one stock row by the given deltas and journals it.
            async fn move_stock(
                conn: &mut <$db as sqlx::Database>::Connection,
                line: &ReservationLine,
                (delta_on_hand, delta_reserved): (i64, i64),
                kind: &str,
                actor: &Actor,
                reservation: Uuid,
                at: i64,
            ) -> Result<(), sqlx::Error> {
                let row: StockRecord = sqlx::query_as(
                    "UPDATE stock SET on_hand = on_hand + $3, reserved = reserved + $4 \
                     WHERE product_id = $1 AND warehouse_id = $2 \
                     RETURNING warehouse_id, product_id, on_hand, reserved",
                )
                .bind(line.product_id)
                .bind(line.warehouse_id)
                .bind(delta_on_hand)
                .bind(delta_reserved)
                .fetch_one(&mut *conn)
                .await?;
                Self::journal(conn, &row, kind, (delta_on_hand, delta_reserved), actor, Some(reservation), at).await
            }

            /// Binds a product's fields as `$1`–`$10` and `now` as `$11`, in the
            /// order both the insert and the update name them.
            fn bind_product<'q>(
                query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
                p: &'q ProductWrite,
                now: i64,
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
                query
                    .bind(p.id)
                    .bind(&p.sku)
                    .bind(&p.name)
                    .bind(&p.description)
                    .bind(p.price_amount)
                    .bind(&p.price_currency)
                    .bind(p.category_id)
                    .bind(Json(&p.attributes))
                    .bind(Json(&p.images))
                    .bind(p.low_stock_below)
                    .bind(now)
            }

            /// Writes a product change's events, commits, and returns the product as stored.
            async fn finish_product_write(
                mut tx: sqlx::Transaction<'static, $db>,
                id: Uuid,
                events: &[Envelope],
            ) -> Result<ProductRecord, sqlx::Error> {
                outbox::enqueue_all(&mut tx, events).await?;
                let record = sqlx::query_as(sqlx::AssertSqlSafe(format!("{PRODUCT_SELECT} WHERE p.id = $1")))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(record)
            }

            /// What can be sold of a product, and its low-stock threshold.
            async fn availability(
                conn: &mut <$db as sqlx::Database>::Connection,
                product: Uuid,
            ) -> Result<(i64, i64), sqlx::Error> {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT CAST(COALESCE((SELECT SUM(on_hand - reserved) FROM stock WHERE product_id = $1), 0) \
                     AS BIGINT), low_stock_below FROM products WHERE id = $1",
                )
                .bind(product)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(row.unwrap_or((0, 0)))
            }

            /// Writes the stock event a change from `before` calls for, in the same transaction.
            async fn announce(
                tx: &mut sqlx::Transaction<'static, $db>,
                product: Uuid,
                before: i64,
            ) -> Result<(), sqlx::Error> {
                let (after, threshold) = Self::availability(tx, product).await?;
                if let Some(event) = crate::events::stock_transition(product, before, after, threshold) {
                    outbox::enqueue(tx, &event).await?;
                }
                Ok(())
            }

            async fn load_reservation(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: Uuid,
                lock: bool,
            ) -> Result<Option<Reservation>, sqlx::Error> {
                const SQL: &str =
                    "SELECT status, items, expires_at, client_id FROM reservations WHERE id = $1";
                let sql = if lock {
                    <$db as Dialect>::locking(SQL)
                } else {
                    sqlx::AssertSqlSafe(SQL.to_owned())
                };
                let head: Option<(String, Json<BTreeMap<Uuid, i64>>, i64, String)> =
                    sqlx::query_as(sql).bind(id).fetch_optional(&mut *conn).await?;
                let Some((status, Json(items), expires_at, client_id)) = head else {
                    return Ok(None);
                };
                let lines: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
                    "SELECT warehouse_id, product_id, quantity FROM reservation_lines \
                     WHERE reservation_id = $1 ORDER BY product_id, warehouse_id",
                )
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
                let status = ReservationStatus::parse(&status).ok_or_else(|| {
                    sqlx::Error::Decode(format!("reservation {id} has status {status:?}").into())
                })?;
                Ok(Some(Reservation {
                    id,
                    client_id,
                    status,
                    items,
                    lines: lines
                        .into_iter()
                        .map(|(warehouse_id, product_id, quantity)| ReservationLine {
                            warehouse_id,
                            product_id,
                            quantity,
                        })
                        .collect(),
                    expires_at,
                }))
            }

            async fn settle(
                &self,
                id: Uuid,
                kind: &str,
                actor: &Actor,
            ) -> Result<SettleOutcome, StoreError> {
                let mut tx = self.begin_write().await?;
                let Some(reservation) = Self::load_reservation(&mut tx, id, true).await? else {
                    return Ok(SettleOutcome::NotFound);
                };
                if reservation.status != ReservationStatus::Active {
                    return Ok(SettleOutcome::AlreadySettled(reservation.status));
                }
                // Time ran out before the commit (the sweeper has not come by yet):
                // nothing ships; the reservation expires here as the sweeper would.
                let now = self.clock.now_ms();
                let expired_now = kind == "commit" && reservation.expires_at <= now;
                let expiry = Actor {
                    who: actor.who.clone(),
                    reason: "reservation expired".into(),
                };
                let (kind, actor) = if expired_now { ("expire", &expiry) } else { (kind, actor) };
                let (status, on_hand_factor) = match kind {
                    "commit" => ("committed", -1),
                    "expire" => ("expired", 0),
                    _ => ("released", 0),
                };
                let mut before: Vec<(Uuid, i64)> = Vec::new();
                for line in &reservation.lines {
                    // Lock in the same order as reservations do.
                    sqlx::query(<$db as Dialect>::locking(
                        "SELECT on_hand FROM stock WHERE product_id = $1 AND warehouse_id = $2",
                    ))
                    .bind(line.product_id)
                    .bind(line.warehouse_id)
                    .execute(&mut *tx)
                    .await?;
                    if !before.iter().any(|(p, _)| *p == line.product_id) {
                        before.push((line.product_id, Self::availability(&mut tx, line.product_id).await?.0));
                    }
                    Self::move_stock(
                        &mut tx,
                        line,
                        (on_hand_factor * line.quantity, -line.quantity),
                        kind,
                        actor,
                        id,
                        now,
                    )
                    .await?;
                }
                sqlx::query("UPDATE reservations SET status = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(status)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                for (product, available) in before {
                    Self::announce(&mut tx, product, available).await?;
                }
                tx.commit().await?;
                Ok(if expired_now { SettleOutcome::ExpiredNow } else { SettleOutcome::Done })
            }
        }

        #[async_trait::async_trait]
        impl CatalogStore for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            fn outbox(&self) -> Outbox {
                self.outbox_of()
            }

            async fn insert_category(&self, c: &CategoryRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO categories (id, parent_id, name, slug, path, position, attributes, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(c.id)
                .bind(c.parent_id)
                .bind(&c.name)
                .bind(&c.slug)
                .bind(&c.path)
                .bind(c.position)
                .bind(&c.attributes)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)?;
                Ok(())
            }

            async fn category(&self, id: Uuid) -> Result<Option<CategoryRecord>, StoreError> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn categories(&self) -> Result<Vec<CategoryRecord>, StoreError> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CATEGORY_COLUMNS} FROM categories ORDER BY path, position, name"
                )))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn update_category(&self, c: &CategoryRecord) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE categories SET name = $2, slug = $3, position = $4, attributes = $5, \
                     updated_at = $6 WHERE id = $1",
                )
                .bind(c.id)
                .bind(&c.name)
                .bind(&c.slug)
                .bind(c.position)
                .bind(&c.attributes)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_category(&self, id: Uuid) -> Result<CategoryDelete, StoreError> {
                let mut tx = self.begin_write().await?;
                let exists: Option<String> = sqlx::query_scalar(<$db as Dialect>::locking(
                    "SELECT path FROM categories WHERE id = $1",
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_none() {
                    return Ok(CategoryDelete::NotFound);
                }
                // Soft-deleted products still name their category, so they count too.
                let products: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE category_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                if products > 0 {
                    return Ok(CategoryDelete::HasProducts);
                }
                let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM categories WHERE parent_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                if children > 0 {
                    return Ok(CategoryDelete::HasChildren);
                }
                sqlx::query("DELETE FROM categories WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(CategoryDelete::Done)
            }

            async fn insert_product(
                &self,
                p: &ProductWrite,
                now: i64,
                events: &[Envelope],
            ) -> Result<ProductRecord, StoreError> {
                let mut tx = self.begin_write().await?;
                let query = sqlx::query(
                    "INSERT INTO products (id, sku, name, description, price_amount, price_currency, \
                     category_id, attributes, images, low_stock_below, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11)",
                );
                Self::bind_product(query, p, now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let record = Self::finish_product_write(tx, p.id, events).await?;
                Ok(record)
            }

            async fn product(&self, id: Uuid) -> Result<Option<ProductRecord>, StoreError> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{PRODUCT_SELECT} WHERE p.id = $1 AND p.deleted_at IS NULL"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn search(&self, query: &ProductQuery) -> Result<Vec<ProductRecord>, StoreError> {
                let mut qb = search::build::<$db>(PRODUCT_SELECT, query, true);
                Ok(qb.build_query_as::<ProductRecord>().fetch_all(&self.pool).await?)
            }

            async fn search_attributes(&self, query: &ProductQuery) -> Result<Vec<serde_json::Value>, StoreError> {
                let mut qb = search::build::<$db>("SELECT p.attributes FROM products p", query, false);
                let rows: Vec<(Json<serde_json::Value>,)> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|(Json(v),)| v).collect())
            }

            async fn update_product(
                &self,
                p: &ProductWrite,
                expected: Option<i64>,
                now: i64,
                events: &[Envelope],
            ) -> Result<ProductUpdate, StoreError> {
                let mut tx = self.begin_write().await?;
                let current: Option<i64> = sqlx::query_scalar(<$db as Dialect>::locking(
                    "SELECT version FROM products WHERE id = $1 AND deleted_at IS NULL",
                ))
                .bind(p.id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(current) = current else {
                    return Ok(ProductUpdate::NotFound);
                };
                if expected.is_some_and(|v| v != current) {
                    return Ok(ProductUpdate::StaleVersion { current });
                }
                let query = sqlx::query(
                    "UPDATE products SET sku = $2, name = $3, description = $4, price_amount = $5, \
                     price_currency = $6, category_id = $7, attributes = $8, images = $9, \
                     low_stock_below = $10, version = version + 1, updated_at = $11 WHERE id = $1",
                );
                Self::bind_product(query, p, now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let record = Self::finish_product_write(tx, p.id, events).await?;
                Ok(ProductUpdate::Done(Box::new(record)))
            }

            async fn delete_product(&self, id: Uuid, now: i64, events: &[Envelope]) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE products SET deleted_at = $2, updated_at = $2, version = version + 1 \
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if done {
                    outbox::enqueue_all(&mut tx, events).await?;
                }
                tx.commit().await?;
                Ok(done)
            }

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
                let kind = if set_to.is_some() { "set" } else { "adjust" };
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
                    Self::move_stock(&mut tx, &line, (0, line.quantity), "reserve", actor, id, now).await?;
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

            async fn release(&self, id: Uuid, kind: &str, actor: &Actor) -> Result<SettleOutcome, StoreError> {
                self.settle(id, if kind == "expire" { "expire" } else { "release" }, actor).await
            }

            async fn commit(&self, id: Uuid, actor: &Actor) -> Result<SettleOutcome, StoreError> {
                self.settle(id, "commit", actor).await
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

impl PostgresStore {
    fn outbox_of(&self) -> Outbox {
        Outbox(Db::Postgres(self.pool.clone()))
    }
}

impl SqliteStore {
    fn outbox_of(&self) -> Outbox {
        Outbox(Db::Sqlite(self.pool.clone()))
    }
}

impl_catalog_store!(PostgresStore, sqlx::Postgres);
impl_catalog_store!(SqliteStore, sqlx::Sqlite);

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        let lists = [
            (POSTGRES, "migrations/postgres"),
            (SQLITE, "migrations/sqlite"),
        ];
        let listed = emporium_db::embed::check_listed(env!("CARGO_MANIFEST_DIR"), &lists);
        assert_eq!(listed, Ok(()));
    }
}
