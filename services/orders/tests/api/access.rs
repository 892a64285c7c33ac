//! Who sees and moves which order: a customer their own only (anyone else's
//! is as absent as a missing one), an admin every one; the list's filters
//! and paging; and what an order's history keeps to itself.

use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, cards, fields, ok, problem_of};
use emporium_testkit::both;

/// `GET /api/v1/orders{query}` as `bearer`.
async fn list(app: &TestApp, bearer: &str, query: &str) -> Response {
    app.get(&format!("/api/v1/orders{query}"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

/// The ids of a page's orders, in its order.
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of the page `GET /api/v1/orders{query}` gives `bearer`.
async fn listed(app: &TestApp, bearer: &str, query: &str) -> Vec<String> {
    ids(&ok(list(app, bearer, query).await, 200).await)
}

/// An order placed by the other customer, confirmed; its id.
async fn others_order(app: &TestApp, product: Uuid) -> String {
    let token = app.card_for(&app.other, cards::APPROVES).await;
    let body = TestApp::order_body(&[(product, 1)], &token);
    let r = app
        .place_as(&app.other, &Uuid::now_v7().to_string(), &body)
        .await;
    let order = ok(r, 201).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    order["id"].as_str().unwrap().to_owned()
}

// Someone else's order is not found, whatever is asked of it, and stays as
// it was; customers cannot ship, deliver or refund even their own.
both!(another_customers_order_is_not_found_and_stays_as_it_was);
async fn another_customers_order_is_not_found_and_stays_as_it_was(app: TestApp) {
    let product = app.product(10, 900).await;
    let order = app.order(&[(product, 2)], cards::APPROVES).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    let history = app.history(&id).await;

    let r = app.get_order(&app.other, &id).await;
    problem_of(r, 404, "not-found").await;
    let r = app
        .get(&format!("/api/v1/orders/{id}/history"))
        .bearer_auth(&app.other)
        .send()
        .await
        .unwrap();
    problem_of(r, 404, "not-found").await;
    let r = app.act(&app.other, &id, "cancel").await;
    problem_of(r, 404, "not-found").await;
    // Not in their list either.
    assert_eq!(listed(&app, &app.other, "").await, Vec::<String>::new());

    // The order is untouched: still confirmed, nothing added to its history,
    // its stock still held.
    let mine = ok(app.get_order(&app.customer, &id).await, 200).await;
    assert_eq!(mine["status"], "confirmed");
    assert_eq!(app.history(&id).await, history);
    assert_eq!(app.stock(product).await, (10, 2));

    // A customer sees their own order, without the customer's details…
    assert_eq!(mine["id"], id.as_str());
    assert_eq!(mine["customer_id"], app.customer_id.to_string());
    assert!(mine.get("customer").is_none(), "{mine}");
    // …an admin sees it with them (none known yet: null).
    let seen = ok(app.get_order(&app.admin, &id).await, 200).await;
    assert_eq!(seen["id"], id.as_str());
    assert_eq!(seen.get("customer"), Some(&Value::Null), "{seen}");

    // Customers do not ship, deliver or refund, not even their own orders.
    for step in ["ship", "deliver", "refund"] {
        let r = app.act(&app.customer, &id, step).await;
        problem_of(r, 403, "forbidden").await;
    }
    assert_eq!(app.history(&id).await, history);
    // An admin may, where the status allows it: a confirmed order is not delivered.
    let r = app.act(&app.admin, &id, "deliver").await;
    problem_of(r, 409, "order-status-conflict").await;

    // No such order, for anyone.
    let missing = Uuid::now_v7().to_string();
    for bearer in [&app.customer, &app.admin] {
        let r = app.get_order(bearer, &missing).await;
        problem_of(r, 404, "not-found").await;
        let r = app
            .get(&format!("/api/v1/orders/{missing}/history"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        problem_of(r, 404, "not-found").await;
        let r = app.act(bearer, &missing, "cancel").await;
        problem_of(r, 404, "not-found").await;
    }
    let r = app.act(&app.admin, &missing, "ship").await;
    problem_of(r, 404, "not-found").await;
    // Not an id at all.
    let r = app.get_order(&app.customer, "not-an-id").await;
    problem_of(r, 400, "bad-request").await;
    let r = app
        .get("/api/v1/orders/not-an-id/history")
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    problem_of(r, 400, "bad-request").await;
    let r = app.act(&app.customer, "not-an-id", "cancel").await;
    problem_of(r, 400, "bad-request").await;
    // And nothing without a token.
    let r = app
        .get(&format!("/api/v1/orders/{id}"))
        .send()
        .await
        .unwrap();
    problem_of(r, 401, "unauthorized").await;
    let r = app.get("/api/v1/orders").send().await.unwrap();
    problem_of(r, 401, "unauthorized").await;
}

// A customer's list holds their own orders only (a `customer_id` of theirs
// is ignored); an admin's every order, or one customer's; `status` filters.
both!(lists_show_customers_their_own_orders_and_admins_every_one);
async fn lists_show_customers_their_own_orders_and_admins_every_one(app: TestApp) {
    let product = app.product(10, 500).await;
    let confirmed = app.order(&[(product, 1)], cards::APPROVES).await;
    let confirmed = confirmed["id"].as_str().unwrap().to_owned();
    let rejected = app.order(&[(product, 1)], cards::DECLINES).await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    let rejected = rejected["id"].as_str().unwrap().to_owned();
    let others = others_order(&app, product).await;

    // Newest first.
    assert_eq!(
        listed(&app, &app.customer, "").await,
        [rejected.clone(), confirmed.clone()]
    );
    assert_eq!(
        listed(&app, &app.other, "").await,
        std::slice::from_ref(&others)
    );
    let query = format!("?customer_id={}", app.other_id);
    assert_eq!(
        listed(&app, &app.customer, &query).await,
        [rejected.clone(), confirmed.clone()]
    );
    assert_eq!(
        listed(&app, &app.admin, "").await,
        [others.clone(), rejected.clone(), confirmed.clone()]
    );
    assert_eq!(
        listed(&app, &app.admin, &query).await,
        std::slice::from_ref(&others)
    );
    let query = format!("?customer_id={}", app.customer_id);
    assert_eq!(
        listed(&app, &app.admin, &query).await,
        [rejected.clone(), confirmed.clone()]
    );

    // By status.
    assert_eq!(
        listed(&app, &app.customer, "?status=confirmed").await,
        std::slice::from_ref(&confirmed)
    );
    assert_eq!(
        listed(&app, &app.customer, "?status=rejected").await,
        std::slice::from_ref(&rejected)
    );
    assert_eq!(
        listed(&app, &app.customer, "?status=shipped").await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&app, &app.admin, "?status=confirmed").await,
        [others.clone(), confirmed.clone()]
    );
    let query = format!("?status=confirmed&customer_id={}", app.other_id);
    assert_eq!(
        listed(&app, &app.admin, &query).await,
        std::slice::from_ref(&others)
    );
    // The list's items are the orders as GET shows them.
    let page = ok(list(&app, &app.customer, "?status=confirmed").await, 200).await;
    let one = ok(app.get_order(&app.customer, &confirmed).await, 200).await;
    assert_eq!(page["items"][0], one);
    assert_eq!(page["next_cursor"], Value::Null);

    // What is not a status or not an id.
    let problem = problem_of(
        list(&app, &app.customer, "?status=nonsense").await,
        422,
        "validation-error",
    )
    .await;
    assert_eq!(fields(&problem), ["status"]);
    let r = list(&app, &app.admin, "?customer_id=nobody").await;
    assert_eq!(r.status(), 400);
}

// Pages run newest first; each but the last gives the cursor of the next.
both!(lists_page_newest_first_with_cursors);
async fn lists_page_newest_first_with_cursors(app: TestApp) {
    let product = app.product(10, 300).await;
    let mut placed = Vec::new();
    for _ in 0..3 {
        let order = app.order(&[(product, 1)], cards::APPROVES).await;
        placed.push(order["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();

    let first = ok(list(&app, &app.customer, "?limit=2").await, 200).await;
    assert_eq!(ids(&first), newest_first[..2].to_vec());
    let cursor = first["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no cursor: {first}"))
        .to_owned();
    assert!(!cursor.is_empty());
    let query = format!("?limit=2&cursor={cursor}");
    let second = ok(list(&app, &app.customer, &query).await, 200).await;
    assert_eq!(ids(&second), newest_first[2..].to_vec());
    assert_eq!(second.get("next_cursor"), Some(&Value::Null), "{second}");
    // A page exactly as long as what is left has no cursor either.
    let all = ok(list(&app, &app.customer, "?limit=3").await, 200).await;
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(listed(&app, &app.customer, "").await, newest_first);
    // The other customer's pages are their own (empty).
    assert_eq!(listed(&app, &app.other, &query).await, Vec::<String>::new());

    // Bad paging is named, never a first page.
    for query in ["?limit=0", "?limit=101", "?limit=two", "?limit=-1"] {
        let problem = problem_of(
            list(&app, &app.customer, query).await,
            422,
            "validation-error",
        )
        .await;
        assert_eq!(fields(&problem), ["limit"], "{query}");
    }
    for query in ["?cursor=abc", "?cursor=not*base64"] {
        let problem = problem_of(
            list(&app, &app.customer, query).await,
            422,
            "validation-error",
        )
        .await;
        assert_eq!(fields(&problem), ["cursor"], "{query}");
    }
    let problem = problem_of(
        list(&app, &app.customer, "?limit=0&cursor=abc&status=x").await,
        422,
        "validation-error",
    )
    .await;
    assert_eq!(fields(&problem), ["limit", "cursor", "status"]);
}

// The history shows each event's data, but never the card token the order
// was paid with, nor the fingerprint of the request that placed it.
both!(the_history_never_shows_the_card_token_or_the_request);
async fn the_history_never_shows_the_card_token_or_the_request(app: TestApp) {
    let product = app.product(10, 800).await;
    let token = app.card(cards::APPROVES).await;
    assert!(token.len() >= 8, "{token}");
    let body = TestApp::order_body(&[(product, 1)], &token);
    let order = ok(app.place_as(&app.customer, "history-key", &body).await, 201).await;
    let id = order["id"].as_str().unwrap().to_owned();

    for bearer in [&app.customer, &app.admin] {
        let r = app
            .get(&format!("/api/v1/orders/{id}/history"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(!text.contains(&token), "{text}");
        let events: Value = serde_json::from_str(&text).unwrap();
        let placed = &events[0];
        assert_eq!(placed["type"], "placed", "{events}");
        assert_eq!(placed["sequence"], 1, "{events}");
        let data = placed["data"].as_object().unwrap();
        assert!(!data.contains_key("payment_token"), "{placed}");
        assert!(!data.contains_key("request"), "{placed}");
        // The rest of it is there.
        assert_eq!(data["customer_id"], json!(app.customer_id));
        assert_eq!(data["lines"][0]["product_id"], json!(product));
        assert_eq!(data["shipping_address"]["city"], "Berlin");
        let types: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "placed",
                "priced",
                "stock_reserved",
                "payment_authorized",
                "confirmed"
            ]
        );
    }
    // Nor does the order itself, or the list.
    let text = app
        .get_order(&app.customer, &id)
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&token), "{text}");
    let text = list(&app, &app.admin, "").await.text().await.unwrap();
    assert!(!text.contains(&token), "{text}");
}
