//! The sandbox's tables and every statement on them, on either engine.

use emporium_contracts::provider::{
    Authorization, AuthorizationRecord, AuthorizationStatus, CardToken, Notification,
    NotificationKind, Operation,
};
use emporium_db::{Db, StoreError, Tx};
use uuid::Uuid;

use crate::cards::Behaviour;

/// The sandbox's own migrations.
pub const MIGRATIONS: emporium_db::Migrations =
    emporium_db::migrations!("0001_sandbox.sql", "0002_cancels_and_webhooks.sql");

/// A money movement asked of an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Capture this much of what is authorized (the rest is released).
    Capture(i64),
    Void,
    /// Pay back this much of what is captured.
    Refund(i64),
}

/// What became of a [`Move`].
#[derive(Debug)]
pub enum Moved {
    Done(Authorization),
    NotFound,
    /// The authorization's state does not allow it.
    WrongState(AuthorizationStatus),
    /// More than there is to capture or refund.
    TooMuch {
        available: i64,
    },
}

/// What became of an authorize.
#[derive(Debug)]
pub enum Authorized {
    Done(Authorization),
    /// The reference was cancelled: nothing was authorized.
    ReferenceCancelled,
}

/// A notification claimed for delivery, and how often it was tried before.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub notification: Notification,
    pub attempts: i64,
}

emporium_db::record! {
    /// A row of `notifications`, as delivery reads it.
    struct NotificationRow {
        id: Uuid,
        kind: String,
        authorization_id: Uuid,
        reference: Uuid,
        amount: i64,
        currency: String,
        created_at: i64,
        attempts: i64,
    }
}

fn claimed(row: NotificationRow) -> Result<Claimed, sqlx::Error> {
    let kind = match row.kind.as_str() {
        "capture_settled" => NotificationKind::CaptureSettled,
        "capture_failed" => NotificationKind::CaptureFailed,
        other => {
            let what = format!("notification {} has kind {other:?}", row.id);
            return Err(sqlx::Error::Decode(what.into()));
        }
    };
    Ok(Claimed {
        notification: Notification {
            id: row.id,
            kind,
            authorization_id: row.authorization_id,
            reference: row.reference,
            amount: row.amount,
            currency: row.currency,
            created_at: row.created_at,
        },
        attempts: row.attempts,
    })
}

fn kind_str(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::CaptureSettled => "capture_settled",
        NotificationKind::CaptureFailed => "capture_failed",
    }
}

/// An authorization's row: id, status, amount, currency, captured, refunded.
type AuthorizationRow = (Uuid, String, i64, String, i64, i64);

fn authorization(
    (id, status, amount, currency, captured, refunded): AuthorizationRow,
) -> Result<Authorization, sqlx::Error> {
    let status = match status.as_str() {
        "authorized" => AuthorizationStatus::Authorized,
        "captured" => AuthorizationStatus::Captured,
        "voided" => AuthorizationStatus::Voided,
        "capture_failed" => AuthorizationStatus::CaptureFailed,
        other => {
            let what = format!("authorization {id} has status {other:?}");
            return Err(sqlx::Error::Decode(what.into()));
        }
    };
    Ok(Authorization {
        id,
        status,
        amount,
        currency,
        captured,
        refunded,
    })
}

fn status_str(status: AuthorizationStatus) -> &'static str {
    match status {
        AuthorizationStatus::Authorized => "authorized",
        AuthorizationStatus::Captured => "captured",
        AuthorizationStatus::Voided => "voided",
        AuthorizationStatus::CaptureFailed => "capture_failed",
    }
}

const AUTHORIZATION: &str = "SELECT id, status, amount, currency, captured, refunded FROM sandbox_authorizations WHERE id = $1";
const OPERATION: &str =
    "INSERT INTO sandbox_operations (authorization_id, kind, amount, at) VALUES ($1, $2, $3, $4)";
const SET_STATUS: &str = "UPDATE sandbox_authorizations SET status = $2 WHERE id = $1";

