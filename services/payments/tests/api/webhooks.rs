//! The provider's webhook: signature, staleness and replays.

#![allow(clippy::unwrap_used)]

use emporium_auth::webhook::sign;
use emporium_db::Clock;
use emporium_testkit::both;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, WEBHOOK_SECRET, cards, problem, problem_of};

/// A `capture_failed` notification for the order's captured payment.
async fn capture_failed(app: &TestApp) -> (Uuid, Value) {
    let (order, p) = app.paid(cards::APPROVES, 600).await;
    app.step(order, "capture", json!({}), None).await;
    let intent = app.intent_of(&p).await;
    let intent_id = intent.id;
    let body = json!({
        "id": Uuid::new_v4(),
        "kind": "capture_failed",
        "authorization_id": intent.provider_id.unwrap(),
        "reference": intent_id,
        "amount": 600,
        "currency": "EUR",
        "created_at": app.clock.now_ms(),
    });
    (order, body)
}

fn now_secs(app: &TestApp) -> i64 {
    app.clock.now_ms() / 1000
}

async fn deliver(app: &TestApp, body: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut r = app
        .post("/api/v1/payments/webhooks")
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        r = r.header("provider-signature", signature);
    }
    r.send().await.unwrap()
}

both!(
    a_notification_is_applied_once_and_only_when_signed_and_fresh,
    |s| {
        // Only the notifications this test sends reach payments.
        s.sandbox.sandbox.webhook_url = "https://127.0.0.1:9/nowhere".into();
    }
);
async fn a_notification_is_applied_once_and_only_when_signed_and_fresh(app: TestApp) {
    let (order, body) = capture_failed(&app).await;
    let bytes = serde_json::to_vec(&body).unwrap();
    let secret = WEBHOOK_SECRET.as_bytes();
    let now = now_secs(&app);

    problem_of(
        deliver(&app, &bytes, None).await,
        401,
        "webhook-signature-invalid",
    )
    .await;
    // Unsigned junk is refused for its signature before it is read.
    problem(deliver(&app, b"not json", None).await, 401).await;
    let wrong_secret = sign(b"whsec_another_secret_0123456789abcdef", now, &bytes);
    problem(deliver(&app, &bytes, Some(wrong_secret)).await, 401).await;
    let mut tampered = body.clone();
    tampered["amount"] = json!(1);
    let signed_other = sign(secret, now, &serde_json::to_vec(&tampered).unwrap());
    problem(deliver(&app, &bytes, Some(signed_other)).await, 401).await;
    for stale in [now - 301, now + 301] {
        let r = deliver(&app, &bytes, Some(sign(secret, stale, &bytes))).await;
        problem_of(r, 400, "webhook-stale").await;
    }
    assert_eq!(
        app.payment(order).await["status"],
        "captured",
        "nothing applied yet"
    );

    let signature = sign(secret, now - 299, &bytes);
    let r = deliver(&app, &bytes, Some(signature.clone())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"outcome": "applied"})
    );
    let after = app.payment(order).await;
    assert_eq!(
        (&after["status"], &after["failure_reason"]),
        (&json!("failed"), &json!("capture_failed"))
    );
    // The same request again, and the same notification freshly signed: no effect.
    for again in [signature, sign(secret, now, &bytes)] {
        let r = deliver(&app, &bytes, Some(again)).await;
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"outcome": "duplicate"})
        );
    }
    let p = app.payment(order).await;
    assert_eq!(p["events"], after["events"]);
    assert_eq!(app.transactions(&p, "reversal").await, 1);

    // Signed but not a notification; signed but about no payment of ours.
    let junk = b"{\"id\": 1}";
    let r = deliver(&app, junk, Some(sign(secret, now, junk))).await;
    problem(r, 422).await;
    // Our payment's id with another authorization: not ours either.
    let mut other_authorization = body.clone();
    other_authorization["id"] = json!(Uuid::new_v4());
    other_authorization["authorization_id"] = json!(Uuid::new_v4());
    let bytes = serde_json::to_vec(&other_authorization).unwrap();
    let r = deliver(&app, &bytes, Some(sign(secret, now, &bytes))).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"outcome": "unknown"})
    );
    let mut stranger = body.clone();
    stranger["id"] = json!(Uuid::new_v4());
    stranger["reference"] = json!(Uuid::new_v4());
    let bytes = serde_json::to_vec(&stranger).unwrap();
    let r = deliver(&app, &bytes, Some(sign(secret, now, &bytes))).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"outcome": "unknown"})
    );
}

both!(
    a_late_failure_after_a_refund_fails_the_rest_and_unfitting_notices_are_ignored,
    |s| {
        s.sandbox.sandbox.webhook_url = "https://127.0.0.1:9/nowhere".into();
    }
);
async fn a_late_failure_after_a_refund_fails_the_rest_and_unfitting_notices_are_ignored(
    app: TestApp,
) {
    let secret = WEBHOOK_SECRET.as_bytes();
    let send = async |body: &Value| {
        let bytes = serde_json::to_vec(body).unwrap();
        let r = deliver(&app, &bytes, Some(sign(secret, now_secs(&app), &bytes))).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["outcome"].clone()
    };
    // Captured 600, 200 refunded, then the network refuses the capture.
    let (order, body) = capture_failed(&app).await;
    let r = app
        .step(order, "refunds", json!({"amount": 200}), Some("early"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(send(&body).await, "applied");
    let p = app.payment(order).await;
    assert_eq!(
        (
            &p["status"],
            &p["failure_reason"],
            &p["captured"],
            &p["refunded"]
        ),
        (
            &json!("failed"),
            &json!("capture_failed"),
            &json!(0),
            &json!(200)
        )
    );
    let reversed: i64 = app
        .entries_of(&p)
        .await
        .iter()
        .filter(|e| e.movement.as_str() == "reversal" && e.amount > 0)
        .map(|e| e.amount)
        .sum();
    assert_eq!(reversed, 400, "what was still the shop's is reversed");

    // About a payment never captured, in another currency, or for nothing:
    // remembered, and nothing changes.
    let (authorized, p) = app.paid(cards::APPROVES, 500).await;
    let intent = app.intent_of(&p).await;
    let intent_id = intent.id;
    let mut early = body.clone();
    early["id"] = json!(Uuid::new_v4());
    early["reference"] = json!(intent_id);
    early["authorization_id"] = json!(intent.provider_id.unwrap());
    assert_eq!(send(&early).await, "ignored");
    let (captured, mut odd) = capture_failed(&app).await;
    for (field, value) in [
        ("amount", json!(599)),
        ("currency", json!("USD")),
        ("amount", json!(-5)),
        ("amount", json!(0)),
    ] {
        odd["id"] = json!(Uuid::new_v4());
        odd["currency"] = json!("EUR");
        odd["amount"] = json!(600);
        odd[field] = value;
        assert_eq!(send(&odd).await, "ignored", "{field}");
    }
    assert_eq!(app.payment(authorized).await["status"], "authorized");
    assert_eq!(app.payment(captured).await["status"], "captured");
    let verified = app.state.0.payments.store.ledger().verify().await.unwrap();
    assert!(verified.valid, "{verified:?}");
}
