//! Tokens, and what each sandbox card does, end to end through the API.

#![allow(clippy::unwrap_used)]

use emporium_testkit::both;
use emporium_testkit::events::listen;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cards, fields, problem, problem_of};

both!(a_card_becomes_a_token_and_its_number_is_kept_nowhere);
async fn a_card_becomes_a_token_and_its_number_is_kept_nowhere(app: TestApp) {
    let r = app.tokenize_as("4242 4242 4242 4242", None).await;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert!(t["token"].as_str().unwrap().starts_with("tok_"), "{t}");
    assert_eq!(
        (&t["brand"], &t["last4"], &t["exp_month"], &t["exp_year"]),
        (&json!("visa"), &json!("4242"), &json!(12), &json!(2031))
    );
    assert!(!t.to_string().contains("4242424242424242"));
    // A signed-in customer's token too; then a payment on it.
    let (_, payment) = app.paid(cards::APPROVES, 100).await;
    assert_eq!(payment["last4"], "4242");
    // Nothing payments stored holds the number.
    let db = app.state.0.payments.store.db();
    if db.engine() == emporium_db::Engine::Postgres {
        let mut stored = String::new();
        for table in [
            "card_tokens",
            "payment_intents",
            "payment_operations",
            "payment_history",
            "ledger_entries",
            "outbox",
        ] {
            let sql = format!("SELECT CAST(t AS TEXT) FROM {table} t");
            let rows: Vec<(String,)> = db
                .sql()
                .fetch_all(sqlx::AssertSqlSafe(sql), ())
                .await
                .unwrap();
            assert!(!rows.is_empty(), "{table} holds rows");
            stored.extend(rows.into_iter().map(|(r,)| r));
        }
        assert!(stored.contains("4242"), "the last four are kept");
        // With every non-digit taken out (spaces, dashes, quotes, hex).
        let digits: String = stored.chars().filter(char::is_ascii_digit).collect();
        assert!(!digits.contains("4242424242424242"), "{stored}");
    } else {
        // Every byte of the database files, indexes and free pages included.
        let path = app.db_url.trim_start_matches("sqlite://").to_owned();
        let mut seen = 0;
        for file in [path.clone(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                seen += bytes.len();
                let text = String::from_utf8_lossy(&bytes);
                for spelling in ["4242424242424242", "4242 4242 4242 4242"] {
                    assert!(!text.contains(spelling), "{file}");
                }
            }
        }
        assert!(seen > 0, "the database is at {path}");
    }
}

