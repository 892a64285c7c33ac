//! Capture, void and refund: retries and concurrent requests move money
//! once, refunds never exceed what was captured, illegal steps answer 409.

#![allow(clippy::unwrap_used)]

use emporium_testkit::{both, count_of, statuses_at_once};
use serde_json::{Value, json};

use crate::helpers::{TestApp, cards, problem, problem_of};

/// The provider's operations of `kind` on the payment's authorization.
async fn provider_ops(app: &TestApp, payment: &Value, kind: &str) -> Vec<i64> {
    let record = app.provider_record(payment).await;
    record
        .operations
        .iter()
        .filter(|o| o.kind == kind)
        .map(|o| o.amount)
        .collect()
}

both!(ten_concurrent_authorizations_of_one_order_make_one_payment);
async fn ten_concurrent_authorizations_of_one_order_make_one_payment(app: TestApp) {
    let order = uuid::Uuid::now_v7();
    let token = app.token(cards::APPROVES).await;
    let body = app.authorization(order, &token, 4200);
    let answers = futures_util::future::join_all((0..10).map(|_| app.authorize(&body))).await;
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    for r in answers {
        statuses.push(r.status().as_u16());
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], "authorized", "{p}");
        ids.push(p["id"].clone());
    }
    assert_eq!(count_of(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count_of(&statuses, 200), 9, "{statuses:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let p = app.payment(order).await;
    assert_eq!(app.transactions(&p, "authorize").await, 1);
    assert_eq!(provider_ops(&app, &p, "authorize").await, [4200]);
    // The same order with another amount is not a retry.
    let other = app.authorization(order, &token, 4300);
    problem_of(app.authorize(&other).await, 409, "order-has-payment").await;
}

both!(captures_retried_or_concurrent_move_money_once);
async fn captures_retried_or_concurrent_move_money_once(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 1000).await;
    let statuses =
        statuses_at_once((0..10).map(|_| app.step(order, "capture", json!({}), None))).await;
    assert_eq!(count_of(&statuses, 200), 10, "{statuses:?}");
    let again = app.step(order, "capture", json!({}), None).await;
    assert_eq!(again.status(), 200);
    let p = app.payment(order).await;
    assert_eq!(
        (&p["status"], &p["captured"], &p["authorized"]),
        (&json!("captured"), &json!(1000), &json!(0))
    );
    assert_eq!(app.transactions(&p, "capture").await, 1);
    assert_eq!(provider_ops(&app, &p, "capture").await, [1000]);
}

both!(a_partial_capture_releases_the_rest);
async fn a_partial_capture_releases_the_rest(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 1000).await;
    let r = app
        .step(order, "capture", json!({"amount": 1001}), None)
        .await;
    problem_of(r, 409, "capture-exceeds-authorized").await;
    let r = app.step(order, "capture", json!({"amount": 0}), None).await;
    problem(r, 422).await;
    let r = app
        .step(order, "capture", json!({"amount": 700}), None)
        .await;
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!((&p["captured"], &p["authorized"]), (&json!(700), &json!(0)));
    let kinds: Vec<&str> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "authorized", "captured", "released"]);
    assert_eq!(app.transactions(&p, "void").await, 1);
}

both!(illegal_steps_answer_409_and_change_nothing);
async fn illegal_steps_answer_409_and_change_nothing(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 500).await;
    let r = app
        .step(order, "refunds", json!({"amount": 100}), Some("early"))
        .await;
    problem_of(r, 409, "illegal-transition").await;
    assert_eq!(app.step(order, "void", json!({}), None).await.status(), 200);
    let r = app.step(order, "capture", json!({}), None).await;
    problem_of(r, 409, "illegal-transition").await;
    let (order, _) = app.paid(cards::APPROVES, 500).await;
    assert_eq!(
        app.step(order, "capture", json!({}), None).await.status(),
        200
    );
    let r = app.step(order, "void", json!({}), None).await;
    problem_of(r, 409, "illegal-transition").await;
    let (declined, _) = app.paid(cards::DECLINES, 500).await;
    let r = app.step(declined, "capture", json!({}), None).await;
    problem_of(r, 409, "illegal-transition").await;
    let p = app.payment(order).await;
    assert_eq!(
        (&p["status"], &p["captured"]),
        (&json!("captured"), &json!(500))
    );
    let verified = app.state.0.payments.store.ledger().verify().await.unwrap();
    assert!(verified.valid, "{verified:?}");
}

both!(a_refund_retried_or_concurrent_with_one_key_refunds_once);
async fn a_refund_retried_or_concurrent_with_one_key_refunds_once(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 1000).await;
    app.step(order, "capture", json!({}), None).await;
    let refund = || app.step(order, "refunds", json!({"amount": 250}), Some("refund-1"));
    let statuses = statuses_at_once((0..10).map(|_| refund())).await;
    assert_eq!(count_of(&statuses, 200), 10, "{statuses:?}");
    assert_eq!(refund().await.status(), 200);
    let p = app.payment(order).await;
    assert_eq!(
        (&p["status"], &p["captured"], &p["refunded"]),
        (&json!("partially_refunded"), &json!(750), &json!(250))
    );
    assert_eq!(app.transactions(&p, "refund").await, 1);
    assert_eq!(provider_ops(&app, &p, "refund").await, [250]);
    // The key with another amount is refused; no key at all too.
    let r = app
        .step(order, "refunds", json!({"amount": 300}), Some("refund-1"))
        .await;
    problem_of(r, 422, "idempotency-key-reused").await;
    let r = app
        .step(order, "refunds", json!({"amount": 300}), None)
        .await;
    problem_of(r, 400, "idempotency-key-missing").await;
}

both!(twenty_concurrent_partial_refunds_never_exceed_the_capture);
async fn twenty_concurrent_partial_refunds_never_exceed_the_capture(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 1000).await;
    app.step(order, "capture", json!({"amount": 900}), None)
        .await;
    let keys: Vec<String> = (0..20).map(|i| format!("part-{i}")).collect();
    let statuses = statuses_at_once(
        keys.iter()
            .map(|k| app.step(order, "refunds", json!({"amount": 100}), Some(k))),
    )
    .await;
    assert_eq!(count_of(&statuses, 200), 9, "{statuses:?}");
    assert_eq!(count_of(&statuses, 409), 11, "{statuses:?}");
    let p = app.payment(order).await;
    assert_eq!(
        (&p["status"], &p["captured"], &p["refunded"]),
        (&json!("refunded"), &json!(0), &json!(900))
    );
    assert_eq!(app.transactions(&p, "refund").await, 9);
    let refunds = provider_ops(&app, &p, "refund").await;
    assert_eq!(refunds.iter().sum::<i64>(), 900, "{refunds:?}");
    let r = app
        .step(order, "refunds", json!({"amount": 1}), Some("one-more"))
        .await;
    problem(r, 409).await;
}
