//! Technical cancels by the merchant's reference: what is authorized under
//! it is voided, and nothing is authorized under it any more, an authorize
//! racing the cancel included.

use futures_util::future::join;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, operations, problem, problem_of, voided};
use emporium_testkit::both;

/// A cancel voids every authorization under its reference that is only
/// authorized (not a captured one, nor one under another reference), answers
/// the same when sent again, and refuses every later authorize under it.
async fn a_cancel_voids_what_is_authorized_and_refuses_the_reference(app: TestApp) {
    let reference = Uuid::new_v4();
    let first = app
        .authorized_under("4242424242424242", 500, reference)
        .await;
    let second = app
        .authorized_under("4000000000000259", 300, reference)
        .await;
    let captured = app
        .authorized_under("4242424242424242", 200, reference)
        .await;
    let capture = format!("/v1/authorizations/{captured}/capture");
    let r = app.keyed(&capture, "cap", &json!({"amount": 200})).await;
    assert_eq!(r.status(), 200);
    let elsewhere = app.authorized("4242424242424242", 100).await;

    let r = app.cancel(reference).await;
    assert_eq!(r.status(), 200);
    let cancellation: Value = r.json().await.unwrap();
    assert_eq!(cancellation["reference"], reference.to_string());
    let mut got = voided(&cancellation);
    got.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(got, expected, "{cancellation}");
    for (id, amount) in [(&first, 500), (&second, 300)] {
        let record = app.record(id).await;
        assert_eq!(record["status"], "voided", "{record}");
        assert_eq!(
            operations(&record),
            [("authorize", amount), ("void", amount)]
        );
    }
    let record = app.record(&captured).await;
    assert_eq!(
        record["status"], "captured",
        "a cancel does not undo a capture"
    );
    assert_eq!(app.record(&elsewhere).await["status"], "authorized");

    // Again: the same answer, and nothing more is done.
    let r = app.cancel(reference).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), cancellation);
    assert_eq!(operations(&app.record(&first).await).len(), 2);

    // Any authorize under the reference from now on is refused, and
    // authorizes nothing.
    let token = app.token("4242424242424242").await;
    let late = json!({"token": token, "amount": 100, "currency": "EUR", "reference": reference});
    let r = app.keyed("/v1/authorizations", "late", &late).await;
    problem_of(r, 409, "reference-cancelled").await;
    assert_eq!(app.authorizations_with(&token).await, 0);

    // A reference may be cancelled before anything is authorized under it.
    let unused = Uuid::new_v4();
    let r = app.cancel(unused).await;
    assert_eq!(r.status(), 200);
    assert!(voided(&r.json().await.unwrap()).is_empty());
    let r = app.authorize_under("4242424242424242", 100, unused).await;
    problem_of(r, 409, "reference-cancelled").await;
}
both!(a_cancel_voids_what_is_authorized_and_refuses_the_reference);

/// A cancel needs the API key and a reference; the nil UUID is none.
async fn a_cancel_without_key_or_reference_is_refused(app: TestApp) {
    let body = json!({"reference": Uuid::new_v4()});
    let anonymous = app.post("/v1/cancellations").json(&body).send().await;
    problem(anonymous.unwrap(), 401).await;
    let nil = app
        .send_json("/v1/cancellations", &json!({"reference": Uuid::nil()}))
        .await;
    let problem_body = problem(nil, 422).await;
    assert_eq!(
        emporium_testkit::problem_fields(&problem_body),
        ["reference"]
    );
    problem(app.send_json("/v1/cancellations", &json!({})).await, 422).await;
    // An idempotency key, needless here, changes nothing.
    let keyed = app.keyed("/v1/cancellations", "cancel-key", &body).await;
    assert_eq!(keyed.status(), 200);
}
both!(a_cancel_without_key_or_reference_is_refused);

/// An authorize and a cancel of its reference sent at once: either the
/// authorize is refused, or it went first and the cancel voided it. An
/// authorization is never left holding money under a cancelled reference.
async fn an_authorize_racing_a_cancel_never_slips_through(app: TestApp) {
    for n in 0..10 {
        let reference = Uuid::new_v4();
        let token = app.token("4242424242424242").await;
        let body =
            json!({"token": token, "amount": 100, "currency": "EUR", "reference": reference});
        let key = format!("race-{n}");
        let (authorized, cancelled) = join(
            app.keyed("/v1/authorizations", &key, &body),
            app.cancel(reference),
        )
        .await;
        assert_eq!(cancelled.status(), 200);
        let cancellation: Value = cancelled.json().await.unwrap();
        match authorized.status().as_u16() {
            201 => {
                let a: Value = authorized.json().await.unwrap();
                let id = a["id"].as_str().unwrap().to_owned();
                assert_eq!(voided(&cancellation), std::slice::from_ref(&id), "race {n}");
                assert_eq!(app.record(&id).await["status"], "voided", "race {n}");
            }
            _ => {
                problem_of(authorized, 409, "reference-cancelled").await;
                assert!(voided(&cancellation).is_empty(), "race {n}");
                assert_eq!(app.authorizations_with(&token).await, 0, "race {n}");
            }
        }
        const HOLDING: &str = "SELECT COUNT(*) FROM sandbox_authorizations \
            WHERE reference = $1 AND status = 'authorized'";
        let holding: i64 = app
            .store
            .db()
            .sql()
            .scalar(HOLDING, (reference,))
            .await
            .unwrap();
        assert_eq!(holding, 0, "race {n}");
    }
}
both!(an_authorize_racing_a_cancel_never_slips_through);

/// On PostgreSQL, an authorize and a cancel of one reference take its lock
/// first: while another transaction holds it, both wait; the cancel that
/// gets it first leaves the authorize refused. (SQLite's write transaction
/// orders them whole; the race above covers both engines.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_lock_orders_an_authorize_after_a_cancel() {
    use emporium_sandbox::store::Authorized;
    use std::time::Duration;
    let app = <TestApp as emporium_testkit::TestService>::spawn(
        emporium_testkit::Backend::Postgres,
        |_| {},
    )
    .await;
    let token = app.token("4242424242424242").await;
    let reference = Uuid::new_v4();
    let db = app.store.db().clone();
    let mut holder = db.begin_write().await.unwrap();
    const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('sandbox-reference:' || $1))";
    holder
        .sql()
        .execute(LOCK, (reference.to_string(),))
        .await
        .unwrap();
    let store = app.store.clone();
    let cancel = tokio::spawn(async move { store.cancel(reference, 1).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = app.store.clone();
    let (t, r) = (token.clone(), reference);
    let authorize =
        tokio::spawn(async move { store.authorize(&t, 100, "EUR", r, 2).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !cancel.is_finished() && !authorize.is_finished(),
        "both wait for the lock"
    );
    holder.commit().await.unwrap();
    let voided = tokio::time::timeout(Duration::from_secs(5), cancel)
        .await
        .unwrap()
        .unwrap();
    assert!(voided.is_empty());
    let authorized = tokio::time::timeout(Duration::from_secs(5), authorize)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(authorized, Authorized::ReferenceCancelled),
        "{authorized:?}"
    );
}
