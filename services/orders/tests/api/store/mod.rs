//! The event store against real databases: every test runs on SQLite and on
//! PostgreSQL (a fresh database each, dropped afterwards).

mod orders;

use std::sync::Arc;

use emporium_db::testing::TestDatabase;
use emporium_db::{Db, Engine};
use emporium_orders::store::{
    AppendError, EventStore, MIGRATIONS, Projection, Recorded, StreamEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// A stream's events, for the store alone (the order aggregate has its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
enum Counted {
    Opened { customer_id: Uuid },
    Added { n: i64 },
}

impl StreamEvent for Counted {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "opened",
            Self::Added { .. } => "added",
        }
    }
}

/// The read model of a `Counted` stream: the sum so far.
fn project(_: Uuid, stream: &[Recorded]) -> anyhow::Result<Projection> {
    let mut customer = Uuid::nil();
    let mut total = 0;
    for r in stream {
        match r.decode::<Counted>()? {
            Counted::Opened { customer_id } => customer = customer_id,
            Counted::Added { n } => total += n,
        }
    }
    Ok(Projection {
        customer_id: customer,
        status: if total > 0 {
            "counted".into()
        } else {
            "open".into()
        },
        total_amount: total,
        currency: "EUR".into(),
        document: json!({"total": total, "events": stream.len()}),
        created_at: stream.first().map_or(0, |e| e.at),
        in_progress: None,
    })
}

pub async fn store(engine: Engine) -> (EventStore, Db, TestDatabase) {
    let database = match engine {
        Engine::Sqlite => TestDatabase::sqlite(),
        Engine::Postgres => TestDatabase::postgres().await.unwrap(),
    };
    let parts = [MIGRATIONS, emporium_messaging::migrations::OUTBOX];
    let db = emporium_db::open_service_db(&database.url, 8, &parts)
        .await
        .unwrap();
    (EventStore::new(db.clone()), db, database)
}

/// Appends `events` after `expected`, with the projection of the stream they make.
async fn append(
    store: &EventStore,
    order: Uuid,
    expected: i64,
    events: &[Counted],
    now: i64,
) -> Result<i64, AppendError> {
    let mut stream = store.stream(order).await.unwrap();
    stream.truncate(expected as usize);
    for (i, e) in events.iter().enumerate() {
        stream.push(Recorded {
            seq: expected + 1 + i as i64,
            event_type: e.type_name().into(),
            at: now,
            json: serde_json::to_value(e).unwrap(),
        });
    }
    let projection = project(order, &stream).unwrap();
    store
        .append(order, expected, events, &projection, (&[], now))
        .await
}

/// Opens `order`'s stream (its first event) at `at`.
async fn open(store: &EventStore, order: Uuid, at: i64) {
    let opened = Counted::Opened {
        customer_id: Uuid::now_v7(),
    };
    append(store, order, 0, &[opened], at).await.unwrap();
}

/// Every read model row, whole, in id order.
pub type ReadModelRow = (Uuid, Uuid, String, i64, String, i64, String, i64, i64);

pub async fn read_model(db: &Db) -> Vec<ReadModelRow> {
    const ALL: &str = "SELECT id, customer_id, status, total_amount, currency, version, \
        document, created_at, updated_at FROM orders ORDER BY id";
    db.sql().fetch_all(ALL, ()).await.unwrap()
}

emporium_db::on_engines!(
    a_stream_and_its_read_model_move_together,
    a_stale_writer_gets_a_conflict_and_loses_nothing,
    concurrent_writers_of_one_stream_never_lose_an_event,
    events_cannot_be_changed_or_removed,
    a_rebuilt_read_model_equals_the_live_one,
    one_replica_at_a_time_drives_a_saga,
);

emporium_db::on_engines!(a_checkout_s_read_model_follows_its_stream_and_rebuilds_the_same);
use orders::a_checkout_s_read_model_follows_its_stream_and_rebuilds_the_same;

