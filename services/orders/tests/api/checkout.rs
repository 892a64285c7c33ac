//! Placing orders: each card's outcome, what a rejection gives back, the
//! idempotency of `POST /orders`, and its validation.

use emporium_testkit::{both, count_of};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, cards, fields, ok, problem_of};

both!(each_card_ends_the_checkout_as_it_should);
async fn each_card_ends_the_checkout_as_it_should(app: TestApp) {
    let product = app.product(50, 1250).await;
    let cases = [
        (cards::APPROVES, "confirmed", None),
        (cards::DECLINES, "rejected", Some("payment_declined")),
        (cards::INSUFFICIENT, "rejected", Some("insufficient_funds")),
        (
            cards::GATEWAY_ERROR,
            "rejected",
            Some("payment_unavailable"),
        ),
    ];
    for (card, status, reason) in cases {
        let order = app.order(&[(product, 2)], card).await;
        assert_eq!(order["status"], status, "{card}: {order}");
        assert_eq!(order["rejection_reason"], json!(reason), "{card}");
        assert_eq!(order["total"], json!({"amount": 2500, "currency": "EUR"}));
        assert_eq!(
            order["totals"],
            json!({"subtotal": {"amount": 2500, "currency": "EUR"},
                   "discount": {"amount": 0, "currency": "EUR"},
                   "shipping": {"amount": 0, "currency": "EUR"},
                   "tax": {"amount": 0, "currency": "EUR"},
                   "total": {"amount": 2500, "currency": "EUR"}})
        );
        let id = order["id"].as_str().unwrap();
        let history = app.history(id).await;
        if status == "confirmed" {
            assert_eq!(
                history,
                [
                    "placed",
                    "priced",
                    "stock_reserved",
                    "payment_authorized",
                    "confirmed"
                ]
            );
            assert_eq!(order["payment"]["status"], "authorized");
            assert_eq!(app.payment(id).await.unwrap()["status"], "authorized");
        } else {
            // The reservation was given back before the rejection.
            assert_eq!(
                history,
                [
                    "placed",
                    "priced",
                    "stock_reserved",
                    "checkout_failed",
                    "stock_released",
                    "rejected"
                ],
                "{card}"
            );
            let payment = app.payment(id).await.unwrap();
            assert_eq!(payment["status"], "failed", "{card}");
        }
    }
    // Only the confirmed order holds stock.
    assert_eq!(app.stock(product).await, (50, 2));
    assert!(app.ledger_valid().await);
}

// A checkout whose reservation ran out while orders was down (after the
// authorization) is rejected as expired, and its authorization voided.
both!(a_reservation_expired_while_orders_was_down_rejects_and_voids);
async fn a_reservation_expired_while_orders_was_down_rejects_and_voids(mut app: TestApp) {
    let product = app.product(5, 1000).await;
    let token = app.card(cards::APPROVES).await;
    // Orders stops right after the authorization is recorded (step 3).
    app.state.0.saga.stop_after_steps(3);
    let body = TestApp::order_body(&[(product, 1)], &token);
    let r = app.place_as(&app.customer, "k-expired", &body).await;
    assert_eq!(r.status(), 503);
    assert_eq!(app.stock(product).await, (5, 1));
    // Down longer than the reservation lasts (15 minutes).
    app.clock.advance(std::time::Duration::from_secs(16 * 60));
    app.restart().await;
    let id = app.newest_order().await;
    let order = app.wait_for_status(&id, "rejected").await;
    assert_eq!(order["rejection_reason"], "expired");
    assert_eq!(
        app.history(&id).await,
        [
            "placed",
            "priced",
            "stock_reserved",
            "payment_authorized",
            "checkout_failed",
            "payment_voided",
            "stock_released",
            "rejected"
        ]
    );
    assert_eq!(app.payment(&id).await.unwrap()["status"], "voided");
    // The catalog expired it; the release found it so.
    assert_eq!(app.stock(product).await, (5, 0));
    assert_eq!(app.movements(product).await, ["set", "reserve", "expire"]);
    // The same request again answers the rejected order.
    let again = app.place_as(&app.customer, "k-expired", &body).await;
    let again = ok(again, 200).await;
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["status"], "rejected");
}

