//! What happens to an order after its checkout: cancel, ship, deliver,
//! refund, each moving stock and money as catalog's journal and payments'
//! ledger show; and the read model rebuilt from the streams.

use emporium_testkit::both;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cards, ok, problem_of};

/// The payment's movements, by kind, as payments recorded them.
async fn payment_kinds(app: &TestApp, id: &str) -> Vec<String> {
    let payment = app.payment(id).await.unwrap();
    payment["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        // The provider's notice of a settled capture comes when it comes.
        .filter(|k| k != "settled")
        .collect()
}

both!(cancelling_a_confirmed_order_voids_its_payment_and_releases_its_stock);
async fn cancelling_a_confirmed_order_voids_its_payment_and_releases_its_stock(app: TestApp) {
    let product = app.product(10, 1000).await;
    let order = app.order(&[(product, 4)], cards::APPROVES).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.stock(product).await, (10, 4));
    // Another customer cannot; its owner can.
    let r = app.act(&app.other, id, "cancel").await;
    assert_eq!(r.status(), 404);
    let cancelled = ok(app.act(&app.customer, id, "cancel").await, 200).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["payment"]["status"], "voided");
    assert_eq!(app.stock(product).await, (10, 0));
    assert_eq!(app.movements(product).await, ["set", "reserve", "release"]);
    assert_eq!(
        payment_kinds(&app, id).await,
        ["created", "authorized", "voided"]
    );
    assert_eq!(
        app.history(id).await[5..],
        [
            "cancel_requested",
            "payment_voided",
            "stock_released",
            "cancelled"
        ]
    );
    // Not again, and not on to shipping.
    problem_of(
        app.act(&app.customer, id, "cancel").await,
        409,
        "order-status-conflict",
    )
    .await;
    problem_of(
        app.act(&app.admin, id, "ship").await,
        409,
        "order-status-conflict",
    )
    .await;
    assert!(app.ledger_valid().await);
}

both!(ship_deliver_refund_capture_commit_and_give_everything_back);
async fn ship_deliver_refund_capture_commit_and_give_everything_back(app: TestApp) {
    let product = app.product(10, 1000).await;
    let order = app.order(&[(product, 3)], cards::APPROVES).await;
    let id = order["id"].as_str().unwrap();
    // Only an admin ships; a customer cannot deliver before shipping either.
    assert_eq!(app.act(&app.customer, id, "ship").await.status(), 403);
    problem_of(
        app.act(&app.admin, id, "deliver").await,
        409,
        "order-status-conflict",
    )
    .await;
    problem_of(
        app.act(&app.admin, id, "refund").await,
        409,
        "order-status-conflict",
    )
    .await;

    let shipped = ok(app.act(&app.admin, id, "ship").await, 200).await;
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(shipped["payment"]["status"], "captured");
    // The goods left: on hand and reserved both fell.
    assert_eq!(app.stock(product).await, (7, 0));
    assert_eq!(app.movements(product).await, ["set", "reserve", "commit"]);
    let payment = app.payment(id).await.unwrap();
    assert_eq!(payment["captured"], 3000);
    // A shipped order is the customer's no more to cancel.
    problem_of(
        app.act(&app.customer, id, "cancel").await,
        409,
        "order-status-conflict",
    )
    .await;

    let delivered = ok(app.act(&app.admin, id, "deliver").await, 200).await;
    assert_eq!(delivered["status"], "delivered");
    let refunded = ok(app.act(&app.admin, id, "refund").await, 200).await;
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(refunded["payment"]["status"], "refunded");
    // The goods are back on hand, the money back on the card.
    assert_eq!(app.stock(product).await, (10, 0));
    assert_eq!(
        app.movements(product).await,
        ["set", "reserve", "commit", "restock"]
    );
    let payment = app.payment(id).await.unwrap();
    assert_eq!(
        (payment["captured"].clone(), payment["refunded"].clone()),
        (json!(0), json!(3000))
    );
    assert_eq!(
        payment_kinds(&app, id).await,
        ["created", "authorized", "captured", "refunded"]
    );
    assert_eq!(
        app.history(id).await[5..],
        [
            "ship_requested",
            "payment_captured",
            "stock_committed",
            "shipped",
            "delivered",
            "refund_requested",
            "restocked",
            "payment_refunded",
            "refunded"
        ]
    );
    problem_of(
        app.act(&app.admin, id, "refund").await,
        409,
        "order-status-conflict",
    )
    .await;
    assert!(app.ledger_valid().await);
}

// The read model is what folding the streams gives: after a mixed run
// (an unfinished saga among them) it is wiped and rebuilt from the events,
// and equals what was served; each order equals its stream's fold.
both!(the_read_model_rebuilt_from_the_streams_equals_the_live_one);
async fn the_read_model_rebuilt_from_the_streams_equals_the_live_one(app: TestApp) {
    let product = app.product(5, 800).await;
    app.order(&[(product, 1)], cards::APPROVES).await;
    app.order(&[(product, 1)], cards::DECLINES).await;
    app.order(&[(product, 10)], cards::APPROVES).await;
    let cancelled = app.order(&[(product, 1)], cards::APPROVES).await;
    ok(
        app.act(&app.customer, cancelled["id"].as_str().unwrap(), "cancel")
            .await,
        200,
    )
    .await;
    let shipped = app.order(&[(product, 2)], cards::APPROVES).await;
    let shipped = shipped["id"].as_str().unwrap();
    ok(app.act(&app.admin, shipped, "ship").await, 200).await;
    ok(app.act(&app.admin, shipped, "deliver").await, 200).await;
    // One left in the middle of its checkout.
    app.state.0.saga.stop_after_steps(1);
    let token = app.card(cards::APPROVES).await;
    let body = TestApp::order_body(&[(product, 1)], &token);
    assert_eq!(
        app.place_as(&app.customer, "mid", &body).await.status(),
        503
    );

    let live = served(&app).await;
    assert_eq!(live["items"].as_array().unwrap().len(), 6);
    let store = &app.state.0.saga.store;
    let far = i64::MAX / 2;
    let unfinished = store.unfinished(far, 100).await.unwrap();
    assert_eq!(unfinished.len(), 1);
    // Wipe what the read model says, then rebuild it from the events.
    store
        .db()
        .sql()
        .execute(
            "UPDATE orders SET document = '{}', status = 'x', in_progress = NULL",
            (),
        )
        .await
        .unwrap();
    assert_ne!(served(&app).await, live);
    let rebuilt = store.rebuild(emporium_orders::view::project).await.unwrap();
    assert_eq!(rebuilt, 6);
    assert_eq!(served(&app).await, live);
    assert_eq!(store.unfinished(far, 100).await.unwrap(), unfinished);
    for order in live["items"].as_array().unwrap() {
        let id = order["id"].as_str().unwrap().parse().unwrap();
        let folded = app.state.0.saga.load(id).await.unwrap().unwrap();
        assert_eq!(&folded.document(), order);
    }
}

/// Every order as an admin's list serves it.
async fn served(app: &TestApp) -> Value {
    app.orders_list(&app.admin, "?limit=100").await
}