both!(bad_cards_are_refused_field_by_field_without_their_digits);
async fn bad_cards_are_refused_field_by_field_without_their_digits(app: TestApp) {
    let cases = [
        (
            json!({"number": "4242424242424241", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            vec!["number"],
        ),
        (
            json!({"number": "1234567812345670", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            vec!["number"],
        ),
        (
            json!({"number": "4242424242424242", "exp_month": 1, "exp_year": 2020, "cvc": "123"}),
            vec!["exp_year"],
        ),
        (
            json!({"number": "4242424242424242", "exp_month": 13, "exp_year": 2031, "cvc": "12"}),
            vec!["exp_month", "cvc"],
        ),
        (
            json!({"number": "4242-4242-4242-4242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            vec!["number"],
        ),
        (
            json!({"number": "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            vec!["number"],
        ),
        (
            json!({"number": "4242424242424242", "exp_month": i64::MAX, "exp_year": i64::MIN, "cvc": "123"}),
            vec!["exp_month", "exp_year"],
        ),
    ];
    for (card, expected) in cases {
        let r = app
            .post("/api/v1/payments/tokens")
            .json(&card)
            .send()
            .await
            .unwrap();
        let p = problem_of(r, 422, "validation-error").await;
        let mut got = fields(&p);
        got.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(got, expected, "{card}");
        let text = p.to_string();
        assert!(
            !text.contains("42424242") && !text.contains("12345678"),
            "{text}"
        );
    }
    // A number sent as a JSON number is refused without echoing it.
    let r = app
        .post("/api/v1/payments/tokens")
        .json(&json!({"number": 4242424242424242_u64, "exp_month": 12, "exp_year": 2031, "cvc": "123"}))
        .send()
        .await
        .unwrap();
    let p = problem(r, 422).await;
    assert!(!p.to_string().contains("4242424242424242"), "{p}");
    // A bearer token that is there must be valid: never taken as anonymous.
    let r = app
        .post("/api/v1/payments/tokens")
        .bearer_auth("not-a-token")
        .json(
            &json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
        )
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
}

both!(each_test_card_ends_as_documented);
async fn each_test_card_ends_as_documented(app: TestApp) {
    let (failed, _stop) = listen(&*app.bus, &["emporium.payments.payment.failed.v1"]).await;
    let (_, p) = app.paid(cards::APPROVES, 1250).await;
    assert_eq!(app.held_under(&p).await, ["authorized"]);
    assert_eq!(
        (&p["status"], &p["authorized"]),
        (&json!("authorized"), &json!(1250))
    );
    assert_eq!((&p["brand"], &p["last4"]), (&json!("visa"), &json!("4242")));
    assert_eq!(app.transactions(&p, "authorize").await, 1);
    for (number, reason) in [
        (cards::DECLINES, "card_declined"),
        (cards::INSUFFICIENT, "insufficient_funds"),
        (cards::GATEWAY_ERROR, "provider_error"),
    ] {
        let (_, p) = app.paid(number, 500).await;
        assert_eq!(
            (&p["status"], &p["failure_reason"], &p["authorized"]),
            (&json!("failed"), &json!(reason), &json!(0)),
            "{number}"
        );
        assert!(
            app.entries_of(&p).await.is_empty(),
            "{number}: no money moved"
        );
        assert!(
            app.held_under(&p).await.is_empty(),
            "{number}: nothing held"
        );
    }
    let events = failed
        .wait_until(std::time::Duration::from_secs(10), "payment.failed", |e| {
            e.len() >= 3
        })
        .await;
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e.data["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["card_declined", "insufficient_funds", "provider_error"]
    );
}

both!(a_late_capture_failure_fails_the_payment_and_is_published);
async fn a_late_capture_failure_fails_the_payment_and_is_published(app: TestApp) {
    let (failed, _stop) = listen(&*app.bus, &["emporium.payments.payment.failed.v1"]).await;
    let (order, p) = app.paid(cards::LATE_CAPTURE_FAILURE, 900).await;
    assert_eq!(p["status"], "authorized");
    let r = app.step(order, "capture", json!({}), None).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let captured: Value = r.json().await.unwrap();
    assert_eq!(
        (&captured["status"], &captured["captured"]),
        (&json!("captured"), &json!(900))
    );
    // The sandbox's webhook arrives later and fails the capture.
    let p = app
        .wait_for(order, "the capture failure", |p| p["status"] == "failed")
        .await;
    assert_eq!(
        (&p["failure_reason"], &p["captured"]),
        (&json!("capture_failed"), &json!(0))
    );
    let kinds: Vec<&str> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.ends_with(&["capture_failed", "failed"]), "{kinds:?}");
    assert_eq!(app.transactions(&p, "reversal").await, 1);
    let events = failed
        .wait_until(std::time::Duration::from_secs(10), "payment.failed", |e| {
            !e.is_empty()
        })
        .await;
    assert_eq!(events[0].data["reason"], "capture_failed");
    assert_eq!(events[0].data["order_id"], json!(order));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(failed.events().len(), 1, "published once");
    // An ordinary card's capture settles instead.
    let (order, _) = app.paid(cards::APPROVES, 300).await;
    app.step(order, "capture", json!({}), None).await;
    let p = app.wait_for_event(order, "settled").await;
    assert_eq!(p["status"], "captured");
}

both!(tokenizing_is_limited_per_customer_and_per_address, |s| {
    s.payments.tokens.per_minute = 1;
    s.payments.tokens.burst = 3;
});
async fn tokenizing_is_limited_per_customer_and_per_address(app: TestApp) {
    let card = json!({"number": cards::APPROVES, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    let from = |address: &str| {
        app.post("/api/v1/payments/tokens")
            .header("x-forwarded-for", address)
            .json(&card)
            .send()
    };
    // Ten at once from one address: the burst of three passes, no more.
    let statuses = emporium_testkit::statuses_at_once(
        (0..10).map(|_| async { from("203.0.113.7").await.unwrap() }),
    )
    .await;
    assert_eq!(
        emporium_testkit::count_of(&statuses, 201),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        emporium_testkit::count_of(&statuses, 429),
        7,
        "{statuses:?}"
    );
    let r = from("203.0.113.7").await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429).await;
    // Another address, and a signed-in customer, have their own allowance;
    // an IPv6 client's whole /64 is one address.
    assert_eq!(from("203.0.113.8").await.unwrap().status(), 201);
    for n in 1..=3 {
        let r = from(&format!("2001:db8:1:2::{n}")).await.unwrap();
        assert_eq!(r.status(), 201);
    }
    problem(from("2001:db8:1:2:ffff::9").await.unwrap(), 429).await;
    // The gateway's entry is the last: one the client wrote before it counts for nothing.
    assert_eq!(from("6.6.6.6, 203.0.113.9").await.unwrap().status(), 201);
    problem(from("6.6.6.7, 203.0.113.7").await.unwrap(), 429).await;
    for _ in 0..3 {
        assert_eq!(
            app.tokenize_as(cards::APPROVES, Some(&app.customer))
                .await
                .status(),
            201
        );
    }
    problem(
        app.tokenize_as(cards::APPROVES, Some(&app.customer)).await,
        429,
    )
    .await;
    assert_eq!(
        app.tokenize_as(cards::APPROVES, Some(&app.other))
            .await
            .status(),
        201
    );
}

both!(an_untrusted_peer_cannot_name_another_client, |s| {
    s.payments.tokens.per_minute = 1;
    s.payments.tokens.burst = 2;
    s.payments.tokens.trusted_proxies = "192.0.2.1/32".into();
});
async fn an_untrusted_peer_cannot_name_another_client(app: TestApp) {
    let card = json!({"number": cards::APPROVES, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    let mut statuses = Vec::new();
    for n in 0..4 {
        let r = app
            .post("/api/v1/payments/tokens")
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .json(&card)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    // The test is not a trusted proxy: all four count as its own address.
    assert_eq!(statuses, [201, 201, 429, 429]);
}
