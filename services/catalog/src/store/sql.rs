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

use super::*;
use super::{categories, products, reservations, search, stock};
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
                kind: MovementKind,
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
                .bind(kind.as_str())
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
                kind: MovementKind,
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
                kind: MovementKind,
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
                let expired_now = kind == MovementKind::Commit && reservation.expires_at <= now;
                let expiry = Actor {
                    who: actor.who.clone(),
                    reason: "reservation expired".into(),
                };
                let (kind, actor) = if expired_now { (MovementKind::Expire, &expiry) } else { (kind, actor) };
                let (status, on_hand_factor) = match kind {
                    MovementKind::Commit => (ReservationStatus::Committed, -1),
                    MovementKind::Expire => (ReservationStatus::Expired, 0),
                    _ => (ReservationStatus::Released, 0),
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
                    .bind(status.as_str())
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
categories::impl_categories_store!(PostgresStore, sqlx::Postgres);
products::impl_products_store!(PostgresStore, sqlx::Postgres);
stock::impl_stock_store!(PostgresStore, sqlx::Postgres);
reservations::impl_reservations_store!(PostgresStore, sqlx::Postgres);
categories::impl_categories_store!(SqliteStore, sqlx::Sqlite);
products::impl_products_store!(SqliteStore, sqlx::Sqlite);
stock::impl_stock_store!(SqliteStore, sqlx::Sqlite);
reservations::impl_reservations_store!(SqliteStore, sqlx::Sqlite);

emporium_db::migrations_are_listed!(POSTGRES => "migrations/postgres", SQLITE => "migrations/sqlite");