/// Orders the authorizes and the cancels of one reference, so that a cancel
/// sees every authorization under its reference, or the authorize sees the
/// cancel's tombstone, whichever commits first; never neither.
///
/// Without it, on PostgreSQL (READ COMMITTED) an authorize could check for a
/// tombstone before a racing cancel commits one, while the cancel looks for
/// authorizations before the authorize commits its own: both would commit,
/// leaving an authorization holding money under a cancelled reference. A
/// row lock cannot order them, as neither row need exist yet; so both take a
/// transaction-scoped advisory lock on the reference first, and do their
/// reads after it (each statement then sees what the other committed). A
/// hash collision between two references only makes them wait on each
/// other. Captures, voids and refunds do not take it: they lock the
/// authorization's row, which the cancel locks too, after this lock, so the
/// locks are always taken in one order.
///
/// SQLite needs nothing: its write transaction (`BEGIN IMMEDIATE`) holds the
/// whole database from its start, so the two run one after the other.
async fn lock_reference(tx: &mut Tx, reference: Uuid) -> Result<(), sqlx::Error> {
    if matches!(*tx, Tx::Postgres(_)) {
        const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('sandbox-reference:' || $1))";
        tx.sql().execute(LOCK, (reference.to_string(),)).await?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens the database and applies the sandbox's migrations and the
    /// idempotency keys' table.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let parts = [MIGRATIONS, emporium_http::idempotency::MIGRATIONS];
        let db = emporium_db::open_service_db(url, max_connections, &parts).await?;
        Ok(Self { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn insert_token(
        &self,
        card: &CardToken,
        behaviour: Behaviour,
        now: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sandbox_tokens (token, behaviour, brand, last4, \
            exp_month, exp_year, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let shown = (&card.brand, &card.last4, card.exp_month, card.exp_year);
        let values = (
            &card.token,
            behaviour.as_str(),
            shown.0,
            shown.1,
            shown.2,
            shown.3,
            now,
        );
        self.db.sql().execute(SQL, values).await?;
        Ok(())
    }

    pub async fn behaviour(&self, token: &str) -> Result<Option<Behaviour>, StoreError> {
        const SQL: &str = "SELECT behaviour FROM sandbox_tokens WHERE token = $1";
        let row: Option<(String,)> = self.db.sql().fetch_optional(SQL, (token,)).await?;
        Ok(row.and_then(|(b,)| Behaviour::parse(&b)))
    }

    /// Records an approved authorization under `reference` and its
    /// operation, unless the reference was cancelled (checked in the same
    /// transaction, after `lock_reference`, so a racing cancel cannot miss it).
    pub async fn authorize(
        &self,
        token: &str,
        amount: i64,
        currency: &str,
        reference: Uuid,
        now: i64,
    ) -> Result<Authorized, StoreError> {
        let id = Uuid::now_v7();
        let mut tx = self.db.begin_write().await?;
        lock_reference(&mut tx, reference).await?;
        const CANCELLED: &str = "SELECT reference FROM cancelled_references WHERE reference = $1";
        let cancelled: Option<(Uuid,)> = tx.sql().fetch_optional(CANCELLED, (reference,)).await?;
        if cancelled.is_some() {
            // At once rather than on drop: the reference's lock goes with it.
            tx.rollback().await?;
            return Ok(Authorized::ReferenceCancelled);
        }
        const SQL: &str = "INSERT INTO sandbox_authorizations (id, token, status, amount, \
            currency, captured, refunded, created_at, reference) \
            VALUES ($1, $2, 'authorized', $3, $4, 0, 0, $5, $6)";
        tx.sql()
            .execute(SQL, (id, token, amount, currency, now, reference))
            .await?;
        tx.sql()
            .execute(OPERATION, (id, "authorize", amount, now))
            .await?;
        tx.commit().await?;
        Ok(Authorized::Done(Authorization {
            id,
            status: AuthorizationStatus::Authorized,
            amount,
            currency: currency.to_owned(),
            captured: 0,
            refunded: 0,
        }))
    }

    /// A technical cancel of `reference`, in one transaction: leaves its
    /// tombstone (once), voids every authorization under it that is still
    /// only authorized (each with a `void` operation, as a void does), and
    /// gives the ids of all those under it that are voided, by this cancel
    /// or before. Captured ones are left as they are: undoing a capture is a
    /// refund, the merchant's to ask for.
    pub async fn cancel(&self, reference: Uuid, now: i64) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_reference(&mut tx, reference).await?;
        const TOMBSTONE: &str = "INSERT INTO cancelled_references (reference, cancelled_at) \
            VALUES ($1, $2) ON CONFLICT (reference) DO NOTHING";
        tx.sql().execute(TOMBSTONE, (reference, now)).await?;
        const UNDER: &str = "SELECT id, status, amount, currency, captured, refunded \
            FROM sandbox_authorizations WHERE reference = $1 ORDER BY id";
        let sql = tx.locking(UNDER);
        let rows: Vec<AuthorizationRow> = tx.sql().fetch_all(sql, (reference,)).await?;
        let mut voided = Vec::new();
        for row in rows {
            let a = authorization(row)?;
            match a.status {
                AuthorizationStatus::Authorized => {
                    let status = status_str(AuthorizationStatus::Voided);
                    tx.sql().execute(SET_STATUS, (a.id, status)).await?;
                    tx.sql()
                        .execute(OPERATION, (a.id, "void", a.amount, now))
                        .await?;
                    voided.push(a.id);
                }
                AuthorizationStatus::Voided => voided.push(a.id),
                AuthorizationStatus::Captured | AuthorizationStatus::CaptureFailed => {}
            }
        }
        tx.commit().await?;
        Ok(voided)
    }

    /// Applies a capture, void or refund under the authorization's row lock,
    /// so concurrent moves on one authorization take turns.
    ///
    /// A capture with `notify_at` also queues its notification, due then, in
    /// the same transaction: a capture is never without its notification,
    /// nor a notification without its capture.
    pub async fn apply(
        &self,
        id: Uuid,
        m: Move,
        now: i64,
        notify_at: Option<i64>,
    ) -> Result<Moved, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let sql = tx.locking(AUTHORIZATION);
        let row: Option<AuthorizationRow> = tx.sql().fetch_optional(sql, (id,)).await?;
        let Some(row) = row else {
            return Ok(Moved::NotFound);
        };
        let mut a = authorization(row)?;
        let (kind, amount) = match (m, a.status) {
            (Move::Capture(amount), AuthorizationStatus::Authorized) => {
                if amount > a.amount {
                    return Ok(Moved::TooMuch {
                        available: a.amount,
                    });
                }
                (a.status, a.captured) = (AuthorizationStatus::Captured, amount);
                ("capture", amount)
            }
            (Move::Void, AuthorizationStatus::Authorized) => {
                a.status = AuthorizationStatus::Voided;
                ("void", a.amount)
            }
            (Move::Refund(amount), AuthorizationStatus::Captured) => {
                let available = a.captured - a.refunded;
                if amount > available {
                    return Ok(Moved::TooMuch { available });
                }
                a.refunded += amount;
                ("refund", amount)
            }
            (_, status) => return Ok(Moved::WrongState(status)),
        };
        const UPDATE: &str = "UPDATE sandbox_authorizations SET status = $2, captured = $3, \
            refunded = $4 WHERE id = $1";
        let values = (id, status_str(a.status), a.captured, a.refunded);
        tx.sql().execute(UPDATE, values).await?;
        tx.sql().execute(OPERATION, (id, kind, amount, now)).await?;
        if let (Move::Capture(captured), Some(due_at)) = (m, notify_at) {
            queue_capture_notification(&mut tx, &a, captured, now, due_at).await?;
        }
        tx.commit().await?;
        Ok(Moved::Done(a))
    }

    /// Makes a late capture failure true: a `captured` authorization becomes
    /// `capture_failed`, with a `capture_failed` operation of `amount`.
    /// Once: an authorization no longer `captured` (failed already) is left
    /// as it is. Gives whether it changed.
    pub async fn fail_capture(&self, id: Uuid, amount: i64, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        const FAIL: &str = "UPDATE sandbox_authorizations SET status = $2 \
            WHERE id = $1 AND status = $3";
        let statuses = (
            status_str(AuthorizationStatus::CaptureFailed),
            status_str(AuthorizationStatus::Captured),
        );
        let changed = tx.sql().execute(FAIL, (id, statuses.0, statuses.1)).await? == 1;
        if changed {
            tx.sql()
                .execute(OPERATION, (id, "capture_failed", amount, now))
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Claims up to `limit` notifications due at `now` that are neither
    /// delivered nor given up, by moving their due time to `lease_until`: a
    /// claimer that dies leaves them to be sent again then. The claim is one
    /// short write transaction (the rows locked on PostgreSQL, where a
    /// second claimer waits and then finds them no longer due), so two
    /// replicas never claim one notification at once.
    pub async fn claim_notifications(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        const DUE: &str = "SELECT id, kind, authorization_id, reference, amount, currency, \
            created_at, attempts FROM notifications \
            WHERE delivered_at IS NULL AND gave_up_at IS NULL AND due_at <= $1 \
            ORDER BY due_at LIMIT $2";
        // A look without the write lock first: nearly every poll finds
        // nothing, and on SQLite a write transaction would hold up the API's.
        let any: Option<NotificationRow> = self.db.sql().fetch_optional(DUE, (now, 1_i64)).await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_write().await?;
        let sql = tx.locking(DUE);
        let rows: Vec<NotificationRow> = tx.sql().fetch_all(sql, (now, limit)).await?;
        const LEASE: &str = "UPDATE notifications SET due_at = $2 WHERE id = $1";
        for row in &rows {
            tx.sql().execute(LEASE, (row.id, lease_until)).await?;
        }
        tx.commit().await?;
        let decoded: Result<Vec<Claimed>, sqlx::Error> = rows.into_iter().map(claimed).collect();
        Ok(decoded?)
    }

    /// The endpoint took the notification.
    pub async fn notification_delivered(&self, id: Uuid, now: i64) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE notifications SET delivered_at = $2 WHERE id = $1 AND delivered_at IS NULL";
        self.db.sql().execute(SQL, (id, now)).await?;
        Ok(())
    }

    /// The endpoint did not take the notification, now tried `attempts`
    /// times: it is due again at `retry_at`, or given up without one.
    pub async fn notification_failed(
        &self,
        id: Uuid,
        attempts: i64,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (sql, at) = match retry_at {
            Some(at) => (
                "UPDATE notifications SET attempts = $2, due_at = $3 WHERE id = $1",
                at,
            ),
            None => (
                "UPDATE notifications SET attempts = $2, gave_up_at = $3 WHERE id = $1",
                now,
            ),
        };
        self.db.sql().execute(sql, (id, attempts, at)).await?;
        Ok(())
    }

    /// An authorization and every operation on it.
    pub async fn record(&self, id: Uuid) -> Result<Option<AuthorizationRecord>, StoreError> {
        let mut read = self.db.begin_read().await?;
        let row: Option<AuthorizationRow> = read.sql().fetch_optional(AUTHORIZATION, (id,)).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        const OPERATIONS: &str = "SELECT kind, amount, at FROM sandbox_operations \
            WHERE authorization_id = $1 ORDER BY seq";
        let ops: Vec<(String, i64, i64)> = read.sql().fetch_all(OPERATIONS, (id,)).await?;
        read.commit().await?;
        Ok(Some(AuthorizationRecord {
            authorization: authorization(row)?,
            operations: ops
                .into_iter()
                .map(|(kind, amount, at)| Operation { kind, amount, at })
                .collect(),
        }))
    }
}

/// Queues the notification of a capture of `amount` on `a`: `capture_failed`
/// for the card that fails late, `capture_settled` for every other.
async fn queue_capture_notification(
    tx: &mut Tx,
    a: &Authorization,
    amount: i64,
    now: i64,
    due_at: i64,
) -> Result<(), sqlx::Error> {
    const OF: &str = "SELECT a.reference, t.behaviour FROM sandbox_authorizations a \
        JOIN sandbox_tokens t ON t.token = a.token WHERE a.id = $1";
    let (reference, behaviour): (Uuid, String) = tx.sql().fetch_one(OF, (a.id,)).await?;
    let kind = if Behaviour::parse(&behaviour) == Some(Behaviour::LateCaptureFailure) {
        NotificationKind::CaptureFailed
    } else {
        NotificationKind::CaptureSettled
    };
    const NOTIFY: &str = "INSERT INTO notifications (id, kind, authorization_id, reference, \
        amount, currency, created_at, due_at, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)";
    let values = (
        Uuid::now_v7(),
        kind_str(kind),
        a.id,
        reference,
        amount,
        &a.currency,
        now,
        due_at,
    );
    tx.sql().execute(NOTIFY, values).await?;
    Ok(())
}

emporium_db::migrations_are_listed!(MIGRATIONS);
