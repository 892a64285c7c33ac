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

    /// Holds an active reservation's stock until `until` (a confirmed order's,
    /// until it ships or is cancelled): its `expires_at` moves there, never
    /// earlier than it was, so a repeated keep is a retry. Moves no stock.
    /// Past `expires_at` it expires the reservation instead, as a commit
    /// would ([`SettleOutcome::ExpiredNow`], journaled for `actor`); one no
    /// longer active is [`SettleOutcome::AlreadySettled`].
    async fn keep(&self, id: Uuid, until: i64, actor: &Actor) -> Result<SettleOutcome, StoreError>;

    /// Puts a committed reservation's goods back on hand, each line in the
    /// warehouse it left (`on_hand` rises, `reserved` does not move), and
    /// marks it `restocked`; once only: again is [`RestockOutcome::AlreadyRestocked`]
    /// and moves nothing.
    async fn restock(&self, id: Uuid, actor: &Actor) -> Result<RestockOutcome, StoreError>;

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

/// How a settlement moves each line's stock row: (`on_hand`, `reserved`)
/// changes by these times the line's quantity.
type Factors = (i64, i64);
/// Given back (released or expired): only `reserved` falls.
const GIVE_BACK: Factors = (0, -1);
/// Shipped: `on_hand` and `reserved` both fall.
const SHIP: Factors = (-1, -1);
/// Back from a shipment: `on_hand` rises.
const PUT_BACK: Factors = (1, 0);

/// Moves the stock row of every line of `reservation` (whose row is locked)
/// by `factors` times its quantity, journaled as `movement`, and sets the
/// reservation's `status`. The stock rows are locked in the order
/// reservations lock them (lines come sorted by product, then warehouse), and
/// the stock events the change calls for are written in the transaction.
async fn move_lines(
    tx: &mut Tx,
    reservation: &Reservation,
    movement: &Movement<'_>,
    factors: Factors,
    status: ReservationStatus,
) -> Result<(), sqlx::Error> {
    let mut before: Vec<(Uuid, i64)> = Vec::new();
    for line in &reservation.lines {
        let sql =
            tx.locking("SELECT on_hand FROM stock WHERE product_id = $1 AND warehouse_id = $2");
        let row = (line.product_id, line.warehouse_id);
        let _: Option<(i64,)> = tx.sql().fetch_optional(sql, row).await?;
        if !before.iter().any(|(p, _)| *p == line.product_id) {
            let (available, _) = availability(tx, line.product_id).await?;
            before.push((line.product_id, available));
        }
        let deltas = (factors.0 * line.quantity, factors.1 * line.quantity);
        move_stock(tx, line, deltas, movement).await?;
    }
    const STATUS: &str = "UPDATE reservations SET status = $2, updated_at = $3 WHERE id = $1";
    let values = (reservation.id, status.as_str(), movement.at);
    tx.sql().execute(STATUS, values).await?;
    for (product, available) in before {
        announce(tx, product, available).await?;
    }
    Ok(())
}

/// Who expires a reservation found past its time by `actor`'s call.
fn expiry_by(actor: &Actor) -> Actor {
    Actor {
        who: actor.who.clone(),
        reason: "reservation expired".into(),
    }
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
        let expiry = expiry_by(actor);
        let (kind, actor) = if expired_now {
            (MovementKind::Expire, &expiry)
        } else {
            (kind, actor)
        };
        let (status, factors) = match kind {
            MovementKind::Commit => (ReservationStatus::Committed, SHIP),
            MovementKind::Expire => (ReservationStatus::Expired, GIVE_BACK),
            _ => (ReservationStatus::Released, GIVE_BACK),
        };
        let movement = Movement {
            kind,
            actor,
            reservation: id,
            at: now,
        };
        move_lines(&mut tx, &reservation, &movement, factors, status).await?;
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

    async fn keep(&self, id: Uuid, until: i64, actor: &Actor) -> Result<SettleOutcome, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let Some(reservation) = load_reservation(&mut tx, id, true).await? else {
            return Ok(SettleOutcome::NotFound);
        };
        if reservation.status != ReservationStatus::Active {
            return Ok(SettleOutcome::AlreadySettled(reservation.status));
        }
        let now = self.clock.now_ms();
        if reservation.expires_at <= now {
            // Too late to keep (the sweeper has not come by yet): its stock
            // goes back on sale here, as the sweeper would, never held longer.
            let expiry = expiry_by(actor);
            let movement = Movement {
                kind: MovementKind::Expire,
                actor: &expiry,
                reservation: id,
                at: now,
            };
            let expired = ReservationStatus::Expired;
            move_lines(&mut tx, &reservation, &movement, GIVE_BACK, expired).await?;
            tx.commit().await?;
            return Ok(SettleOutcome::ExpiredNow);
        }
        const KEEP: &str = "UPDATE reservations SET expires_at = $2, updated_at = $3 WHERE id = $1";
        let expires_at = until.max(reservation.expires_at);
        tx.sql().execute(KEEP, (id, expires_at, now)).await?;
        tx.commit().await?;
        Ok(SettleOutcome::Done)
    }

    async fn restock(&self, id: Uuid, actor: &Actor) -> Result<RestockOutcome, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // The row lock makes concurrent restocks queue: the first moves the
        // stock, the others find it restocked.
        let Some(reservation) = load_reservation(&mut tx, id, true).await? else {
            return Ok(RestockOutcome::NotFound);
        };
        match reservation.status {
            ReservationStatus::Committed => {}
            ReservationStatus::Restocked => return Ok(RestockOutcome::AlreadyRestocked),
            other => return Ok(RestockOutcome::NotCommitted(other)),
        }
        let movement = Movement {
            kind: MovementKind::Restock,
            actor,
            reservation: id,
            at: self.clock.now_ms(),
        };
        let restocked = ReservationStatus::Restocked;
        move_lines(&mut tx, &reservation, &movement, PUT_BACK, restocked).await?;
        tx.commit().await?;
        Ok(RestockOutcome::Done)
    }

    async fn expired_reservations(&self, now: i64, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        const SQL: &str = "SELECT id FROM reservations WHERE status = 'active' \
            AND expires_at <= $1 ORDER BY expires_at LIMIT $2";
        let ids: Vec<(Uuid,)> = self.db.sql().fetch_all(SQL, (now, limit)).await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}
