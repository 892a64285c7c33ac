//! Warehouses, stock levels and the journal.

#![allow(clippy::unwrap_used)]

use reqwest::Method;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{TestApp, fields, new_id, problem};

async fn stock_is_set_and_adjusted_never_below_reserved(app: TestApp) {
    let (product, w) = app.stocked("MUG", &[10, 4]).await;
    let p: Value = app
        .get(&format!("/api/v1/products/{product}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["available"], 14);

    let adjustments = format!("/api/v1/warehouses/{}/stock/{product}/adjustments", w[0]);
    let adjust = |delta: i64, reason: &str| {
        app.admin_json(
            Method::POST,
            &adjustments,
            json!({"delta": delta, "reason": reason}),
        )
    };
    let r = adjust(-3, "broken in transit").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["on_hand"], 7);
    assert_eq!(
        app.reserve(&new_id(), json!([{"product_id": product, "quantity": 6}]))
            .await
            .status(),
        201
    );
    // 7 on hand, 6 reserved in warehouse 0 (it alone can serve 6).
    let body = problem(adjust(-2, "shrinkage").await, 409).await;
    assert_eq!(body["type"], "/problems/below-reserved");
    problem(app.set_stock(&w[0], &product, 5).await, 409).await;
    assert_eq!(app.set_stock(&w[0], &product, 6).await.status(), 200);
    problem(adjust(0, "nothing").await, 422).await;
    problem(adjust(1, "").await, 422).await;
    problem(app.set_stock(&w[0], &product, -1).await, 422).await;
    problem(
        app.set_stock(&w[0], "01900000-0000-7000-8000-000000000000", 1)
            .await,
        404,
    )
    .await;

    let stock = app.stock(&product).await;
    let total: i64 = stock
        .iter()
        .map(|s| s["on_hand"].as_i64().unwrap() - s["reserved"].as_i64().unwrap())
        .sum();
    let p: Value = app
        .get(&format!("/api/v1/products/{product}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["available"], total);
    assert_eq!(total, 4, "6 - 6 in one warehouse, 4 in the other");

    // Admins only.
    problem(
        app.get(&format!("/api/v1/products/{product}/stock"))
            .bearer_auth(&app.customer)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    problem(app.get("/api/v1/warehouses").send().await.unwrap(), 401).await;
    problem(
        app.admin_json(
            Method::POST,
            "/api/v1/warehouses",
            json!({"code": "MUG-W0", "name": "Again"}),
        )
        .await,
        409,
    )
    .await;
}
both!(stock_is_set_and_adjusted_never_below_reserved);

async fn the_journal_replayed_from_zero_equals_current_stock(app: TestApp) {
    let (product, w) = app.stocked("JAR", &[5, 5]).await;
    let r1 = new_id();
    let r2 = new_id();
    app.reserve(&r1, json!([{"product_id": product, "quantity": 7}]))
        .await;
    app.reserve(&r2, json!([{"product_id": product, "quantity": 2}]))
        .await;
    app.post(&format!("/internal/v1/reservations/{r1}/commit"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap();
    app.post(&format!("/internal/v1/reservations/{r2}/release"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap();
    app.admin_json(
        Method::POST,
        &format!("/api/v1/warehouses/{}/stock/{product}/adjustments", w[1]),
        json!({"delta": 4, "reason": "return"}),
    )
    .await;

    let page: Value = app
        .as_admin(
            Method::GET,
            &format!("/api/v1/stock/movements?product_id={product}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let movements = page["items"].as_array().unwrap();
    let kinds: Vec<&str> = movements
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"reserve")
            && kinds.contains(&"commit")
            && kinds.contains(&"release")
            && kinds.contains(&"adjust")
    );
    let mut replayed: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for m in movements {
        let e = replayed
            .entry(m["warehouse_id"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += m["delta_on_hand"].as_i64().unwrap();
        e.1 += m["delta_reserved"].as_i64().unwrap();
        assert_eq!(
            (e.0, e.1),
            (
                m["on_hand_after"].as_i64().unwrap(),
                m["reserved_after"].as_i64().unwrap()
            ),
            "{m}"
        );
        assert!(!m["actor"].as_str().unwrap().is_empty());
    }
    for s in app.stock(&product).await {
        let w = s["warehouse_id"].as_str().unwrap();
        assert_eq!(
            replayed[w],
            (
                s["on_hand"].as_i64().unwrap(),
                s["reserved"].as_i64().unwrap()
            )
        );
    }
    // 10 - 7 shipped + 4 returned = 7 on hand, nothing reserved.
    let p: Value = app
        .get(&format!("/api/v1/products/{product}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["available"], 7);
}
both!(the_journal_replayed_from_zero_equals_current_stock);

async fn stock_changes_that_would_overflow_answer_422(app: TestApp) {
    let (product, w) = app.stocked("BOLT", &[10]).await;
    let adjustments = format!("/api/v1/warehouses/{}/stock/{product}/adjustments", w[0]);
    let adjust = |delta: i64| {
        app.admin_json(
            Method::POST,
            &adjustments,
            json!({"delta": delta, "reason": "count"}),
        )
    };
    for delta in [
        i64::MIN,
        i64::MIN + 1,
        i64::MAX,
        -1_000_000_001,
        1_000_000_001,
    ] {
        let body = problem(adjust(delta).await, 422).await;
        assert_eq!(fields(&body), vec!["delta"], "{delta}");
    }
    // Within the per-change bound, but past what a warehouse may hold.
    assert_eq!(
        app.set_stock(&w[0], &product, 1_000_000_000).await.status(),
        200
    );
    let body = problem(adjust(1).await, 422).await;
    assert_eq!(fields(&body), vec!["delta"]);
    let body = problem(adjust(1_000_000_000).await, 422).await;
    assert_eq!(fields(&body), vec!["delta"]);
    assert_eq!(app.stock(&product).await[0]["on_hand"], 1_000_000_000);
    let r = adjust(-1_000_000_000).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["on_hand"], 0);
}
both!(stock_changes_that_would_overflow_answer_422);

async fn a_stock_count_reason_is_at_most_500_characters(app: TestApp) {
    let (product, w) = app.stocked("NUT", &[1]).await;
    let path = format!("/api/v1/warehouses/{}/stock/{product}", w[0]);
    let body = problem(
        app.admin_json(
            Method::PUT,
            &path,
            json!({"on_hand": 5, "reason": "x".repeat(501)}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(fields(&body), vec!["reason"]);
    assert_eq!(
        app.stock(&product).await[0]["on_hand"],
        1,
        "nothing changed"
    );
    let r = app
        .admin_json(
            Method::PUT,
            &path,
            json!({"on_hand": 5, "reason": "é".repeat(500)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.stock(&product).await[0]["on_hand"], 5);
}
both!(a_stock_count_reason_is_at_most_500_characters);
