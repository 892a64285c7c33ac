//! Notifications to the merchant's endpoint: one per capture, signed, sent
//! again until the endpoint takes it, and given up after `max_attempts`.

use std::time::Duration;

use emporium_contracts::provider::NotificationKind;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, operations, problem_of, verify_signature};
use emporium_testkit::both;

/// Well past a few polls and retries of the test's timings: what has not
/// come by then does not come.
const QUIET: Duration = Duration::from_millis(500);

/// Authorizes `amount` EUR on `number` under `reference` and captures it
/// all; the authorization's id.
async fn captured(app: &TestApp, number: &str, amount: i64, reference: Uuid) -> String {
    let id = app.authorized_under(number, amount, reference).await;
    let capture = format!("/v1/authorizations/{id}/capture");
    let r = app
        .keyed(
            &capture,
            &format!("capture-{id}"),
            &json!({"amount": amount}),
        )
        .await;
    assert_eq!(r.status(), 200);
    id
}

/// A capture is notified once, as `capture_settled`, signed over the exact
/// body with the webhook secret.
async fn a_capture_is_notified_once_and_signed(app: TestApp) {
    let reference = Uuid::new_v4();
    let id = captured(&app, "4242424242424242", 600, reference).await;
    let receiver = app.receiver();
    receiver.at_least(1).await;
    tokio::time::sleep(QUIET).await;
    let got = receiver.deliveries();
    assert_eq!(got.len(), 1, "{got:?}");
    let delivery = &got[0];
    assert!(delivery.verify().is_ok(), "{:?}", delivery.verify());
    assert_eq!(delivery.content_type, "application/json");
    let n = delivery.notification();
    assert_eq!(n.kind, NotificationKind::CaptureSettled);
    assert_eq!(n.authorization_id.to_string(), id);
    assert_eq!(
        (n.reference, n.amount, n.currency.as_str()),
        (reference, 600, "EUR")
    );
    // The signature covers the body: the same signature over another body fails.
    let altered = String::from_utf8(delivery.body.clone())
        .unwrap()
        .replace("600", "601");
    assert!(verify_signature(&delivery.signature, altered.as_bytes()).is_err());
    let record = app.record(&id).await;
    assert_eq!(record["status"], "captured");
    assert_eq!(operations(&record), [("authorize", 600), ("capture", 600)]);
}
both!(
    a_capture_is_notified_once_and_signed,
    crate::helpers::with_webhooks
);

/// The card that fails late: its capture is notified as `capture_failed`,
/// and by then the provider shows the authorization `capture_failed`, with
/// the failure in its record; nothing can be refunded of it.
async fn a_late_capture_failure_is_notified_and_recorded(app: TestApp) {
    let reference = Uuid::new_v4();
    let id = captured(&app, "4000000000000259", 800, reference).await;
    let got = app.receiver().at_least(1).await;
    let delivery = &got[0];
    assert!(delivery.verify().is_ok(), "{:?}", delivery.verify());
    let n = delivery.notification();
    assert_eq!(n.kind, NotificationKind::CaptureFailed);
    assert_eq!(n.authorization_id.to_string(), id);
    assert_eq!((n.reference, n.amount), (reference, 800));
    let record = app.record(&id).await;
    assert_eq!(record["status"], "capture_failed", "{record}");
    assert_eq!(
        operations(&record),
        [
            ("authorize", 800),
            ("capture", 800),
            ("capture_failed", 800)
        ]
    );
    let refund = format!("/v1/authorizations/{id}/refunds");
    let r = app.keyed(&refund, "refund", &json!({"amount": 100})).await;
    problem_of(r, 409, "wrong-state").await;
}
both!(
    a_late_capture_failure_is_notified_and_recorded,
    crate::helpers::with_webhooks
);

/// An endpoint that answers 500 twice gets the same notification (same id,
/// signed afresh) a second and a third time, and none after it takes it.
async fn a_refused_notification_comes_again_until_taken(app: TestApp) {
    let receiver = app.receiver();
    receiver.refuse_next(2);
    let id = captured(&app, "4242424242424242", 700, Uuid::new_v4()).await;
    receiver.at_least(3).await;
    tokio::time::sleep(QUIET).await;
    let got = receiver.deliveries();
    let answered: Vec<u16> = got.iter().map(|d| d.answered).collect();
    assert_eq!(answered, [500, 500, 200]);
    let first = got[0].notification();
    assert_eq!(first.authorization_id.to_string(), id);
    for delivery in &got {
        assert_eq!(
            delivery.notification(),
            first,
            "the same notification each time"
        );
        assert!(delivery.verify().is_ok(), "{:?}", delivery.verify());
    }
    const STATE: &str = "SELECT attempts, delivered_at FROM notifications WHERE id = $1";
    let (attempts, delivered_at): (i64, Option<i64>) = app
        .store
        .db()
        .sql()
        .fetch_one(STATE, (first.id,))
        .await
        .unwrap();
    assert_eq!(
        attempts, 2,
        "two attempts failed before the one that was taken"
    );
    assert!(delivered_at.is_some());
}
both!(
    a_refused_notification_comes_again_until_taken,
    crate::helpers::with_webhooks
);

/// An endpoint that never takes a notification gets it `max_attempts` times;
/// then the sandbox gives up on it.
async fn a_notification_never_taken_is_given_up(app: TestApp) {
    let receiver = app.receiver();
    receiver.refuse_next(usize::MAX);
    captured(&app, "4242424242424242", 300, Uuid::new_v4()).await;
    let got = receiver.at_least(3).await;
    let id = got[0].notification().id;
    const GAVE_UP: &str = "SELECT gave_up_at FROM notifications WHERE id = $1";
    let db = app.store.db();
    eventually("the sandbox gives up", move || async move {
        let at: Option<i64> = db.sql().scalar(GAVE_UP, (id,)).await.unwrap();
        at.is_some()
    })
    .await;
    tokio::time::sleep(QUIET).await;
    let got = receiver.deliveries();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter()
            .all(|d| d.answered == 500 && d.notification().id == id)
    );
}
both!(a_notification_never_taken_is_given_up, |s| {
    crate::helpers::with_webhooks(s);
    s.sandbox.max_attempts = 3;
});

/// Without a webhook URL (the default) a capture queues nothing.
async fn without_a_webhook_nothing_is_queued(app: TestApp) {
    captured(&app, "4000000000000259", 500, Uuid::new_v4()).await;
    let queued: i64 = app
        .store
        .db()
        .sql()
        .scalar("SELECT COUNT(*) FROM notifications", ())
        .await
        .unwrap();
    assert_eq!(queued, 0);
}
both!(without_a_webhook_nothing_is_queued);