async fn a_stream_and_its_read_model_move_together(engine: Engine) {
    let (store, _db, _d) = store(engine).await;
    let order = Uuid::now_v7();
    let customer = Uuid::now_v7();
    let v = append(
        &store,
        order,
        0,
        &[Counted::Opened {
            customer_id: customer,
        }],
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(v, 1);
    let v = append(
        &store,
        order,
        1,
        &[Counted::Added { n: 5 }, Counted::Added { n: 7 }],
        2_000,
    )
    .await
    .unwrap();
    assert_eq!(v, 3);
    let stream = store.stream(order).await.unwrap();
    let seqs: Vec<i64> = stream.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(stream[0].event_type, "opened");
    assert_eq!(stream[2].json, json!({"type": "added", "data": {"n": 7}}));
    assert_eq!(
        stream[2].decode::<Counted>().unwrap(),
        Counted::Added { n: 7 }
    );
    let (version, document) = store.projected(order).await.unwrap().unwrap();
    assert_eq!((version, document), (3, json!({"total": 12, "events": 3})));
    assert!(store.stream(Uuid::now_v7()).await.unwrap().is_empty());
    assert!(store.projected(Uuid::now_v7()).await.unwrap().is_none());
}

async fn a_stale_writer_gets_a_conflict_and_loses_nothing(engine: Engine) {
    let (store, _db, _d) = store(engine).await;
    let order = Uuid::now_v7();
    open(&store, order, 1).await;
    append(&store, order, 1, &[Counted::Added { n: 1 }], 2)
        .await
        .unwrap();
    // A writer that read version 1 decides on what it saw: refused.
    let stale = append(&store, order, 1, &[Counted::Added { n: 100 }], 3).await;
    assert!(
        matches!(stale, Err(AppendError::Stale { expected: 1 })),
        "{stale:?}"
    );
    // A second "first" event of an existing order, too.
    let again = append(
        &store,
        order,
        0,
        &[Counted::Opened {
            customer_id: Uuid::now_v7(),
        }],
        4,
    )
    .await;
    assert!(
        matches!(again, Err(AppendError::Stale { expected: 0 })),
        "{again:?}"
    );
    let stream = store.stream(order).await.unwrap();
    assert_eq!(stream.len(), 2);
    let (version, document) = store.projected(order).await.unwrap().unwrap();
    assert_eq!((version, document["total"].clone()), (2, json!(1)));
}

async fn concurrent_writers_of_one_stream_never_lose_an_event(engine: Engine) {
    let (store, _db, _d) = store(engine).await;
    let store = Arc::new(store);
    let order = Uuid::now_v7();
    open(&store, order, 1).await;
    // Twenty writers each add 1, reading and retrying on a conflict as a
    // service would: every add lands exactly once.
    let writers = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut conflicts = 0;
            loop {
                let version = store.stream(order).await.unwrap().len() as i64;
                match append(&store, order, version, &[Counted::Added { n: 1 }], 2).await {
                    Ok(_) => return conflicts,
                    Err(AppendError::Stale { .. }) => conflicts += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    let conflicts: usize = futures_util::future::join_all(writers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    let stream = store.stream(order).await.unwrap();
    assert_eq!(stream.len(), 21);
    assert!(
        stream
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as i64 + 1)
    );
    let (version, document) = store.projected(order).await.unwrap().unwrap();
    assert_eq!((version, document["total"].clone()), (21, json!(20)));
    if engine == Engine::Postgres {
        assert!(
            conflicts > 0,
            "twenty writers at once collide on PostgreSQL"
        );
    }
}

async fn events_cannot_be_changed_or_removed(engine: Engine) {
    let (store, db, _d) = store(engine).await;
    let order = Uuid::now_v7();
    open(&store, order, 1).await;
    let update = db
        .sql()
        .execute(
            "UPDATE order_events SET data = '{}' WHERE order_id = $1",
            (order,),
        )
        .await;
    assert!(update.is_err(), "{update:?}");
    let delete = db
        .sql()
        .execute("DELETE FROM order_events WHERE order_id = $1", (order,))
        .await;
    assert!(delete.is_err(), "{delete:?}");
    assert_eq!(store.stream(order).await.unwrap().len(), 1);
}

async fn a_rebuilt_read_model_equals_the_live_one(engine: Engine) {
    let (store, db, _d) = store(engine).await;
    let mut orders = Vec::new();
    for i in 0..5_i64 {
        let order = Uuid::now_v7();
        append(
            &store,
            order,
            0,
            &[Counted::Opened {
                customer_id: Uuid::now_v7(),
            }],
            10 + i,
        )
        .await
        .unwrap();
        for k in 0..i {
            append(&store, order, 1 + k, &[Counted::Added { n: k + 1 }], 20 + i)
                .await
                .unwrap();
        }
        orders.push(order);
    }
    let live = crate::store::read_model(&db).await;
    assert_eq!(live.len(), 5);
    // The read model is lost (or its projection changed): rebuilt from the streams.
    db.sql().execute("DELETE FROM orders", ()).await.unwrap();
    assert_eq!(store.rebuild(project).await.unwrap(), 5);
    let rebuilt = crate::store::read_model(&db).await;
    assert_eq!(rebuilt, live);
}

/// A saga's claim: one owner at a time until its lease runs out; put off,
/// nobody takes it before the time given; finished, nobody can.
async fn one_replica_at_a_time_drives_a_saga(engine: Engine) {
    use emporium_orders::store::Lease;
    let (store, db, _d) = store(engine).await;
    let lease = |owner: &str| Lease {
        owner: owner.into(),
        ms: 1_000,
    };
    let (a, b) = (
        EventStore::new(db.clone()).with_lease(lease("a")),
        EventStore::new(db.clone()).with_lease(lease("b")),
    );
    let order = Uuid::now_v7();
    let opened = Counted::Opened {
        customer_id: Uuid::now_v7(),
    };
    let mut projection = project(order, &[]).unwrap();
    projection.in_progress = Some("checkout".into());
    // Placed by `a` at t=100: `a` holds it until 1100.
    a.append(order, 0, &[opened], &projection, (&[], 100))
        .await
        .unwrap();
    assert_eq!(b.unfinished(500, 10).await.unwrap(), Vec::<Uuid>::new());
    assert!(!b.claim(order, 500).await.unwrap(), "b took a's saga");
    assert!(a.claim(order, 600).await.unwrap(), "a renews its own");
    // a's claim (renewed at 600) runs out at 1600.
    assert!(!b.claim(order, 1_599).await.unwrap());
    assert_eq!(b.unfinished(1_601, 10).await.unwrap(), [order]);
    assert!(b.claim(order, 1_601).await.unwrap());
    assert!(
        !a.claim(order, 1_700).await.unwrap(),
        "a took it back from b"
    );
    // Put off by b until 5000: nobody before, anybody after.
    b.put_off(order, 5_000).await.unwrap();
    assert!(!a.claim(order, 4_999).await.unwrap());
    assert!(a.claim(order, 5_001).await.unwrap());
    // Finished: nothing to claim, nothing unfinished.
    projection.in_progress = None;
    let added = Counted::Added { n: 1 };
    a.append(order, 1, &[added], &projection, (&[], 5_002))
        .await
        .unwrap();
    assert!(!b.claim(order, 100_000).await.unwrap());
    assert_eq!(
        store.unfinished(100_000, 10).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(store.backlog().await.unwrap().0, 0);
}
