//! The ledger against real databases: every test runs on SQLite and on
//! PostgreSQL (a fresh database each, dropped afterwards).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use emporium_db::testing::TestDatabase;
use emporium_db::{Db, Engine};
use emporium_payments::ledger::{GENESIS, Movement, Transfer, TransferError};
use emporium_payments::store::{Ledger, MIGRATIONS, RecordError};
use futures_util::future::join_all;
use uuid::Uuid;

/// A migrated ledger on `engine`, and its database (dropped with it).
async fn ledger(engine: Engine) -> (Ledger, Db, TestDatabase) {
    let database = match engine {
        Engine::Sqlite => TestDatabase::sqlite(),
        Engine::Postgres => TestDatabase::postgres().await.unwrap(),
    };
    let db = emporium_db::open_service_db(&database.url, 8, &[MIGRATIONS])
        .await
        .unwrap();
    (Ledger::new(db.clone()), db, database)
}

emporium_db::on_engines!(
    a_payment_s_life_is_recorded_and_verifies,
    concurrent_appends_keep_one_chain,
    concurrent_refunds_never_exceed_what_was_captured,
    entries_cannot_be_changed_or_removed,
    a_change_behind_the_triggers_is_found,
    a_lost_tail_is_found_by_the_head,
    intents_keep_their_own_balances_and_currency,
    a_transfer_rolled_back_leaves_no_trace,
);

fn transfer(intent: Uuid, movement: Movement, amount: i64) -> Transfer {
    Transfer::new(intent, movement, amount, "EUR")
}

/// Authorizes and captures `amount` for `intent`.
async fn captured(ledger: &Ledger, intent: Uuid, amount: i64) {
    for movement in [Movement::Authorize, Movement::Capture] {
        let t = transfer(intent, movement, amount);
        ledger.record_now(&t, 1).await.unwrap();
    }
}

/// Runs `n` copies of `task` at once, each on its own runtime task.
async fn at_once<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles = (0..n).map(|_| tokio::spawn(task()));
    join_all(handles)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

async fn a_payment_s_life_is_recorded_and_verifies(engine: Engine) {
    let (ledger, _db, _file) = ledger(engine).await;
    let intent = Uuid::now_v7();
    for (movement, amount) in [
        (Movement::Authorize, 5000),
        (Movement::Capture, 4000),
        (Movement::Void, 1000),
        (Movement::Refund, 1500),
    ] {
        ledger
            .record_now(&transfer(intent, movement, amount), 1_000)
            .await
            .unwrap();
    }
    let entries = ledger.entries_of(intent).await.unwrap();
    assert_eq!(entries.len(), 8);
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    let balances = emporium_payments::ledger::Balances::of(&entries);
    assert_eq!((balances.holds, balances.merchant), (0, 2500));
    let v = ledger.verify().await.unwrap();
    assert_eq!((v.entries, v.valid, v.first_bad_entry), (8, true, None));
    // A refund above what is left is refused, and nothing is written.
    let over = ledger
        .record_now(&transfer(intent, Movement::Refund, 2501), 2_000)
        .await;
    assert!(matches!(
        over,
        Err(RecordError::Refused(TransferError::Insufficient {
            balance: 2500,
            ..
        }))
    ));
    assert_eq!(ledger.verify().await.unwrap().entries, 8);
}

/// Forty transfers at once on separate intents: one chain, no gaps, no fork.
async fn concurrent_appends_keep_one_chain(engine: Engine) {
    let (ledger, _db, _file) = ledger(engine).await;
    let ledger = Arc::new(ledger);
    let results = at_once(40, || {
        let (ledger, t) = (
            ledger.clone(),
            transfer(Uuid::now_v7(), Movement::Authorize, 100),
        );
        async move { ledger.record_now(&t, 1_000).await }
    })
    .await;
    for r in results {
        r.unwrap();
    }
    let v = ledger.verify().await.unwrap();
    assert_eq!((v.entries, v.valid, v.first_bad_entry), (80, true, None));
}

/// Twenty partial refunds of 10 race against 100 captured: exactly ten go
/// through, the rest are refused, and the chain still verifies.
async fn concurrent_refunds_never_exceed_what_was_captured(engine: Engine) {
    let (ledger, _db, _file) = ledger(engine).await;
    let intent = Uuid::now_v7();
    captured(&ledger, intent, 100).await;
    let ledger = Arc::new(ledger);
    let results = at_once(20, || {
        let (ledger, t) = (ledger.clone(), transfer(intent, Movement::Refund, 10));
        async move { ledger.record_now(&t, 3).await }
    })
    .await;
    let mut refunded = 0;
    for r in results {
        match r {
            Ok(_) => refunded += 1,
            Err(RecordError::Refused(TransferError::Insufficient { .. })) => {}
            Err(other) => panic!("a refund failed otherwise: {other}"),
        }
    }
    assert_eq!(refunded, 10);
    let entries = ledger.entries_of(intent).await.unwrap();
    let balances = emporium_payments::ledger::Balances::of(&entries);
    assert_eq!((balances.holds, balances.merchant), (0, 0));
    assert!(ledger.verify().await.unwrap().valid);
}

