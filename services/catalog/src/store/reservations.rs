//! Stock reservations for the services that sell.

use emporium_db::Tx;

use super::sql::SqlStore;
use super::stock::{Movement, announce, availability, move_stock};
use super::*;
use crate::domain::allocate;

#[async_trait::async_trait]
pub trait ReservationStore: Send + Sync {
    /// Reserves `items` for `client`; the same id again from the same client
    /// with the same items is the reservation made before.
    async fn reserve(
        &self,
        r: &ReservationRequest<'_>,
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

/// A reservation's row: status, items, expiry, client.
type ReservationHead = (String, Json<BTreeMap<Uuid, i64>>, i64, String);

/// A reservation with its lines; `lock` locks its row for a settlement.
async fn load_reservation(
    tx: &mut Tx,
    id: Uuid,
    lock: bool,
) -> Result<Option<Reservation>, sqlx::Error> {
    const SQL: &str = "SELECT status, items, expires_at, client_id FROM reservations WHERE id = $1";
    let sql = if lock {
        tx.locking(SQL)
    } else {
        sqlx::AssertSqlSafe(SQL.to_owned())
    };
    let head: Option<ReservationHead> = tx.sql().fetch_optional(sql, (id,)).await?;
    let Some((status, Json(items), expires_at, client_id)) = head else {
        return Ok(None);
    };
    const LINES: &str = "SELECT warehouse_id, product_id, quantity FROM reservation_lines \
        WHERE reservation_id = $1 ORDER BY product_id, warehouse_id";
    let lines: Vec<(Uuid, Uuid, i64)> = tx.sql().fetch_all(LINES, (id,)).await?;
    let status = ReservationStatus::parse(&status).ok_or_else(|| {
        sqlx::Error::Decode(format!("reservation {id} has status {status:?}").into())
    })?;
    let lines = lines
        .into_iter()
        .map(|(warehouse_id, product_id, quantity)| ReservationLine {
            warehouse_id,
            product_id,
            quantity,
        })
        .collect();
    Ok(Some(Reservation {
        id,
        client_id,
        status,
        items,
        lines,
        expires_at,
    }))
}

/// Free stock per (warehouse, product) of the live ones of `products`, their
/// rows locked in product then warehouse order (so no two reservations can
/// wait on each other), and the products that are unknown or deleted.
async fn lock_free_stock(
    tx: &mut Tx,
    products: impl Iterator<Item = &Uuid>,
) -> Result<(BTreeMap<(Uuid, Uuid), i64>, Vec<Uuid>), sqlx::Error> {
    let mut free = BTreeMap::new();
    let mut unknown = Vec::new();
    for product in products {
        const LIVE: &str = "SELECT version FROM products WHERE id = $1 AND deleted_at IS NULL";
        let live: Option<(i64,)> = tx.sql().fetch_optional(LIVE, (product,)).await?;
        if live.is_none() {
            unknown.push(*product);
            continue;
        }
        let sql = tx.locking(
            "SELECT warehouse_id, product_id, on_hand, reserved FROM stock \
             WHERE product_id = $1 ORDER BY warehouse_id",
        );
        let rows: Vec<StockRecord> = tx.sql().fetch_all(sql, (product,)).await?;
        for r in rows {
            free.insert((r.warehouse_id, r.product_id), r.on_hand - r.reserved);
        }
    }
    Ok((free, unknown))
}

/// The free stock of `product` over every warehouse.
fn free_of(free: &BTreeMap<(Uuid, Uuid), i64>, product: &Uuid) -> i64 {
    free.iter()
        .filter(|((_, p), _)| p == product)
        .map(|(_, f)| *f)
        .sum()
}

impl SqlStore {
    async fn settle(
        &self,
        id: Uuid,
        kind: MovementKind,
        actor: &Actor,
    ) -> Result<SettleOutcome, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let Some(reservation) = load_reservation(&mut tx, id, true).await? else {
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
        let (kind, actor) = if expired_now {
            (MovementKind::Expire, &expiry)
        } else {
            (kind, actor)
        };
        let (status, on_hand_factor) = match kind {
            MovementKind::Commit => (ReservationStatus::Committed, -1),
            MovementKind::Expire => (ReservationStatus::Expired, 0),
            _ => (ReservationStatus::Released, 0),
        };
        let movement = Movement {
            kind,
            actor,
            reservation: id,
            at: now,
        };
        let mut before: Vec<(Uuid, i64)> = Vec::new();
        for line in &reservation.lines {
            // Lock in the same order as reservations do.
            let sql =
                tx.locking("SELECT on_hand FROM stock WHERE product_id = $1 AND warehouse_id = $2");
            let row = (line.product_id, line.warehouse_id);
            let _: Option<(i64,)> = tx.sql().fetch_optional(sql, row).await?;
            if !before.iter().any(|(p, _)| *p == line.product_id) {
                let (available, _) = availability(&mut tx, line.product_id).await?;
                before.push((line.product_id, available));
            }
            let deltas = (on_hand_factor * line.quantity, -line.quantity);
            move_stock(&mut tx, line, deltas, &movement).await?;
        }
        const STATUS: &str = "UPDATE reservations SET status = $2, updated_at = $3 WHERE id = $1";
        tx.sql().execute(STATUS, (id, status.as_str(), now)).await?;
        for (product, available) in before {
            announce(&mut tx, product, available).await?;
        }
        tx.commit().await?;
        Ok(if expired_now {
            SettleOutcome::ExpiredNow
        } else {
            SettleOutcome::Done
        })
    }
}

#[async_trait::async_trait]
impl ReservationStore for SqlStore {
    async fn reserve(
        &self,
        r: &ReservationRequest<'_>,
        actor: &Actor,
    ) -> Result<ReserveOutcome, StoreError> {
        let (id, client, items, expires_at) = (r.id, r.client, r.items, r.expires_at);
        let mut tx = self.db.begin_write().await?;
        let (free, unknown) = lock_free_stock(&mut tx, items.keys()).await?;
        // Checked after the locks: a concurrent request with the same id has
        // either committed (and is seen here) or not started its writes.
        if let Some(existing) = load_reservation(&mut tx, id, false).await? {
            return Ok(repeated(existing, client, items));
        }
        if !unknown.is_empty() {
            return Ok(ReserveOutcome::UnknownProducts(unknown));
        }
        let Some(plan) = allocate(items, &free) else {
            let positive: BTreeMap<(Uuid, Uuid), i64> =
                free.iter().map(|(k, f)| (*k, (*f).max(0))).collect();
            let short = items
                .iter()
                .filter(|(p, q)| free_of(&positive, p) < **q)
                .map(|(p, _)| *p)
                .collect();
            return Ok(ReserveOutcome::OutOfStock(short));
        };
        let now = self.clock.now_ms();
        const HEAD: &str = "INSERT INTO reservations (id, status, items, expires_at, created_at, \
            updated_at, client_id) VALUES ($1, 'active', $2, $3, $4, $4, $5)";
        let inserted = tx
            .sql()
            .execute(HEAD, (id, Json(items), expires_at, now, client))
            .await
            .map_err(StoreError::from);
        if let Err(StoreError::Conflict { .. }) = inserted {
            // Another request with this id but other products won the race.
            drop(tx);
            let mut read = self.db.begin_read().await?;
            return Ok(match load_reservation(&mut read, id, false).await? {
                Some(existing) => repeated(existing, client, items),
                None => ReserveOutcome::Mismatch,
            });
        }
        inserted?;
        let movement = Movement {
            kind: MovementKind::Reserve,
            actor,
            reservation: id,
            at: now,
        };
        let mut lines = Vec::with_capacity(plan.len());
        for a in plan {
            let line = ReservationLine {
                warehouse_id: a.warehouse_id,
                product_id: a.product_id,
                quantity: a.quantity,
            };
            const LINE: &str = "INSERT INTO reservation_lines (reservation_id, warehouse_id, \
                product_id, quantity) VALUES ($1, $2, $3, $4)";
            let values = (id, line.warehouse_id, line.product_id, line.quantity);
            tx.sql().execute(LINE, values).await?;
            move_stock(&mut tx, &line, (0, line.quantity), &movement).await?;
            lines.push(line);
        }
        for product in items.keys() {
            announce(&mut tx, *product, free_of(&free, product)).await?;
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
        let mut read = self.db.begin_read().await?;
        Ok(load_reservation(&mut read, id, false).await?)
    }

    async fn release(
        &self,
        id: Uuid,
        kind: MovementKind,
        actor: &Actor,
    ) -> Result<SettleOutcome, StoreError> {
        let kind = if kind == MovementKind::Expire {
            MovementKind::Expire
        } else {
            MovementKind::Release
        };
        self.settle(id, kind, actor).await
    }

    async fn commit(&self, id: Uuid, actor: &Actor) -> Result<SettleOutcome, StoreError> {
        self.settle(id, MovementKind::Commit, actor).await
    }

    async fn expired_reservations(&self, now: i64, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        const SQL: &str = "SELECT id FROM reservations WHERE status = 'active' \
            AND expires_at <= $1 ORDER BY expires_at LIMIT $2";
        let ids: Vec<(Uuid,)> = self.db.sql().fetch_all(SQL, (now, limit)).await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}
