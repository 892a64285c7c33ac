//! Capture, void and refund: retries and concurrent requests move money
//! once, refunds never exceed what was captured, illegal steps answer 409.

#![allow(clippy::unwrap_used)]

use emporium_db::Clock;
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
    // Each call takes a while at the sandbox, so the ten overlap there.
    app.slow(50);
    let answers = futures_util::future::join_all((0..10).map(|_| app.authorize(&body))).await;
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    for r in answers {
        let status = r.status().as_u16();
        statuses.push(status);
        let p: Value = r.json().await.unwrap();
        // A repeat that found the first still at the provider may be told to
        // come back (503); none may fail the payment.
        if status != 503 {
            assert_eq!(p["status"], "authorized", "{p}");
            ids.push(p["id"].clone());
        }
    }
    assert_eq!(count_of(&statuses, 201), 1, "{statuses:?}");
    let answered = count_of(&statuses, 201) + count_of(&statuses, 200) + count_of(&statuses, 503);
    assert_eq!(answered, 10, "{statuses:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let again = app.authorize(&body).await;
    assert_eq!(again.status(), 200);
    let p = app.payment(order).await;
    assert_eq!(
        (&p["status"], &p["authorized"], &p["id"]),
        (&json!("authorized"), &json!(4200), &ids[0])
    );
    assert_eq!(app.transactions(&p, "authorize").await, 1);
    assert_eq!(provider_ops(&app, &p, "authorize").await, [4200]);
    assert_eq!(
        app.held_under(&p).await,
        ["authorized"],
        "one hold at the sandbox"
    );
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
    let kinds = TestApp::kinds(&p);
    // (The sandbox's `settled` notification may follow.)
    assert_eq!(
        kinds[..4],
        ["created", "authorized", "captured", "released"]
    );
    assert_eq!(app.transactions(&p, "void").await, 1);
    assert_eq!(provider_ops(&app, &p, "capture").await, [700]);
    let r = app
        .step(order, "capture", json!({"amount": 600}), None)
        .await;
    problem_of(r, 409, "illegal-transition").await;
}

both!(illegal_steps_answer_409_and_change_nothing);
async fn illegal_steps_answer_409_and_change_nothing(app: TestApp) {
    // Refused by payments itself, before any call to the provider: the
    // payment's events and status stay as they were (no `step_refused`).
    let refused = async |order: uuid::Uuid, step: &str, key: Option<&str>| {
        let before = app.payment(order).await;
        let body = if step == "refunds" {
            json!({"amount": 100})
        } else {
            json!({})
        };
        let r = app.step(order, step, body, key).await;
        problem_of(r, 409, "illegal-transition").await;
        let after = app.payment(order).await;
        assert_eq!(after["events"], before["events"], "{step}");
        assert_eq!(after["status"], before["status"], "{step}");
    };
    let (order, _) = app.paid(cards::APPROVES, 500).await;
    refused(order, "refunds", Some("early")).await;
    assert_eq!(app.step(order, "void", json!({}), None).await.status(), 200);
    refused(order, "capture", None).await;
    refused(order, "refunds", Some("after-void")).await;
    let (order, _) = app.paid(cards::APPROVES, 500).await;
    let captured = app.step(order, "capture", json!({}), None).await;
    assert_eq!(captured.status(), 200);
    // (A settlement may arrive meanwhile: wait for it so the events hold still.)
    app.wait_for(order, "the settlement", |p| {
        TestApp::kinds(p).contains(&"settled".to_owned())
    })
    .await;
    refused(order, "void", None).await;
    let (declined, _) = app.paid(cards::DECLINES, 500).await;
    refused(declined, "capture", None).await;
    refused(declined, "void", None).await;
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
    // The longest key the contract allows works like any other.
    let long = "k".repeat(255);
    let r = app
        .step(order, "refunds", json!({"amount": 100}), Some(&long))
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let p = app.payment(order).await;
    assert_eq!(p["refunded"], 350);
    let r = app
        .step(
            order,
            "refunds",
            json!({"amount": 100}),
            Some(&"k".repeat(256)),
        )
        .await;
    problem_of(r, 400, "idempotency-key-invalid").await;
}

both!(twenty_concurrent_partial_refunds_never_exceed_the_capture);
async fn twenty_concurrent_partial_refunds_never_exceed_the_capture(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 1000).await;
    app.step(order, "capture", json!({"amount": 900}), None)
        .await;
    // Each refund takes a while at the sandbox, so the twenty overlap there.
    app.slow(50);
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
    assert_eq!(refunds, [100; 9], "the sandbox was asked nine times only");
    assert!(!TestApp::kinds(&p).contains(&"step_refused".to_owned()));
    // Payments refused the eleven itself: nine refund calls were recorded.
    let db = app.state.0.payments.store.db();
    let sql = "SELECT state FROM payment_operations WHERE kind = 'refund'";
    let ops: Vec<(String,)> = db.sql().fetch_all(sql, ()).await.unwrap();
    assert_eq!(ops, vec![("done".to_owned(),); 9]);
    let r = app
        .step(order, "refunds", json!({"amount": 1}), Some("one-more"))
        .await;
    problem(r, 409).await;
}

both!(one_answer_settled_ten_times_at_once_is_applied_once);
async fn one_answer_settled_ten_times_at_once_is_applied_once(app: TestApp) {
    use emporium_payments::store::{OpKind, Outcome, Started, StepRequest};
    let (order, p) = app.paid(cards::APPROVES, 1000).await;
    let store = app.state.0.payments.store.clone();
    let step = StepRequest {
        kind: OpKind::Capture,
        key: "capture".into(),
        amount: None,
    };
    let now = app.clock.now_ms();
    let Started::Call(_, op) = store
        .start(app.intent_of(&p).await.id, &step, now)
        .await
        .unwrap()
    else {
        panic!("a capture of an authorized payment is started");
    };
    // Ten settles of the same answer race (the request and the recovery
    // loop, say): the row lock lets one apply it.
    let settles = (0..10).map(|_| {
        let (store, op) = (store.clone(), op.clone());
        tokio::spawn(async move { store.settle(&op, &Outcome::Done, now).await.unwrap() })
    });
    for settled in futures_util::future::join_all(settles).await {
        assert_eq!(settled.unwrap().status.as_str(), "captured");
    }
    let p = app.payment(order).await;
    assert_eq!(app.transactions(&p, "capture").await, 1);
    let captured = TestApp::kinds(&p)
        .iter()
        .filter(|k| *k == "captured")
        .count();
    assert_eq!(captured, 1);
    assert_eq!(p["captured"], 1000);
}
