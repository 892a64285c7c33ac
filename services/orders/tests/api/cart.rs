//! The cart: lines priced by the catalog as it is now, flagged when they
//! cannot be ordered as they stand; its validation, its 100-line limit (also
//! under a burst), one cart per customer, and ordering from it.

use emporium_orders::store::CartChange;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, address, cards, fields, ok, problem_of};
use emporium_testkit::both;

/// `(product_id, quantity)` of each of `items` (a cart's or an order's), sorted.
fn pairs(items: &Value) -> Vec<(Uuid, i64)> {
    let mut pairs: Vec<(Uuid, i64)> = items
        .as_array()
        .unwrap_or_else(|| panic!("not a list of items: {items}"))
        .iter()
        .map(|line| {
            (
                Uuid::parse_str(line["product_id"].as_str().unwrap()).unwrap(),
                line["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// The cart's line for `product`.
fn line(cart: &Value, product: Uuid) -> &Value {
    cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["product_id"] == product.to_string())
        .unwrap_or_else(|| panic!("no line for {product}: {cart}"))
}

/// A request to order the cart (no `items`) paid with `token`.
fn from_cart(token: &str) -> Value {
    json!({"shipping_address": address(), "payment": {"token": token}})
}

// Each line carries the catalog's name, price and stock now; too few on sale
// and a product taken off sale are flagged, and the latter is left out of the
// total.
both!(cart_lines_are_priced_by_the_catalog_and_flag_what_cannot_be_ordered);
async fn cart_lines_are_priced_by_the_catalog_and_flag_what_cannot_be_ordered(app: TestApp) {
    let a = app.product(5, 1250).await;
    let b = app.product(3, 400).await;
    let cart = ok(app.put_cart_item(&app.customer, a, json!(2)).await, 200).await;
    assert_eq!(pairs(&cart["items"]), [(a, 2)]);
    let cart = ok(app.put_cart_item(&app.customer, b, json!(4)).await, 200).await;
    // The answer is the cart as GET shows it.
    assert_eq!(cart, app.cart(&app.customer).await);
    let mut both_lines = vec![(a, 2), (b, 4)];
    both_lines.sort();
    assert_eq!(pairs(&cart["items"]), both_lines);

    let first = line(&cart, a);
    assert!(
        first["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("Thing ")),
        "{first}"
    );
    assert_eq!(first["quantity"], 2);
    assert_eq!(
        first["unit_price"],
        json!({"amount": 1250, "currency": "EUR"})
    );
    assert_eq!(
        first["line_total"],
        json!({"amount": 2500, "currency": "EUR"})
    );
    assert_eq!(first["available"], 5);
    assert_eq!(first.get("problem"), Some(&Value::Null), "{first}");

    let second = line(&cart, b);
    assert_eq!(
        second["unit_price"],
        json!({"amount": 400, "currency": "EUR"})
    );
    assert_eq!(
        second["line_total"],
        json!({"amount": 1600, "currency": "EUR"})
    );
    assert_eq!(second["available"], 3);
    assert_eq!(second["problem"], "insufficient_stock", "{second}");
    assert_eq!(cart["total"], json!({"amount": 4100, "currency": "EUR"}));

    // Exactly as many as are on sale is no problem.
    let cart = ok(app.put_cart_item(&app.customer, b, json!(3)).await, 200).await;
    assert_eq!(line(&cart, b).get("problem"), Some(&Value::Null), "{cart}");
    assert_eq!(
        line(&cart, b)["line_total"],
        json!({"amount": 1200, "currency": "EUR"})
    );
    assert_eq!(cart["total"], json!({"amount": 3700, "currency": "EUR"}));

    // A product taken off sale stays in the cart, flagged, out of the total.
    let r = app
        .catalog
        .delete(&format!("/api/v1/products/{a}"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cart = app.cart(&app.customer).await;
    let gone = line(&cart, a);
    assert_eq!(gone["quantity"], 2, "{gone}");
    assert_eq!(gone["problem"], "product_unavailable", "{gone}");
    assert_eq!(gone.get("name"), Some(&Value::Null), "{gone}");
    assert_eq!(gone.get("unit_price"), Some(&Value::Null), "{gone}");
    assert_eq!(gone.get("line_total"), Some(&Value::Null), "{gone}");
    assert_eq!(gone["available"], 0, "{gone}");
    assert_eq!(cart["total"], json!({"amount": 1200, "currency": "EUR"}));

    // It cannot be set again, but it can be removed (quantity 0).
    let r = app.put_cart_item(&app.customer, a, json!(1)).await;
    problem_of(r, 404, "not-found").await;
    let cart = ok(app.put_cart_item(&app.customer, a, json!(0)).await, 200).await;
    assert_eq!(pairs(&cart["items"]), [(b, 3)]);

    // Emptied, the cart has no lines and no total.
    let r = app
        .delete("/api/v1/cart")
        .bearer_auth(&app.customer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.cart(&app.customer).await,
        json!({"items": [], "total": null})
    );
}

// Quantities 0 to 100 only, real products only, a token always; one cart per
// customer, which a refused request leaves as it was.
both!(cart_requests_are_checked_and_each_customer_has_their_own);
async fn cart_requests_are_checked_and_each_customer_has_their_own(app: TestApp) {
    let a = app.product(5, 1000).await;
    ok(app.put_cart_item(&app.customer, a, json!(1)).await, 200).await;

    for quantity in [json!(-1), json!(101), json!(i64::MAX)] {
        let r = app.put_cart_item(&app.customer, a, quantity.clone()).await;
        let problem = problem_of(r, 422, "validation-error").await;
        assert_eq!(fields(&problem), ["quantity"], "{quantity}");
    }
    // Not a whole number: a 422 naming the field, but neither a Rust type
    // nor the value sent.
    for quantity in [json!("two"), json!(1.5), json!(null)] {
        let r = app.put_cart_item(&app.customer, a, quantity.clone()).await;
        let problem = problem_of(r, 422, "validation-error").await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with("quantity"), "{quantity}: {problem}");
        assert!(!detail.contains("i64"), "{quantity}: {problem}");
        assert!(
            !detail.contains("two") && !detail.contains("1.5"),
            "{quantity}: {problem}"
        );
    }
    let r = app
        .put(&format!("/api/v1/cart/items/{a}"))
        .bearer_auth(&app.customer)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem_of(r, 422, "validation-error").await;
    let r = app
        .put(&format!("/api/v1/cart/items/{a}"))
        .bearer_auth(&app.customer)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // No such product, and no product id at all.
    let r = app
        .put_cart_item(&app.customer, Uuid::now_v7(), json!(1))
        .await;
    problem_of(r, 404, "not-found").await;
    let r = app
        .put_cart_item(&app.customer, "not-a-uuid", json!(1))
        .await;
    problem_of(r, 400, "bad-request").await;
    // Nothing refused changed the cart.
    assert_eq!(pairs(&app.cart(&app.customer).await["items"]), [(a, 1)]);

    // 100 is the most, even beyond what is on sale (then it is flagged).
    let cart = ok(app.put_cart_item(&app.customer, a, json!(100)).await, 200).await;
    assert_eq!(pairs(&cart["items"]), [(a, 100)]);
    assert_eq!(line(&cart, a)["problem"], "insufficient_stock");

    // Without a token, nothing.
    let r = app.get("/api/v1/cart").send().await.unwrap();
    problem_of(r, 401, "unauthorized").await;
    let r = app
        .put(&format!("/api/v1/cart/items/{a}"))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    problem_of(r, 401, "unauthorized").await;
    let r = app.delete("/api/v1/cart").send().await.unwrap();
    problem_of(r, 401, "unauthorized").await;

    // Another customer has a cart of their own.
    assert_eq!(
        app.cart(&app.other).await,
        json!({"items": [], "total": null})
    );
    let cart = ok(app.put_cart_item(&app.other, a, json!(2)).await, 200).await;
    assert_eq!(pairs(&cart["items"]), [(a, 2)]);
    assert_eq!(pairs(&app.cart(&app.customer).await["items"]), [(a, 100)]);
    let r = app
        .delete("/api/v1/cart")
        .bearer_auth(&app.other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.cart(&app.other).await["items"], json!([]));
    assert_eq!(pairs(&app.cart(&app.customer).await["items"]), [(a, 100)]);
}

// A full cart (100 lines) refuses a new product, also when many arrive at
// once, but still changes and removes the lines it holds.
both!(a_cart_holds_at_most_100_lines_even_under_a_burst);
async fn a_cart_holds_at_most_100_lines_even_under_a_burst(app: TestApp) {
    let carts = &app.state.0.carts;
    let now = emporium_messaging::now_ms();
    // 99 lines straight into the store (making 99 products would be slow).
    for _ in 0..99 {
        let change = carts
            .set(app.customer_id, Uuid::now_v7(), 1, now)
            .await
            .unwrap();
        assert_eq!(change, CartChange::Set);
    }
    let a = app.product(10, 500).await;
    let b = app.product(10, 700).await;
    let cart = ok(app.put_cart_item(&app.customer, a, json!(1)).await, 200).await;
    assert_eq!(cart["items"].as_array().unwrap().len(), 100);
    // The 101st line is refused, naming the product.
    let r = app.put_cart_item(&app.customer, b, json!(1)).await;
    let problem = problem_of(r, 422, "validation-error").await;
    assert_eq!(fields(&problem), ["product_id"]);
    let lines = carts.lines(app.customer_id).await.unwrap();
    assert_eq!(lines.len(), 100);
    assert!(!lines.iter().any(|(p, _)| *p == b));
    // A line the full cart holds still changes…
    ok(app.put_cart_item(&app.customer, a, json!(3)).await, 200).await;
    let lines = carts.lines(app.customer_id).await.unwrap();
    assert!(lines.contains(&(a, 3)), "{lines:?}");
    assert_eq!(lines.len(), 100);
    // …and removing one makes room for another.
    ok(app.put_cart_item(&app.customer, a, json!(0)).await, 200).await;
    let cart = ok(app.put_cart_item(&app.customer, b, json!(2)).await, 200).await;
    assert_eq!(cart["items"].as_array().unwrap().len(), 100);
    let lines = carts.lines(app.customer_id).await.unwrap();
    assert!(lines.contains(&(b, 2)), "{lines:?}");
    assert!(!lines.iter().any(|(p, _)| *p == a));

    // A burst: 99 lines held, ten new products at once. Exactly one fits.
    let customer = Uuid::now_v7();
    for _ in 0..99 {
        let change = carts.set(customer, Uuid::now_v7(), 1, now).await.unwrap();
        assert_eq!(change, CartChange::Set);
    }
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let carts = carts.clone();
            let product = Uuid::now_v7();
            tokio::spawn(async move { carts.set(customer, product, 1, now).await.unwrap() })
        })
        .collect();
    let changes: Vec<CartChange> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let set = changes.iter().filter(|c| **c == CartChange::Set).count();
    let full = changes.iter().filter(|c| **c == CartChange::Full).count();
    assert_eq!((set, full), (1, 9), "{changes:?}");
    assert_eq!(carts.lines(customer).await.unwrap().len(), 100);
    // The other carts were not touched.
    assert_eq!(carts.lines(app.customer_id).await.unwrap().len(), 100);
}

// `POST /orders` without `items` orders the cart; a confirmed order empties
// it, a rejected one leaves it as it was, and an order of explicit items
// does not touch it.
both!(an_order_without_items_takes_the_cart_and_empties_it_once_confirmed);
async fn an_order_without_items_takes_the_cart_and_empties_it_once_confirmed(app: TestApp) {
    let a = app.product(5, 1250).await;
    let b = app.product(5, 400).await;
    ok(app.put_cart_item(&app.customer, a, json!(2)).await, 200).await;
    ok(app.put_cart_item(&app.customer, b, json!(1)).await, 200).await;
    ok(app.put_cart_item(&app.other, a, json!(1)).await, 200).await;
    let held = pairs(&app.cart(&app.customer).await["items"]);
    assert_eq!(held.len(), 2);

    // Declined: the cart is kept for another try, nothing is held.
    let token = app.card(cards::DECLINES).await;
    let key = Uuid::now_v7().to_string();
    let order = ok(
        app.place_as(&app.customer, &key, &from_cart(&token)).await,
        201,
    )
    .await;
    assert_eq!(order["status"], "rejected", "{order}");
    assert_eq!(order["rejection_reason"], "payment_declined");
    assert_eq!(pairs(&order["items"]), held);
    assert_eq!(pairs(&app.cart(&app.customer).await["items"]), held);
    assert_eq!(app.stock(a).await, (5, 0));

    // Explicit items are not the cart: it stays.
    let order = app.order(&[(b, 1)], cards::APPROVES).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(pairs(&app.cart(&app.customer).await["items"]), held);

    // Confirmed from the cart: its lines are the order's, and it is empty.
    let token = app.card(cards::APPROVES).await;
    let key = Uuid::now_v7().to_string();
    let order = ok(
        app.place_as(&app.customer, &key, &from_cart(&token)).await,
        201,
    )
    .await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(pairs(&order["items"]), held);
    assert_eq!(order["total"], json!({"amount": 2900, "currency": "EUR"}));
    assert_eq!(
        app.cart(&app.customer).await,
        json!({"items": [], "total": null})
    );
    assert_eq!(app.stock(a).await, (5, 2));
    assert_eq!(app.stock(b).await, (5, 2));
    // Another customer's cart is theirs still.
    assert_eq!(pairs(&app.cart(&app.other).await["items"]), [(a, 1)]);

    // The empty cart is no order.
    let token = app.card(cards::APPROVES).await;
    let key = Uuid::now_v7().to_string();
    let r = app.place_as(&app.customer, &key, &from_cart(&token)).await;
    let problem = problem_of(r, 422, "validation-error").await;
    assert_eq!(fields(&problem), ["items"]);
}
