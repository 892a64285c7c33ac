//! Real orders through the event store: each step appended with the read
//! model the fold gives, and the rebuild of that read model from the streams.

use emporium_db::Engine;
use emporium_orders::domain::{
    Actor, Line, Order, OrderEvent, RejectionReason, ShippingAddress, Totals,
};
use emporium_orders::store::{AppendError, EventStore};
use emporium_orders::view;
use serde_json::json;
use uuid::Uuid;

fn placed(customer: Uuid) -> OrderEvent {
    let lines = vec![
        Line::new(Uuid::now_v7(), "TEA-1", "Green tea", 450, 2).unwrap(),
        Line::new(Uuid::now_v7(), "CUP-1", "Cup", 1200, 1).unwrap(),
    ];
    let totals = Totals::of(&lines, 0, "EUR").unwrap();
    OrderEvent::Placed {
        customer_id: customer,
        lines,
        totals,
        shipping_address: ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical Way".into(),
            city: "London".into(),
            postal_code: "N1 1AA".into(),
            country: "GB".into(),
            ..ShippingAddress::default()
        },
        payment_token: "tok_test".into(),
        request: String::new(),
    }
}

/// Applies `events` to the order as the saga would: the fold first (an
/// illegal event is refused before anything is written), then one append
/// with the read model the fold gives.
async fn step(
    store: &EventStore,
    order: &mut Option<Order>,
    id: Uuid,
    events: &[OrderEvent],
    at: i64,
) -> i64 {
    let expected = order.as_ref().map_or(0, Order::version);
    let mut next = order.clone();
    for e in events {
        match next.as_mut() {
            Some(o) => o.apply(e).unwrap(),
            None => next = Some(Order::start(id, e).unwrap()),
        }
    }
    let folded = next.unwrap();
    let created = store.stream(id).await.unwrap().first().map_or(at, |e| e.at);
    let projection = view::projection(&folded, (created, at));
    let version = store
        .append(id, expected, events, &projection, (&[], at))
        .await
        .unwrap();
    assert_eq!(version, folded.version());
    *order = Some(folded);
    version
}

pub async fn a_checkout_s_read_model_follows_its_stream_and_rebuilds_the_same(engine: Engine) {
    let (store, db, _d) = crate::store::store(engine).await;
    let customer = Uuid::now_v7();
    // A confirmed order.
    let confirmed = Uuid::now_v7();
    let mut order = None;
    step(&store, &mut order, confirmed, &[placed(customer)], 1_000).await;
    let priced = {
        let o = order.as_ref().unwrap();
        OrderEvent::Priced {
            lines: o.lines().to_vec(),
            totals: o.totals().clone(),
        }
    };
    step(
        &store,
        &mut order,
        confirmed,
        &[
            priced,
            OrderEvent::StockReserved {
                reservation_id: confirmed,
            },
        ],
        1_100,
    )
    .await;
    let authorized = OrderEvent::PaymentAuthorized {
        payment_id: Uuid::now_v7(),
        brand: "visa".into(),
        last4: "4242".into(),
    };
    step(
        &store,
        &mut order,
        confirmed,
        &[authorized, OrderEvent::Confirmed],
        1_200,
    )
    .await;
    let (version, document) = store.projected(confirmed).await.unwrap().unwrap();
    assert_eq!(version, 5);
    assert_eq!(document["status"], "confirmed");
    assert_eq!(
        document["total"],
        json!({"amount": 2100, "currency": "EUR"})
    );
    assert_eq!(document["totals"]["subtotal"]["amount"], 2100);
    assert_eq!(
        document["payment"],
        json!({"brand": "visa", "last4": "4242", "status": "authorized"})
    );
    assert_eq!(document["items"][0]["quantity"], 2);
    assert_eq!(document["created_at"], "1970-01-01T00:00:01.000Z");
    assert_eq!(document["updated_at"], "1970-01-01T00:00:01.200Z");

    // A rejected one: out of stock, nothing held, nothing to give back.
    let rejected = Uuid::now_v7();
    let mut other = None;
    step(&store, &mut other, rejected, &[placed(customer)], 2_000).await;
    let reason = RejectionReason::OutOfStock;
    step(
        &store,
        &mut other,
        rejected,
        &[OrderEvent::Rejected { reason }],
        2_100,
    )
    .await;
    let (_, document) = store.projected(rejected).await.unwrap().unwrap();
    assert_eq!(
        (&document["status"], &document["rejection_reason"]),
        (&json!("rejected"), &json!("out_of_stock"))
    );

    // An event the order's state does not allow is refused by the fold
    // before anything is written; a stale append by the store.
    let o = order.clone().unwrap();
    let mut tried = o.clone();
    assert!(tried.apply(&OrderEvent::Shipped).is_err());
    let cancel = OrderEvent::CancelRequested {
        by: Actor::customer(customer),
    };
    let mut cancelled = o.clone();
    cancelled.apply(&cancel).unwrap();
    let stale = store
        .append(
            confirmed,
            3,
            &[cancel],
            &view::projection(&cancelled, (1_000, 1_300)),
            (&[], 1_300),
        )
        .await;
    assert!(
        matches!(stale, Err(AppendError::Stale { expected: 3 })),
        "{stale:?}"
    );

    // Lost read model, rebuilt from the streams: the same rows.
    let live = crate::store::read_model(&db).await;
    db.sql().execute("DELETE FROM orders", ()).await.unwrap();
    assert_eq!(store.rebuild(view::project).await.unwrap(), 2);
    let rebuilt = crate::store::read_model(&db).await;
    assert_eq!(rebuilt, live);
    // What was served and what the rebuild makes are the same documents.
    let served: serde_json::Value = serde_json::from_str(&live[0].6).unwrap();
    assert_eq!(
        served,
        serde_json::from_str::<serde_json::Value>(&rebuilt[0].6).unwrap()
    );
}
