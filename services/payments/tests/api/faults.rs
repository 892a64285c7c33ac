//! The provider failing: 5xx and timeouts are retried with the same key and
//! never charge twice; an authorize that never gets an answer fails the
//! payment with `provider_error` and leaves nothing authorized.

#![allow(clippy::unwrap_used)]

use emporium_testkit::both;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, cards};

/// Sends the request `make` builds until it is answered with anything but
/// 503, as a caller retrying the same call would (at most 40 times).
async fn until_answered(make: impl AsyncFn() -> reqwest::Response) -> reqwest::Response {
    for _ in 0..40 {
        let r = make().await;
        if r.status() != 503 {
            return r;
        }
    }
    panic!("still 503 after 40 attempts");
}

both!(flaky_provider_calls_are_retried_and_charge_once);
async fn flaky_provider_calls_are_retried_and_charge_once(app: TestApp) {
    let token = app.token(cards::APPROVES).await;
    // Half the calls fail: refused, or done with the answer lost.
    app.fail(0.5, 0.5, 0.0);
    let mut authorized = 0;
    for _ in 0..6 {
        let order = Uuid::now_v7();
        let body = app.authorization(order, &token, 1000);
        let r = until_answered(|| app.authorize(&body)).await;
        let p: Value = r.json().await.unwrap();
        if p["status"] != "authorized" {
            // Every attempt of the client failed: the payment failed, and
            // anything the sandbox holds under it is released.
            assert_eq!(p["failure_reason"], "provider_error", "{p}");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while app.held_under(&p).await.iter().any(|s| s == "authorized") {
                assert!(std::time::Instant::now() < deadline, "still held: {p}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            continue;
        }
        authorized += 1;
        let r = until_answered(|| app.step(order, "capture", json!({}), None)).await;
        assert_eq!(r.status(), 200);
        let r =
            until_answered(|| app.step(order, "refunds", json!({"amount": 400}), Some("r1"))).await;
        assert_eq!(r.status(), 200);
        let p = app.payment(order).await;
        assert_eq!(
            (&p["captured"], &p["refunded"]),
            (&json!(600), &json!(400)),
            "{p}"
        );
        app.fail(0.0, 0.0, 0.0);
        let record = app.provider_record(&p).await;
        let kinds: Vec<&str> = record.operations.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["authorize", "capture", "refund"],
            "one of each at the provider"
        );
        for movement in ["authorize", "capture", "refund"] {
            assert_eq!(app.transactions(&p, movement).await, 1, "{movement}");
        }
        app.fail(0.5, 0.5, 0.0);
    }
    assert!(
        authorized > 0,
        "with half the calls failing and 4 attempts, some pass"
    );
}

both!(an_authorize_whose_answers_are_all_lost_fails_and_holds_nothing);
async fn an_authorize_whose_answers_are_all_lost_fails_and_holds_nothing(app: TestApp) {
    let token = app.token(cards::APPROVES).await;
    // Every call is done at the sandbox and its answer lost.
    app.fail(1.0, 0.0, 0.0);
    let order = Uuid::now_v7();
    let r = app.authorize(&app.authorization(order, &token, 700)).await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (&p["status"], &p["failure_reason"]),
        (&json!("failed"), &json!("provider_error"))
    );
    assert!(
        app.entries_of(&p).await.is_empty(),
        "no money moved in the ledger"
    );
    // The sandbox authorized it once; the recovery loop's technical cancel
    // voids it there, though that answer is lost too (payments does not
    // know yet: no `released` event).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.held_under(&p).await != ["voided"] {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            app.held_under(&p).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        TestApp::kinds(&app.payment(order).await),
        ["created", "failed"]
    );
    // Once the provider answers again, the recovery loop learns of it.
    app.fail(0.0, 0.0, 0.0);
    let p = app.wait_for_event(order, "released").await;
    assert_eq!(app.held_under(&p).await, ["voided"]);
    assert_eq!(p["status"], "failed");
    // A retry of the order's authorize gets the same answer; nothing new is held.
    let r = app.authorize(&app.authorization(order, &token, 700)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.held_under(&p).await, ["voided"]);
}

both!(an_authorize_that_times_out_fails_and_a_late_authorization_is_refused);
async fn an_authorize_that_times_out_fails_and_a_late_authorization_is_refused(app: TestApp) {
    let token = app.token(cards::APPROVES).await;
    // Every call hangs (1.5 s) past payments' timeout (1 s), then answers 503.
    app.fail(1.0, 0.0, 1.0);
    let order = Uuid::now_v7();
    let started = std::time::Instant::now();
    let r = app.authorize(&app.authorization(order, &token, 300)).await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (&p["status"], &p["failure_reason"]),
        (&json!("failed"), &json!("provider_error"))
    );
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(4),
        "four attempts of 1 s: {took:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(6),
        "and nothing more: {took:?}"
    );
    app.fail(0.0, 0.0, 0.0);
    let p = app.wait_for_event(order, "released").await;
    // The reference is cancelled: an authorize arriving now is refused.
    let reference: Uuid = p["id"].as_str().unwrap().parse().unwrap();
    let late = emporium_contracts::provider::AuthorizeRequest {
        token: token.clone(),
        amount: 300,
        currency: "EUR".into(),
        reference,
    };
    let refused = app.provider.authorize("late-arrival", &late).await;
    assert!(
        matches!(
            refused,
            Err(emporium_client::provider::ProviderError::Refused(_))
        ),
        "{refused:?}"
    );
    assert!(
        app.held_under(&p).await.is_empty(),
        "no attempt reached the sandbox"
    );
}

both!(a_capture_whose_answer_was_lost_is_finished_by_the_recovery_loop);
async fn a_capture_whose_answer_was_lost_is_finished_by_the_recovery_loop(app: TestApp) {
    let (order, _) = app.paid(cards::APPROVES, 1000).await;
    // The sandbox captures, and every answer is lost: the caller gets 503.
    app.fail(1.0, 0.0, 0.0);
    let r = app.step(order, "capture", json!({}), None).await;
    crate::helpers::problem_of(r, 503, "provider-unavailable").await;
    assert_eq!(app.payment(order).await["status"], "authorized");
    // Nobody asks again; the recovery loop makes the call with the same key.
    app.fail(0.0, 0.0, 0.0);
    let p = app
        .wait_for(order, "the capture", |p| p["status"] == "captured")
        .await;
    assert_eq!(p["captured"], 1000);
    assert_eq!(app.transactions(&p, "capture").await, 1);
    let record = app.provider_record(&p).await;
    let captures: Vec<i64> = record
        .operations
        .iter()
        .filter(|o| o.kind == "capture")
        .map(|o| o.amount)
        .collect();
    assert_eq!(captures, [1000], "the sandbox captured once");
}
