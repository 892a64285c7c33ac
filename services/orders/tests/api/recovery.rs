//! The saga under faults: orders stopping after any step, the services it
//! calls being down, and two replicas finishing the same sagas.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use emporium_testkit::both;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cards, ok, problem_of};

/// How many times each event type is in the order's history.
async fn counted(app: &TestApp, id: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in app.history(id).await {
        *counts.entry(t).or_insert(0) += 1;
    }
    counts
}

// Orders stops at step N of a checkout (a crash): right after the step is
// persisted, or after the other service did the step and before orders saved
// it. After a restart the same request finds the order finished, confirmed or
// rejected; every call took effect once; nothing is held for a rejected order.
both!(a_checkout_stopped_at_any_step_is_finished_after_a_restart);
async fn a_checkout_stopped_at_any_step_is_finished_after_a_restart(mut app: TestApp) {
    let product = app.product(200, 900).await;
    let approved = [
        "placed",
        "priced",
        "stock_reserved",
        "payment_authorized",
        "confirmed",
    ];
    let declined = [
        "placed",
        "priced",
        "stock_reserved",
        "checkout_failed",
        "stock_released",
        "rejected",
    ];
    // Events saved by each step: `placed` and `priced` are one.
    let saved = |events: &[&str], steps: usize| -> Vec<String> {
        events[..(steps + 1).min(events.len())]
            .iter()
            .map(|e| (*e).to_owned())
            .collect()
    };
    let (mut confirmed, mut orders, mut rejected) = (0, 0, 0);
    for before_saving in [false, true] {
        for (card, events) in [
            (cards::APPROVES, &approved[..]),
            (cards::DECLINES, &declined[..]),
        ] {
            let steps = events.len() - 1;
            let first = if before_saving { 2 } else { 1 };
            for n in first..steps {
                let token = app.card(card).await;
                let body = TestApp::order_body(&[(product, 2)], &token);
                let key = format!("crash-{card}-{n}-{before_saving}");
                if before_saving {
                    app.state.0.saga.stop_before_saving_step(n as u32);
                } else {
                    app.state.0.saga.stop_after_steps(n as u32);
                }
                let r = app.place_as(&app.customer, &key, &body).await;
                problem_of(r, 503, "unavailable").await;
                orders += 1;
                // Stopped where it was told to: the history holds the steps
                // before (and, after saving, the step itself), no more.
                let id = app.newest_order().await;
                let done = if before_saving { n - 1 } else { n };
                assert_eq!(
                    app.history(&id).await,
                    saved(events, done),
                    "{card} {n} {before_saving}"
                );
                app.restart().await;
                let order = ok(app.place_as(&app.customer, &key, &body).await, 200).await;
                assert_eq!(order["id"], id.as_str());
                assert_eq!(app.history(&id).await, saved(events, steps), "{card} {n}");
                let payment = app.payment(&id).await.unwrap();
                let authorized = payment["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["kind"] == "authorized")
                    .count();
                if order["status"] == "confirmed" {
                    confirmed += 1;
                    assert_eq!(
                        (payment["status"].clone(), authorized),
                        (json!("authorized"), 1)
                    );
                } else {
                    rejected += 1;
                    assert_eq!(
                        (payment["status"].clone(), authorized),
                        (json!("failed"), 0)
                    );
                }
            }
        }
    }
    // Every order reserved once, and released once when rejected: the
    // repeated calls after a restart moved nothing twice.
    let journal = app.movements(product).await;
    let count = |kind: &str| journal.iter().filter(|k| *k == kind).count();
    assert_eq!(
        (count("reserve"), count("release")),
        (orders, rejected),
        "{journal:?}"
    );
    // Stock is held for the confirmed orders only.
    assert_eq!(app.stock(product).await, (200, 2 * confirmed as i64));
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
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(order["status"], "rejected");
    assert_eq!(order["rejection_reason"], "payment_unavailable");
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.history(id).await,
        [
            "placed",
            "priced",
            "stock_reserved",
            "checkout_failed",
            "stock_released",
            "rejected"
        ]
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
    let list: Value = app.orders_list(&app.customer, "").await;
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
    let list: Value = app.orders_list(&app.customer, "").await;
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
    // Three steps each (reserved, authorized, confirmed), saved once in all
    // by the two replicas together.
    let by_app = app.state.0.saga.steps_persisted();
    let by_replica = replica.state.0.saga.steps_persisted();
    assert_eq!(by_app + by_replica, 8 * 3, "{by_app} + {by_replica}");
}

// The catalog goes down after the authorization: the checkout cannot be
// confirmed, so once out of time it is failed, its authorization voided at
// once and its reservation released as soon as the catalog is back.
both!(
    catalog_down_after_the_authorization_voids_it_and_releases_the_stock_once_back,
    |s| {
        s.checkout.pending_timeout_ms = 1500;
        s.checkout.answer_within_ms = 2000;
    }
);
async fn catalog_down_after_the_authorization_voids_it_and_releases_the_stock_once_back(
    mut app: TestApp,
) {
    let product = app.product(5, 1000).await;
    let token = app.card(cards::APPROVES).await;
    app.state.0.saga.stop_after_steps(3);
    let body = TestApp::order_body(&[(product, 2)], &token);
    let r = app.place_as(&app.customer, "cat-later", &body).await;
    assert_eq!(r.status(), 503);
    let id = app.newest_order().await;
    app.stop_catalog().await;
    app.restart().await;
    // The void goes through; the release waits for the catalog.
    let mut history = Vec::new();
    for _ in 0..300 {
        history = app.history(&id).await;
        if history.iter().any(|t| t == "payment_voided") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        history,
        [
            "placed",
            "priced",
            "stock_reserved",
            "payment_authorized",
            "checkout_failed",
            "payment_voided"
        ]
    );
    assert_eq!(app.payment(&id).await.unwrap()["status"], "voided");
    app.start_catalog().await;
    let order = app.wait_for_status(&id, "rejected").await;
    assert_eq!(order["rejection_reason"], "catalog_unavailable");
    assert_eq!(app.movements(product).await, ["set", "reserve", "release"]);
    assert_eq!(app.stock(product).await, (5, 0));
}

// Payments is down when the order is placed: the answer says it is pending
// (202); once payments is back the checkout completes by itself.
both!(
    a_checkout_waiting_for_payments_completes_once_it_is_back,
    |s| {
        s.checkout.answer_within_ms = 1000;
    }
);
async fn a_checkout_waiting_for_payments_completes_once_it_is_back(mut app: TestApp) {
    let product = app.product(10, 1000).await;
    let token = app.card(cards::APPROVES).await;
    app.stop_payments().await;
    let body = TestApp::order_body(&[(product, 1)], &token);
    let pending = ok(app.place_as(&app.customer, "pay-later", &body).await, 202).await;
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().unwrap().to_owned();
    app.start_payments().await;
    app.wait_for_status(&id, "confirmed").await;
    let again = ok(app.place_as(&app.customer, "pay-later", &body).await, 200).await;
    assert_eq!(again["status"], "confirmed");
    assert_eq!(app.stock(product).await, (10, 1));
    assert_eq!(app.payment(&id).await.unwrap()["status"], "authorized");
}

// Orders stops in the middle of a shipment (the payment captured, the stock
// not yet committed); the admin's retry waits for the shipment, which the
// restarted service finishes, capturing once.
both!(a_shipment_stopped_midway_is_finished_and_its_retry_answers_it);
async fn a_shipment_stopped_midway_is_finished_and_its_retry_answers_it(mut app: TestApp) {
    let product = app.product(10, 1000).await;
    let order = app.order(&[(product, 2)], cards::APPROVES).await;
    let id = order["id"].as_str().unwrap();
    app.state.0.saga.stop_after_steps(1);
    let r = app.act(&app.admin, id, "ship").await;
    problem_of(r, 503, "unavailable").await;
    assert_eq!(
        app.history(id).await[5..],
        ["ship_requested", "payment_captured"]
    );
    app.restart().await;
    let shipped = ok(app.act(&app.admin, id, "ship").await, 200).await;
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(app.movements(product).await, ["set", "reserve", "commit"]);
    let payment = app.payment(id).await.unwrap();
    let kinds: Vec<&str> = payment["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        // The provider's notice of the settled capture comes when it comes.
        .filter(|k| *k != "settled")
        .collect();
    assert_eq!(kinds, ["created", "authorized", "captured"]);
}

// The catalog reserved, and orders stopped before saving it; the customer
// cancels meanwhile. The cancel asks the catalog what it holds for the
// order, records the reservation and releases it: nothing is left held.
both!(a_cancel_during_a_checkout_gives_back_what_the_stream_did_not_know);
async fn a_cancel_during_a_checkout_gives_back_what_the_stream_did_not_know(mut app: TestApp) {
    let product = app.product(10, 1000).await;
    let token = app.card(cards::APPROVES).await;
    app.state.0.saga.stop_before_saving_step(2);
    let body = TestApp::order_body(&[(product, 3)], &token);
    assert_eq!(
        app.place_as(&app.customer, "cancel-mid", &body)
            .await
            .status(),
        503
    );
    let id = app.newest_order().await;
    assert_eq!(app.history(&id).await, ["placed", "priced"]);
    assert_eq!(app.stock(product).await, (10, 3));
    app.restart().await;
    let cancelled = ok(app.act(&app.customer, &id, "cancel").await, 200).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(
        app.history(&id).await,
        [
            "placed",
            "priced",
            "cancel_requested",
            "stock_reserved",
            "stock_released",
            "cancelled"
        ]
    );
    assert_eq!(app.movements(product).await, ["set", "reserve", "release"]);
    assert_eq!(app.stock(product).await, (10, 0));
    assert!(app.payment(&id).await.is_none());
}
