//! The saga under faults: orders stopping after any step, the services it
//! calls being down, and two replicas finishing the same sagas.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use emporium_testkit::both;
use serde_json::Value;

use crate::helpers::{TestApp, cards, ok, problem_of};

/// How many times each event type is in the order's history.
async fn counted(app: &TestApp, id: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in app.history(id).await {
        *counts.entry(t).or_insert(0) += 1;
    }
    counts
}

// Orders stops right after step N of a checkout is persisted (a crash);
// after a restart the same request finds the order finished: confirmed or
// rejected, never left holding stock or money, every step done once.
both!(a_checkout_stopped_after_any_step_is_finished_after_a_restart);
async fn a_checkout_stopped_after_any_step_is_finished_after_a_restart(mut app: TestApp) {
    let product = app.product(100, 900).await;
    // Approved: placed+priced, reserved, authorized, confirmed.
    // Declined: placed+priced, reserved, failed, released, rejected.
    let cases = [
        (cards::APPROVES, 4, "confirmed"),
        (cards::DECLINES, 5, "rejected"),
    ];
    let mut confirmed = 0;
    for (card, steps, end) in cases {
        for n in 1..steps {
            let token = app.card(card).await;
            let body = TestApp::order_body(&[(product, 2)], &token);
            let key = format!("crash-{card}-{n}");
            app.state.0.saga.stop_after_steps(n);
            let r = app.place_as(&app.customer, &key, &body).await;
            problem_of(r, 503, "unavailable").await;
            app.restart().await;
            let order = ok(app.place_as(&app.customer, &key, &body).await, 200).await;
            assert_eq!(order["status"], end, "{card} after step {n}: {order}");
            let id = order["id"].as_str().unwrap();
            let counts = counted(&app, id).await;
            assert!(counts.values().all(|c| *c == 1), "{card}/{n}: {counts:?}");
            let payment = app.payment(id).await.unwrap();
            if end == "confirmed" {
                confirmed += 1;
                assert_eq!(payment["status"], "authorized");
            } else {
                assert_eq!(payment["status"], "failed");
            }
        }
    }
    // Stock is held for the confirmed orders only.
    assert_eq!(app.stock(product).await, (100, 2 * confirmed));
    assert!(app.ledger_valid().await);
}

// With payments down the checkout cannot finish: it is rejected within the
// configured bound, and its reservation is released.
both!(payments_down_rejects_the_checkout_within_the_bound, |s| {
    s.checkout.pending_timeout_ms = 1500;
    s.checkout.answer_within_ms = 8000;
});
async fn payments_down_rejects_the_checkout_within_the_bound(mut app: TestApp) {
    let product = app.product(10, 1500).await;
    let token = app.card(cards::APPROVES).await;
    app.stop_payments().await;
    let started = Instant::now();
    let body = TestApp::order_body(&[(product, 3)], &token);
    let order = ok(app.place_as(&app.customer, "down-1", &body).await, 201).await;
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert_eq!(order["status"], "rejected");
    assert_eq!(order["rejection_reason"], "payment_unavailable");
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.history(id).await,
        ["placed", "priced", "stock_reserved", "checkout_failed", "stock_released", "rejected"]
    );
    assert_eq!(app.stock(product).await, (10, 0));
}

// With the catalog down nothing can be priced: the order is refused with a
// clear 503 and nothing is stored; once it is back the same request places it.
both!(catalog_down_refuses_the_order_and_stores_nothing);
async fn catalog_down_refuses_the_order_and_stores_nothing(mut app: TestApp) {
    let product = app.product(10, 1500).await;
    let token = app.card(cards::APPROVES).await;
    app.stop_catalog().await;
    let body = TestApp::order_body(&[(product, 1)], &token);
    let r = app.place_as(&app.customer, "cat-down", &body).await;
    problem_of(r, 503, "catalog-unavailable").await;
    let list: Value = ok(
        app.get("/api/v1/orders")
            .bearer_auth(&app.customer)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

// Unfinished sagas (orders stopped after placing them) are each finished
// exactly once by two replicas on the same database.
both!(two_replicas_finish_each_unfinished_saga_once);
async fn two_replicas_finish_each_unfinished_saga_once(mut app: TestApp) {
    let product = app.product(100, 500).await;
    // The first order's placing stops the service; the rest are placed
    // (their first step persisted) and go no further.
    app.state.0.saga.stop_after_steps(1);
    let mut keys = Vec::new();
    for i in 0..8 {
        let token = app.card(cards::APPROVES).await;
        let body = TestApp::order_body(&[(product, 1)], &token);
        let key = format!("replicas-{i}");
        let r = app.place_as(&app.customer, &key, &body).await;
        assert_eq!(r.status(), 503);
        keys.push((key, body));
    }
    assert_eq!(app.stock(product).await, (100, 0));
    app.restart().await;
    let replica = app.replica(|_| {}).await;
    // Both scan for sagas nobody drives; nothing else drives these.
    let list: Value = ok(
        app.get("/api/v1/orders")
            .bearer_auth(&app.customer)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let ids: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 8);
    for id in &ids {
        app.wait_for_status(id, "confirmed").await;
    }
    // The same requests again answer the same orders.
    for (key, body) in &keys {
        let order = ok(app.place_as(&app.customer, key, body).await, 200).await;
        assert!(ids.contains(&order["id"].as_str().unwrap().to_owned()));
    }
    for id in &ids {
        let counts = counted(&app, id).await;
        assert!(counts.values().all(|c| *c == 1), "{counts:?}");
        let order: Value = replica
            .http
            .get(&format!("/api/v1/orders/{id}"))
            .bearer_auth(&app.customer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(order["status"], "confirmed");
    }
    assert_eq!(app.stock(product).await, (100, 8));
}