async fn entries_cannot_be_changed_or_removed(engine: Engine) {
    let (ledger, db, _file) = ledger(engine).await;
    ledger
        .record_now(&transfer(Uuid::now_v7(), Movement::Authorize, 700), 1)
        .await
        .unwrap();
    for sql in [
        "UPDATE ledger_entries SET amount = 1 WHERE seq = 1",
        "DELETE FROM ledger_entries WHERE seq = 2",
    ] {
        let refused = db.sql().execute(sql, ()).await.unwrap_err();
        assert!(
            refused.to_string().contains("append-only"),
            "{sql}: {refused}"
        );
    }
    if engine == Engine::Postgres {
        let refused = db
            .sql()
            .execute("TRUNCATE ledger_entries", ())
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
    let v = ledger.verify().await.unwrap();
    assert_eq!((v.entries, v.valid), (2, true));
}

/// Someone with the rights to lift the triggers changes an amount: the
/// verification names the entry.
async fn a_change_behind_the_triggers_is_found(engine: Engine) {
    let (ledger, db, _file) = ledger(engine).await;
    let intent = Uuid::now_v7();
    captured(&ledger, intent, 900).await;
    let lift = match engine {
        Engine::Postgres => "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_change",
        Engine::Sqlite => "DROP TRIGGER ledger_entries_no_update",
    };
    db.sql().execute(lift, ()).await.unwrap();
    db.sql()
        .execute("UPDATE ledger_entries SET amount = 9000 WHERE seq = 4", ())
        .await
        .unwrap();
    let v = ledger.verify().await.unwrap();
    assert!(!v.valid);
    assert_eq!(
        v.first_bad_entry,
        Some((4, "its content does not match its hash"))
    );
}

/// The last whole transaction removed leaves a chain whose every link holds;
/// the head, which names the last entry, tells.
async fn a_lost_tail_is_found_by_the_head(engine: Engine) {
    let (ledger, db, _file) = ledger(engine).await;
    captured(&ledger, Uuid::now_v7(), 900).await;
    let lift = match engine {
        Engine::Postgres => "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_change",
        Engine::Sqlite => "DROP TRIGGER ledger_entries_no_delete",
    };
    db.sql().execute(lift, ()).await.unwrap();
    let removed = db
        .sql()
        .execute("DELETE FROM ledger_entries WHERE seq > 2", ())
        .await;
    assert_eq!(removed.unwrap(), 2);
    let v = ledger.verify().await.unwrap();
    let why = "the chain's head does not name the last entry";
    assert_eq!(
        (v.entries, v.valid, v.first_bad_entry),
        (2, false, Some((2, why)))
    );
}

/// Balances and currencies are per intent: another intent's captured money
/// cannot be refunded, and an intent stays in its first currency.
async fn intents_keep_their_own_balances_and_currency(engine: Engine) {
    let (ledger, _db, _file) = ledger(engine).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    captured(&ledger, a, 100).await;
    let usd = |intent, movement, amount| Transfer::new(intent, movement, amount, "USD");
    ledger
        .record_now(&usd(b, Movement::Authorize, 50), 3)
        .await
        .unwrap();
    let refund_b = ledger.record_now(&usd(b, Movement::Refund, 10), 4).await;
    assert!(matches!(
        refund_b,
        Err(RecordError::Refused(TransferError::Insufficient {
            account: "merchant",
            balance: 0,
            ..
        }))
    ));
    let usd_on_a = ledger.record_now(&usd(a, Movement::Refund, 10), 5).await;
    assert!(matches!(
        usd_on_a,
        Err(RecordError::Refused(TransferError::CurrencyMismatch(c))) if c == "EUR"
    ));
    let of_a = ledger.entries_of(a).await.unwrap();
    assert_eq!(of_a.len(), 4);
    assert!(of_a.iter().all(|e| e.intent_id == a && e.currency == "EUR"));
    assert_eq!(ledger.verify().await.unwrap().entries, 6);
}

/// A transfer recorded in a transaction that rolls back leaves nothing: no
/// entry, and the head where it was.
async fn a_transfer_rolled_back_leaves_no_trace(engine: Engine) {
    let (ledger, db, _file) = ledger(engine).await;
    let mut tx = db.begin_write().await.unwrap();
    let t = transfer(Uuid::now_v7(), Movement::Authorize, 100);
    ledger.record(&mut tx, &t, 1).await.unwrap();
    tx.rollback().await.unwrap();
    let v = ledger.verify().await.unwrap();
    assert_eq!((v.entries, v.valid), (0, true));
    let next = ledger.record_now(&t, 2).await.unwrap();
    assert_eq!((next[0].seq, next[0].prev_hash.as_str()), (1, GENESIS));
}

/// Both engines' migrations make the same tables and columns.
#[tokio::test]
async fn both_engines_have_the_same_schema() {
    emporium_testkit::schema::assert_schema_parity(
        |url| async move {
            emporium_db::open_service_db(&url, 1, &[MIGRATIONS])
                .await
                .map(drop)
        },
        &[],
        &[],
    )
    .await;
}
