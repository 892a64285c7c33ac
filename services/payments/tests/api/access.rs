//! Who sees and moves which payment: a customer their own (someone else's
//! is 404), an admin every one, a service client the payments it made.

#![allow(clippy::unwrap_used)]

use emporium_testkit::both;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cards, problem, problem_of, service_token};

both!(a_customer_reads_only_their_own_payment);
async fn a_customer_reads_only_their_own_payment(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 800).await;
    let path = format!("/api/v1/payments?order_id={order}");
    let mine = app
        .get(&path)
        .bearer_auth(&app.customer)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    let p: Value = mine.json().await.unwrap();
    assert_eq!(
        (&p["order_id"], &p["amount"], &p["status"]),
        (&json!(order), &json!(800), &json!("authorized"))
    );
    assert_eq!(p["events"][1]["kind"], "authorized");
    let theirs = app.get(&path).bearer_auth(&app.other).send().await.unwrap();
    problem(theirs, 404).await;
    let admin = app.get(&path).bearer_auth(&app.admin).send().await.unwrap();
    assert_eq!(admin.status(), 200);
    problem(app.get(&path).send().await.unwrap(), 401).await;
    let none = format!("/api/v1/payments?order_id={}", uuid::Uuid::now_v7());
    problem(
        app.get(&none).bearer_auth(&app.admin).send().await.unwrap(),
        404,
    )
    .await;
    let r = app
        .get("/api/v1/payments")
        .bearer_auth(&app.customer)
        .send()
        .await
        .unwrap();
    problem(r, 422).await;
    let r = app
        .get("/api/v1/payments?order_id=nope")
        .bearer_auth(&app.customer)
        .send()
        .await
        .unwrap();
    problem(r, 400).await;
}

both!(a_token_serves_only_the_customer_who_made_it);
async fn a_token_serves_only_the_customer_who_made_it(app: TestApp) {
    let token = app.token(cards::APPROVES).await;
    let mut body = app.authorization(uuid::Uuid::now_v7(), &token, 100);
    body["customer_id"] = json!(app.other_id);
    let p = problem_of(app.authorize(&body).await, 422, "validation-error").await;
    assert_eq!(p["errors"][0]["field"], "token");
    body["token"] = json!("tok_unknown");
    problem_of(app.authorize(&body).await, 422, "validation-error").await;
}

both!(only_admins_refund_and_verify_the_ledger);
async fn only_admins_refund_and_verify_the_ledger(app: TestApp) {
    let (order, p) = app.paid(cards::APPROVES, 1000).await;
    app.step(order, "capture", json!({}), None).await;
    let path = format!("/api/v1/payments/{}/refund", p["id"].as_str().unwrap());
    let refund = |bearer: &str, key: Option<&str>| {
        let mut r = app
            .post(&path)
            .bearer_auth(bearer)
            .json(&json!({"amount": 400}));
        if let Some(key) = key {
            r = r.header("idempotency-key", key);
        }
        r.send()
    };
    problem(refund(&app.customer, Some("k1")).await.unwrap(), 403).await;
    problem_of(
        refund(&app.admin, None).await.unwrap(),
        400,
        "idempotency-key-missing",
    )
    .await;
    for _ in 0..2 {
        let r = refund(&app.admin, Some("k1")).await.unwrap();
        assert_eq!(r.status(), 200);
        let after: Value = r.json().await.unwrap();
        assert_eq!(
            (&after["refunded"], &after["status"]),
            (&json!(400), &json!("partially_refunded"))
        );
    }
    let r = app
        .post(&path)
        .bearer_auth(&app.admin)
        .header("idempotency-key", "k2")
        .json(&json!({"amount": 601}))
        .send()
        .await
        .unwrap();
    problem_of(r, 409, "refund-exceeds-captured").await;
    let unknown = format!("/api/v1/payments/{}/refund", uuid::Uuid::now_v7());
    let r = app
        .post(&unknown)
        .bearer_auth(&app.admin)
        .header("idempotency-key", "k3")
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    problem(r, 404).await;

    let verify = "/api/v1/payments/ledger/verify";
    problem(
        app.get(verify)
            .bearer_auth(&app.customer)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let r = app
        .get(verify)
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // authorize, capture, refund: two entries each.
    assert_eq!(
        v,
        json!({"entries": 6, "valid": true, "first_bad_entry": null})
    );
}

both!(service_clients_act_only_on_their_payments_with_their_scopes);
async fn service_clients_act_only_on_their_payments_with_their_scopes(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 1000).await;
    let path = format!("/internal/v1/payments/{order}");
    let r = app
        .get(&path)
        .bearer_auth(&app.shipping)
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
    let capture = format!("{path}/capture");
    let r = app
        .post(&capture)
        .bearer_auth(&app.shipping)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
    let reader = service_token("orders", "payments:authorize");
    let r = app
        .post(&capture)
        .bearer_auth(&reader)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(r, 403).await;
    let r = app
        .get(&path)
        .bearer_auth(&app.customer)
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
    let p = app.payment(order).await;
    assert_eq!(p["status"], "authorized");
}

both!(every_money_movement_is_published_once_through_the_outbox);
async fn every_money_movement_is_published_once_through_the_outbox(app: TestApp) {
    use emporium_testkit::events::{listen, types};
    let all = [
        "emporium.payments.payment.authorized.v1",
        "emporium.payments.payment.captured.v1",
        "emporium.payments.payment.voided.v1",
        "emporium.payments.payment.refunded.v1",
        "emporium.payments.payment.failed.v1",
    ];
    let (recorder, _stop) = listen(&*app.bus, &all).await;
    let (order, p) = app.paid(cards::APPROVES, 1000).await;
    app.step(order, "capture", json!({"amount": 800}), None)
        .await;
    app.step(order, "refunds", json!({"amount": 300}), Some("r"))
        .await;
    app.step(order, "refunds", json!({"amount": 300}), Some("r"))
        .await;
    let (voided, _) = app.paid(cards::APPROVES, 200).await;
    app.step(voided, "void", json!({}), None).await;
    let events = recorder
        .wait_until(std::time::Duration::from_secs(10), "five events", |e| {
            e.len() >= 5
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = {
        let later = recorder.events();
        assert_eq!(
            later.len(),
            events.len(),
            "nothing more: {:?}",
            types(&later)
        );
        later
    };
    assert_eq!(
        types(&events),
        [all[0], all[1], all[3], all[0], all[2]],
        "in order, once each"
    );
    let moved: Vec<(&Value, &Value)> = events
        .iter()
        .map(|e| (&e.data["order_id"], &e.data["amount"]))
        .collect();
    let (first, second) = (json!(order), json!(voided));
    assert_eq!(
        moved,
        [
            (&first, &json!(1000)),
            (&first, &json!(800)),
            (&first, &json!(300)),
            (&second, &json!(200)),
            (&second, &json!(200)),
        ]
    );
    assert_eq!(events[0].data["payment_id"], p["id"]);
    assert_eq!(events[0].data["customer_id"], json!(app.customer_id));
    assert_eq!(events[0].data["currency"], "EUR");
    assert_eq!(
        events[0].subject.as_deref(),
        Some(order.to_string().as_str())
    );
}