both!(one_key_is_one_order_one_reservation_one_authorization);
async fn one_key_is_one_order_one_reservation_one_authorization(app: TestApp) {
    let product = app.product(100, 700).await;
    let token = app.card(cards::APPROVES).await;
    let body = TestApp::order_body(&[(product, 3)], &token);
    let first = ok(app.place_as(&app.customer, "key-1", &body).await, 201).await;
    // The same request spelt otherwise: a blank optional field is absent.
    let mut spelt = body.clone();
    spelt["shipping_address"]["line2"] = json!("  ");
    let second = app.place_as(&app.customer, "key-1", &spelt).await;
    assert_eq!(second.headers()["content-type"], "application/json");
    let second = ok(second, 200).await;
    assert_eq!(first, second);

    // Ten at once with a new key: one order, every answer the same.
    let token = app.card(cards::APPROVES).await;
    let body = TestApp::order_body(&[(product, 2)], &token);
    let answers = futures_util::future::join_all(
        (0..10).map(|_| app.place_as(&app.customer, "key-2", &body)),
    )
    .await;
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for r in answers {
        let status = r.status().as_u16();
        created += usize::from(status == 201);
        let order: Value = r.json().await.unwrap();
        assert!(status == 201 || status == 200, "{status} {order}");
        assert_eq!(order["status"], "confirmed", "{order}");
        ids.insert(order["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1, "exactly one request placed it");
    let id = ids.first().unwrap();
    let history = app.history(id).await;
    assert_eq!(history.iter().filter(|t| *t == "stock_reserved").count(), 1);
    // Catalog holds 3 + 2; payments authorized each order once.
    assert_eq!(app.stock(product).await, (100, 5));
    let payment = app.payment(id).await.unwrap();
    let authorizations = payment["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "authorized")
        .count();
    assert_eq!(authorizations, 1, "{payment}");

    // The same key with another body is refused; another customer's same
    // key is their own order.
    let other_body = TestApp::order_body(&[(product, 4)], &token);
    let r = app.place_as(&app.customer, "key-2", &other_body).await;
    problem_of(r, 422, "idempotency-key-reused").await;
    let theirs = ok(app.place_as(&app.other, "key-2", &other_body).await, 201).await;
    assert_ne!(theirs["id"], json!(id));
    // No key, or a malformed one.
    let r = app
        .post("/api/v1/orders")
        .bearer_auth(&app.customer)
        .json(&body)
        .send()
        .await
        .unwrap();
    problem_of(r, 400, "idempotency-key-missing").await;
    let r = app.place_as(&app.customer, "bad key", &body).await;
    assert_eq!(r.status(), 400);
}

both!(bad_orders_are_refused_naming_each_field_and_nothing_is_stored);
async fn bad_orders_are_refused_naming_each_field_and_nothing_is_stored(app: TestApp) {
    let eur = app.product(10, 500).await;
    let usd = app.product_in("USD", 10, 500).await;
    let free = app.product(10, 0).await;
    let dear = app.product(10, 100_000_000_000).await;
    let token = app.card(cards::APPROVES).await;
    let app = &app;
    let place = |body: Value| async move {
        app.place_as(&app.customer, &Uuid::now_v7().to_string(), &body)
            .await
    };
    let mut hidden = TestApp::order_body(&[(eur, 1)], &token);
    hidden["shipping_address"]["name"] = json!("Ada\u{200b}");
    hidden["shipping_address"]["city"] = json!("Ber\u{202e}lin");
    let cases: [(Value, &[&str]); 10] = [
        (hidden, &["shipping_address.name", "shipping_address.city"]),
        // More than one payment may be.
        (TestApp::order_body(&[(dear, 2)], &token), &["items"]),
        (json!({}), &["items", "shipping_address", "payment"]),
        (
            json!({"items": [{"product_id": eur, "quantity": 0}, {"product_id": eur, "quantity": 101}],
                   "shipping_address": {"country": "XX"}, "payment": {"token": ""}}),
            &[
                "items[0].quantity",
                "items[1].quantity",
                "items[1].product_id",
                "shipping_address.name",
                "shipping_address.line1",
                "shipping_address.city",
                "shipping_address.postal_code",
                "shipping_address.country",
                "payment.token",
            ],
        ),
        (
            TestApp::order_body(&[(Uuid::now_v7(), 1)], &token),
            &["items[0].product_id"],
        ),
        (
            TestApp::order_body(&[(eur, 1), (usd, 1)], &token),
            &["items[1].product_id"],
        ),
        (TestApp::order_body(&[(free, 1)], &token), &["items"]),
        (TestApp::order_body(&[], &token), &["items"]),
        (
            TestApp::order_body(&[(eur, i64::MAX)], &token),
            &["items[0].quantity"],
        ),
        (
            TestApp::order_body(&[(eur, 1)], "tok with spaces"),
            &["payment.token"],
        ),
    ];
    for (body, expected) in cases {
        let problem = problem_of(place(body.clone()).await, 422, "validation-error").await;
        assert_eq!(fields(&problem), expected, "{body}");
    }
    // An empty cart is no order either.
    let body = json!({"shipping_address": crate::helpers::address(), "payment": {"token": token}});
    let problem = problem_of(place(body).await, 422, "validation-error").await;
    assert_eq!(fields(&problem), ["items"]);
    // Not JSON, and no token at all.
    let r = app
        .post("/api/v1/orders")
        .bearer_auth(&app.customer)
        .header("idempotency-key", "k")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .post("/api/v1/orders")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let list: Value = app.orders_list(&app.customer, "").await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(app.stock(eur).await, (10, 0));
}

// Customers racing for the last units: exactly as many confirmed as there
// are units, the rest rejected as out of stock, nothing oversold.
both!(fifty_customers_racing_for_ten_units_through_the_gateway);
async fn fifty_customers_racing_for_ten_units_through_the_gateway(app: TestApp) {
    let product = app.product(10, 2000).await;
    let gateway = app.gateway().await;
    let mut bodies = Vec::new();
    for _ in 0..50 {
        let customer = Uuid::now_v7();
        let bearer = crate::helpers::user_token(customer, false);
        let token = app.card_for(&bearer, cards::APPROVES).await;
        bodies.push((bearer, TestApp::order_body(&[(product, 1)], &token)));
    }
    let answers = futures_util::future::join_all(bodies.iter().map(|(bearer, body)| {
        gateway
            .post("/api/v1/orders")
            .bearer_auth(bearer)
            .header("idempotency-key", Uuid::now_v7().to_string())
            .json(body)
            .send()
    }))
    .await;
    let mut statuses = Vec::new();
    let mut outcomes = std::collections::BTreeMap::new();
    let (mut confirmed, mut rejected) = (Vec::new(), Vec::new());
    for r in answers {
        let r = r.unwrap();
        statuses.push(r.status().as_u16());
        let order: Value = r.json().await.unwrap();
        let outcome = format!(
            "{}/{}",
            order["status"].as_str().unwrap_or("?"),
            order["rejection_reason"].as_str().unwrap_or("-")
        );
        let id = order["id"].as_str().unwrap().to_owned();
        if order["status"] == "confirmed" {
            confirmed.push(id);
        } else {
            rejected.push(id);
        }
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    assert_eq!(count_of(&statuses, 201), 50, "{statuses:?}");
    let expected = std::collections::BTreeMap::from([
        ("confirmed/-".to_owned(), 10),
        ("rejected/out_of_stock".to_owned(), 40),
    ]);
    assert_eq!(outcomes, expected);
    assert_eq!(app.stock(product).await, (10, 10));
    let mut authorized = 0;
    for id in &confirmed {
        authorized += usize::from(app.payment(id).await.unwrap()["status"] == "authorized");
    }
    assert_eq!(authorized, 10);
    // The rejected ones never reached payments.
    for id in &rejected {
        assert!(app.payment(id).await.is_none(), "{id}");
    }
}

// Two requests creating one order: the second finds the stream started and
// is told so, nothing is overwritten.
both!(an_order_is_created_once_whoever_comes_second);
async fn an_order_is_created_once_whoever_comes_second(app: TestApp) {
    use emporium_orders::domain::OrderEvent;
    let product = app.product(5, 100).await;
    let order = app.order(&[(product, 1)], cards::APPROVES).await;
    let id: Uuid = order["id"].as_str().unwrap().parse().unwrap();
    let saga = &app.state.0.saga;
    let loaded = saga.load(id).await.unwrap().unwrap();
    let placed = OrderEvent::Placed {
        customer_id: app.other_id,
        lines: loaded.order.lines().to_vec(),
        totals: loaded.order.totals().clone(),
        shipping_address: loaded.order.shipping_address().clone(),
        payment_token: "tok_other".into(),
        request: "other".into(),
    };
    let priced = OrderEvent::Priced {
        lines: loaded.order.lines().to_vec(),
        totals: loaded.order.totals().clone(),
    };
    let ctx = emporium_http::RequestContext::background("orders");
    assert!(
        saga.create(id, placed, priced, &ctx)
            .await
            .unwrap()
            .is_none()
    );
    let after = saga.load(id).await.unwrap().unwrap();
    assert_eq!(after.order.customer_id(), app.customer_id);
    assert_eq!(after.order.version(), loaded.order.version());
}
