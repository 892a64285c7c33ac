//! The ledger's table: appends that keep one unbroken chain, reads, and the
//! verification of everything stored.

use emporium_db::{Db, StoreError, Tx};
use uuid::Uuid;

use crate::ledger::{self, Account, Entry, Movement, Transfer, TransferError, Verification};

/// Why a transfer was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The transfer itself is refused (an amount, a currency, a balance).
    #[error(transparent)]
    Refused(#[from] TransferError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RecordError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

emporium_db::record! {
    struct EntryRow {
        seq: i64,
        transaction_id: Uuid,
        intent_id: Uuid,
        movement: String,
        account: String,
        amount: i64,
        currency: String,
        at: i64,
        prev_hash: String,
        hash: String,
    }
}

impl TryFrom<EntryRow> for Entry {
    type Error = sqlx::Error;

    fn try_from(r: EntryRow) -> Result<Self, Self::Error> {
        let bad =
            |what: &str| sqlx::Error::Decode(format!("ledger entry {}: bad {what}", r.seq).into());
        Ok(Entry {
            movement: Movement::parse(&r.movement).ok_or_else(|| bad("movement"))?,
            account: Account::parse(&r.account).ok_or_else(|| bad("account"))?,
            seq: r.seq,
            transaction_id: r.transaction_id,
            intent_id: r.intent_id,
            amount: r.amount,
            currency: r.currency,
            at: r.at,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}

const ENTRY: &str = "SELECT seq, transaction_id, intent_id, movement, account, amount, currency, \
    at, prev_hash, hash FROM ledger_entries";

fn entries(rows: Vec<EntryRow>) -> Result<Vec<Entry>, sqlx::Error> {
    rows.into_iter().map(Entry::try_from).collect()
}

/// The ledger in a service's database.
#[derive(Debug, Clone)]
pub struct Ledger {
    db: Db,
}

impl Ledger {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records `transfer` at `at` inside `tx`, the caller's transaction (so
    /// the money movement and the state change it belongs to commit
    /// together). The chain's head is locked first: appends from any number
    /// of requests or replicas take turns and the chain never forks; the
    /// intent's balances are read under that lock, so concurrent refunds
    /// cannot together draw more than was captured.
    pub async fn record(
        &self,
        tx: &mut Tx,
        transfer: &Transfer,
        at: i64,
    ) -> Result<[Entry; 2], RecordError> {
        let head = tx.locking("SELECT seq, hash FROM ledger_head WHERE id = 1");
        let (seq, hash): (i64, String) = tx.sql().fetch_one(head, ()).await?;
        let of_intent = sqlx::AssertSqlSafe(format!("{ENTRY} WHERE intent_id = $1 ORDER BY seq"));
        let rows: Vec<EntryRow> = tx.sql().fetch_all(of_intent, (transfer.intent_id,)).await?;
        let posted = ledger::post(transfer, &entries(rows)?, (seq, &hash), at)?;
        const INSERT: &str = "INSERT INTO ledger_entries (seq, transaction_id, intent_id, \
            movement, account, amount, currency, at, prev_hash, hash) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        for e in &posted {
            let (ids, kind) = (
                (e.transaction_id, e.intent_id),
                (e.movement.as_str(), e.account.as_str()),
            );
            let values = (
                e.seq,
                ids.0,
                ids.1,
                kind.0,
                kind.1,
                e.amount,
                &e.currency,
                e.at,
                &e.prev_hash,
                &e.hash,
            );
            tx.sql().execute(INSERT, values).await?;
        }
        let last = &posted[1];
        const HEAD: &str = "UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1";
        tx.sql().execute(HEAD, (last.seq, &last.hash)).await?;
        Ok(posted)
    }

    /// Records one transfer in a transaction of its own.
    pub async fn record_now(
        &self,
        transfer: &Transfer,
        at: i64,
    ) -> Result<[Entry; 2], RecordError> {
        let mut tx = self.db.begin_write().await?;
        let posted = self.record(&mut tx, transfer, at).await?;
        tx.commit().await?;
        Ok(posted)
    }

    /// Every entry, in order.
    pub async fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("{ENTRY} ORDER BY seq"));
        let rows: Vec<EntryRow> = self.db.sql().fetch_all(sql, ()).await?;
        Ok(entries(rows)?)
    }

    /// An intent's entries, in order.
    pub async fn entries_of(&self, intent: Uuid) -> Result<Vec<Entry>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("{ENTRY} WHERE intent_id = $1 ORDER BY seq"));
        let rows: Vec<EntryRow> = self.db.sql().fetch_all(sql, (intent,)).await?;
        Ok(entries(rows)?)
    }

    /// Recomputes the whole chain and every balance from the stored entries,
    /// and checks that the head names the last entry.
    pub async fn verify(&self) -> Result<Verification, StoreError> {
        let mut read = self.db.begin_read().await?;
        let sql = sqlx::AssertSqlSafe(format!("{ENTRY} ORDER BY seq"));
        let rows: Vec<EntryRow> = read.sql().fetch_all(sql, ()).await?;
        let head: (i64, String) = read
            .sql()
            .fetch_one("SELECT seq, hash FROM ledger_head WHERE id = 1", ())
            .await?;
        read.commit().await?;
        let all = entries(rows)?;
        let mut found = ledger::verify(&all);
        let last = all
            .last()
            .map_or((0, ledger::GENESIS), |e| (e.seq, e.hash.as_str()));
        if found.valid && (head.0, head.1.as_str()) != last {
            found.valid = false;
            found.first_bad_entry = Some((
                last.0.max(1),
                "the chain's head does not name the last entry",
            ));
        }
        Ok(found)
    }
}
