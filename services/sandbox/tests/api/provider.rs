use futures_util::future::join_all;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, operations, problem, problem_of};
use emporium_testkit::both;

/// Each test card answers as docs/api.md says; a token keeps what may be
/// shown of the card, never the number.
async fn the_test_cards_answer_as_documented(app: TestApp) {
    let r = app
        .call(app.post("/v1/tokens"))
        .json(
            &json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token: Value = r.json().await.unwrap();
    assert_eq!(
        (token["brand"].as_str(), token["last4"].as_str()),
        (Some("visa"), Some("4242"))
    );
    assert!(!token.to_string().contains("424242424242"), "{token}");
    let id = app.authorized("4242424242424242", 1500).await;
    assert_eq!(app.record(&id).await["status"], "authorized");
    for (number, status, kind) in [
        ("4000000000000002", 402, "card-declined"),
        ("4000000000009995", 402, "insufficient-funds"),
        ("4000000000000119", 503, "provider-unavailable"),
    ] {
        let token = app.token(number).await;
        let body =
            json!({"token": token, "amount": 100, "currency": "EUR", "reference": Uuid::new_v4()});
        let r = app.keyed("/v1/authorizations", number, &body).await;
        problem_of(r, status, kind).await;
        assert_eq!(app.authorizations_with(&token).await, 0, "{number}");
    }
}
both!(the_test_cards_answer_as_documented);

/// Capture part, refund part of that, and nothing more than there is.
async fn money_moves_once_and_never_beyond_what_is_there(app: TestApp) {
    let id = app.authorized("4242424242424242", 1000).await;
    let path = |what: &str| format!("/v1/authorizations/{id}/{what}");
    let r = app
        .keyed(&path("capture"), "cap-1", &json!({"amount": 800}))
        .await;
    assert_eq!(r.status(), 200);
    let captured: Value = r.json().await.unwrap();
    assert_eq!(
        (captured["status"].as_str(), captured["captured"].as_i64()),
        (Some("captured"), Some(800))
    );
    let again = app
        .keyed(&path("capture"), "cap-2", &json!({"amount": 1}))
        .await;
    problem_of(again, 409, "wrong-state").await;
    problem_of(
        app.keyed(&path("void"), "void-1", &json!({})).await,
        409,
        "wrong-state",
    )
    .await;
    assert_eq!(
        app.keyed(&path("refunds"), "ref-1", &json!({"amount": 500}))
            .await
            .status(),
        201
    );
    let over = app
        .keyed(&path("refunds"), "ref-2", &json!({"amount": 301}))
        .await;
    problem_of(over, 409, "amount-too-large").await;
    for amount in [0, -1, i64::MAX, i64::MIN] {
        let bad = app
            .keyed(
                &path("refunds"),
                &format!("bad-{amount}"),
                &json!({"amount": amount}),
            )
            .await;
        let body = problem(bad, 422).await;
        assert_eq!(emporium_testkit::problem_fields(&body), ["amount"]);
    }
    let record = app.record(&id).await;
    let kinds = operations(&record);
    assert_eq!(
        kinds,
        [("authorize", 1000), ("capture", 800), ("refund", 500)]
    );
    assert_eq!(record["refunded"], 500);
}
both!(money_moves_once_and_never_beyond_what_is_there);

/// The same key again, also ten at once, moves money once: the provider's
/// own record shows one operation, and every answer names the same result.
async fn a_retried_key_moves_money_once(app: TestApp) {
    let token = app.token("4242424242424242").await;
    let reference = Uuid::new_v4();
    let body = json!({"token": token, "amount": 700, "currency": "EUR", "reference": reference});
    let answers =
        join_all((0..10).map(|_| app.keyed("/v1/authorizations", "auth-key", &body))).await;
    let mut ids = Vec::new();
    for r in answers {
        match r.status().as_u16() {
            201 => ids.push(
                r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            // Another request holds the key right now: retry later.
            409 => assert_eq!(r.headers()["retry-after"], "1"),
            other => panic!("an authorize answered {other}"),
        }
    }
    let retried = app.keyed("/v1/authorizations", "auth-key", &body).await;
    assert_eq!(retried.status(), 201);
    let id = retried.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ids.iter().all(|i| *i == id), "{ids:?} vs {id}");
    let capture = format!("/v1/authorizations/{id}/capture");
    assert_eq!(
        app.keyed(&capture, "cap-key", &json!({"amount": 700}))
            .await
            .status(),
        200
    );
    // A refund can repeat (a capture cannot), so ten at once with one key
    // show the key, not the state, keeping it to one.
    let refunds = format!("/v1/authorizations/{id}/refunds");
    let hundred = json!({"amount": 100});
    let answers = join_all((0..10).map(|_| app.keyed(&refunds, "refund-key", &hundred))).await;
    let mut refunded = 0;
    for r in answers {
        match r.status().as_u16() {
            201 => refunded += 1,
            _ => {
                problem_of(r, 409, "idempotency-key-in-use").await;
            }
        }
    }
    assert!(refunded >= 1);
    let replay = app.keyed(&refunds, "refund-key", &hundred).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(app.authorizations_with(&token).await, 1);
    let record = app.record(&id).await;
    let kinds: Vec<(&str, i64)> = operations(&record);
    assert_eq!(
        kinds,
        [("authorize", 700), ("capture", 700), ("refund", 100)],
        "{record}"
    );
    assert_eq!(record["refunded"], 100);
    let other_body =
        json!({"token": token, "amount": 701, "currency": "EUR", "reference": reference});
    let reused = app
        .keyed("/v1/authorizations", "auth-key", &other_body)
        .await;
    problem_of(reused, 422, "idempotency-key-reused").await;
    assert_eq!(app.authorizations_with(&token).await, 1);
}
both!(a_retried_key_moves_money_once);

/// With half of all calls failing transiently (refused, hanging, or the
/// answer lost after the work), retrying with the same key until an answer
/// comes authorizes exactly once.
async fn transient_failures_never_move_money_twice(app: TestApp) {
    // Each key meets a lost answer before its first success about one time
    // in five; twenty keys make a run that never does very rare.
    for n in 0..20 {
        let token = app.token("4242424242424242").await;
        let body =
            json!({"token": token, "amount": 300, "currency": "EUR", "reference": Uuid::new_v4()});
        let key = format!("flaky-{n}");
        loop {
            let make = || {
                let request = app.call(app.post("/v1/authorizations"));
                request.header("idempotency-key", &key).json(&body)
            };
            let r = app.answered(make).await;
            if r.status() == 201 {
                break;
            }
            // The key is still held by a call the client gave up on.
            problem_of(r, 409, "idempotency-key-in-use").await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(app.authorizations_with(&token).await, 1, "key {key}");
    }
}
both!(transient_failures_never_move_money_twice, |s| {
    s.sandbox.faults.failure_rate = 0.5;
    s.sandbox.faults.hang_ms = 2_000;
});

/// Every answer lost after the work was done: ten retries with one key all
/// see 503, and the sandbox still authorized exactly once.
async fn a_lost_answer_retried_moves_money_once(app: TestApp) {
    let token = app.token_without_faults().await;
    let body =
        json!({"token": token, "amount": 250, "currency": "EUR", "reference": Uuid::new_v4()});
    for _ in 0..10 {
        let r = app.keyed("/v1/authorizations", "lost-key", &body).await;
        problem_of(r, 503, "provider-unavailable").await;
    }
    assert_eq!(app.authorizations_with(&token).await, 1);
}
both!(a_lost_answer_retried_moves_money_once, |s| {
    s.sandbox.faults.failure_rate = 1.0;
    s.sandbox.faults.refuse_share = 0.0;
    s.sandbox.faults.hang_share = 0.0;
});

/// Voids, over-captures, exact refunds and refunds before capture; and ten
/// refunds with their own keys racing for what is left: the row lock lets
/// exactly as many through as fit.
async fn every_move_keeps_to_its_rules(app: TestApp) {
    let voided = app.authorized("4242424242424242", 400).await;
    let path = |id: &str, what: &str| format!("/v1/authorizations/{id}/{what}");
    let early = app
        .keyed(&path(&voided, "refunds"), "early", &json!({"amount": 1}))
        .await;
    problem_of(early, 409, "wrong-state").await;
    let over = app
        .keyed(&path(&voided, "capture"), "over", &json!({"amount": 401}))
        .await;
    problem_of(over, 409, "amount-too-large").await;
    let r = app.keyed(&path(&voided, "void"), "void", &json!({})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["captured"].as_i64()),
        (Some("voided"), Some(0))
    );

    let id = app.authorized("4242424242424242", 1000).await;
    let capture = app
        .keyed(&path(&id, "capture"), "c", &json!({"amount": 700}))
        .await;
    assert_eq!(capture.status(), 200);
    let refunds = path(&id, "refunds");
    let keys: Vec<String> = (0..10).map(|n| format!("race-{n}")).collect();
    let hundred = json!({"amount": 100});
    let answers = join_all(keys.iter().map(|k| app.keyed(&refunds, k, &hundred))).await;
    let mut passed = 0;
    for r in answers {
        if r.status() == 201 {
            passed += 1;
        } else {
            problem_of(r, 409, "amount-too-large").await;
        }
    }
    assert_eq!(passed, 7);
    let record = app.record(&id).await;
    assert_eq!(record["refunded"], 700);
    assert_eq!(record["operations"].as_array().unwrap().len(), 9);
}
both!(every_move_keeps_to_its_rules);

/// Latency and hanging are what they say: a hang answers 503 only after
/// hang_ms and authorizes nothing.
async fn a_hanging_provider_answers_late_and_does_nothing(app: TestApp) {
    let token = app.token_without_faults().await;
    let body =
        json!({"token": token, "amount": 100, "currency": "EUR", "reference": Uuid::new_v4()});
    let started = std::time::Instant::now();
    let r = app.keyed("/v1/authorizations", "hang", &body).await;
    let took = started.elapsed();
    problem_of(r, 503, "provider-unavailable").await;
    assert!(
        took >= std::time::Duration::from_millis(400),
        "answered after {took:?}"
    );
    assert_eq!(app.authorizations_with(&token).await, 0);
}
both!(a_hanging_provider_answers_late_and_does_nothing, |s| {
    s.sandbox.faults.latency_ms = 100;
    s.sandbox.faults.failure_rate = 1.0;
    s.sandbox.faults.refuse_share = 0.0;
    s.sandbox.faults.hang_share = 1.0;
    s.sandbox.faults.hang_ms = 300;
});

/// Without the API key nothing is answered; bad cards are named field by
/// field; an unknown token or authorization is 404.
async fn hostile_and_mistaken_calls_are_refused(app: TestApp) {
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    let anonymous = app.post("/v1/tokens").json(&card).send().await.unwrap();
    problem(anonymous, 401).await;
    let wrong = app
        .post("/v1/tokens")
        .bearer_auth("sk_test_0123456789abcdeX")
        .json(&card)
        .send()
        .await
        .unwrap();
    problem(wrong, 401).await;
    let bad = json!({"number": "4242424242424241", "exp_month": 13, "exp_year": 31, "cvc": "12a"});
    let body = problem(app.send_json("/v1/tokens", &bad).await, 422).await;
    let fields = emporium_testkit::problem_fields(&body);
    assert_eq!(fields, ["number", "exp_month", "exp_year", "cvc"]);
    let unknown =
        json!({"token": "tok_nope", "amount": 100, "currency": "EUR", "reference": Uuid::new_v4()});
    problem(
        app.keyed("/v1/authorizations", "k-unknown", &unknown).await,
        404,
    )
    .await;
    let lower =
        json!({"token": "tok_nope", "amount": 100, "currency": "eur", "reference": Uuid::new_v4()});
    let body = problem(
        app.keyed("/v1/authorizations", "k-lower", &lower).await,
        422,
    )
    .await;
    assert_eq!(emporium_testkit::problem_fields(&body), ["currency"]);
    let last_year =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2020, "cvc": "123"});
    let body = problem(app.send_json("/v1/tokens", &last_year).await, 422).await;
    assert_eq!(emporium_testkit::problem_fields(&body), ["exp_year"]);
    let typed =
        json!({"number": 4242424242424242_i64, "exp_month": 12, "exp_year": 2031, "cvc": 987});
    let body = problem(app.send_json("/v1/tokens", &typed).await, 422).await;
    assert!(!body.to_string().contains("4242424242424242"), "{body}");
    let missing_key = app.send_json("/v1/authorizations", &unknown).await;
    problem_of(missing_key, 400, "idempotency-key-missing").await;
    let nil =
        json!({"token": "tok_nope", "amount": 100, "currency": "EUR", "reference": Uuid::nil()});
    let body = problem(app.keyed("/v1/authorizations", "k-nil", &nil).await, 422).await;
    assert_eq!(emporium_testkit::problem_fields(&body), ["reference"]);
    let nobody = app
        .call(app.get(&format!("/v1/authorizations/{}", Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    problem(nobody, 404).await;
}
both!(hostile_and_mistaken_calls_are_refused);

/// Both engines' migrations make the same tables and columns.
#[tokio::test]
async fn both_engines_have_the_same_schema() {
    emporium_testkit::schema::assert_schema_parity(
        |url| async move {
            emporium_sandbox::store::Store::open(&url, 1)
                .await
                .map(drop)
        },
        &[],
        &[],
    )
    .await;
}

/// The fault switch changes a running sandbox's faults: every call refused
/// (503, nothing done), then every call served again. A change with a share
/// out of range is refused and changes nothing.
async fn the_fault_switch_turns_failures_on_and_off(app: TestApp) {
    let token = app.token("4242424242424242").await;
    let body =
        json!({"token": token, "amount": 100, "currency": "EUR", "reference": Uuid::new_v4()});
    app.faults
        .update(|f| {
            f.failure_rate = 1.0;
            f.refuse_share = 1.0;
            f.hang_share = 0.0;
        })
        .unwrap();
    for n in 0..5 {
        let r = app
            .keyed("/v1/authorizations", &format!("refused-{n}"), &body)
            .await;
        problem_of(r, 503, "provider-unavailable").await;
    }
    problem_of(
        app.cancel(Uuid::new_v4()).await,
        503,
        "provider-unavailable",
    )
    .await;
    assert_eq!(
        app.authorizations_with(&token).await,
        0,
        "refused before any work"
    );

    app.faults.update(|f| f.failure_rate = 0.0).unwrap();
    let r = app.keyed("/v1/authorizations", "served", &body).await;
    assert_eq!(r.status(), 201);
    assert!(app.faults.update(|f| f.failure_rate = 1.5).is_err());
    assert!(
        app.faults
            .update(|f| {
                f.failure_rate = 1.0;
                f.hang_share = 0.5;
            })
            .is_err(),
        "the shares would sum to 1.5"
    );
    let r = app.keyed("/v1/authorizations", "served-again", &body).await;
    assert_eq!(r.status(), 201, "the refused changes changed nothing");
    assert_eq!(app.authorizations_with(&token).await, 2);
}
both!(the_fault_switch_turns_failures_on_and_off);
