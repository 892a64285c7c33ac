//! The sandbox's tables and every statement on them, on either engine.

use emporium_contracts::provider::{
    Authorization, AuthorizationRecord, AuthorizationStatus, CardToken, Operation,
};
use emporium_db::{Db, StoreError};
use uuid::Uuid;

use crate::cards::Behaviour;

/// The sandbox's own migrations.
pub const MIGRATIONS: emporium_db::Migrations = emporium_db::migrations!("0001_sandbox.sql");

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

/// An authorization's row: id, status, amount, currency, captured, refunded.
type AuthorizationRow = (Uuid, String, i64, String, i64, i64);

fn authorization(
    (id, status, amount, currency, captured, refunded): AuthorizationRow,
) -> Result<Authorization, sqlx::Error> {
    let status = match status.as_str() {
        "authorized" => AuthorizationStatus::Authorized,
        "captured" => AuthorizationStatus::Captured,
        "voided" => AuthorizationStatus::Voided,
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
    }
}

const AUTHORIZATION: &str = "SELECT id, status, amount, currency, captured, refunded FROM sandbox_authorizations WHERE id = $1";
const OPERATION: &str =
    "INSERT INTO sandbox_operations (authorization_id, kind, amount, at) VALUES ($1, $2, $3, $4)";

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

    /// Records an approved authorization and its operation.
    pub async fn authorize(
        &self,
        token: &str,
        amount: i64,
        currency: &str,
        now: i64,
    ) -> Result<Authorization, StoreError> {
        let id = Uuid::now_v7();
        let mut tx = self.db.begin_write().await?;
        const SQL: &str = "INSERT INTO sandbox_authorizations (id, token, status, amount, \
            currency, captured, refunded, created_at) VALUES ($1, $2, 'authorized', $3, $4, 0, 0, $5)";
        tx.sql()
            .execute(SQL, (id, token, amount, currency, now))
            .await?;
        tx.sql()
            .execute(OPERATION, (id, "authorize", amount, now))
            .await?;
        tx.commit().await?;
        Ok(Authorization {
            id,
            status: AuthorizationStatus::Authorized,
            amount,
            currency: currency.to_owned(),
            captured: 0,
            refunded: 0,
        })
    }

    /// Applies a capture, void or refund under the authorization's row lock,
    /// so concurrent moves on one authorization take turns.
    pub async fn apply(&self, id: Uuid, m: Move, now: i64) -> Result<Moved, StoreError> {
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
        tx.commit().await?;
        Ok(Moved::Done(a))
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

emporium_db::migrations_are_listed!(MIGRATIONS);
