//! Warehouses, stock levels and the journal.

#![allow(clippy::unwrap_used)]

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::fixtures::{available, json_of, on_hand_and_reserved, refused, settle};
use crate::helpers::{TestApp, fields, new_id, problem, problem_of};
use emporium_testkit::both;

/// Adjusts `product`'s stock in `warehouse` by `delta` as an admin: the
/// answer, whatever its status.
async fn adjust_stock(
    app: &TestApp,
    warehouse: &str,
    product: &str,
    delta: i64,
    reason: &str,
) -> Response {
    app.admin_json(
        Method::POST,
        &format!("/api/v1/warehouses/{warehouse}/stock/{product}/adjustments"),
        json!({"delta": delta, "reason": reason}),
    )
    .await
}

async fn stock_is_set_and_adjusted_never_below_reserved(app: TestApp) {
    let (product, w) = app.stocked("MUG", &[10, 4]).await;
    assert_eq!(available(&app, &product).await, 14);

    let adjust =
        |delta: i64, reason: &'static str| adjust_stock(&app, &w[0], &product, delta, reason);
    let r = adjust(-3, "broken in transit").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["on_hand"], 7);
    let six = json!([{"product_id": product, "quantity": 6}]);
    assert_eq!(app.reserve(&new_id(), six).await.status(), 201);
    // 7 on hand, 6 reserved in warehouse 0 (it alone can serve 6).
    problem_of(adjust(-2, "shrinkage").await, 409, "below-reserved").await;
    let r = app.set_stock(&w[0], &product, 5).await;
    problem_of(r, 409, "below-reserved").await;
    let (on_hand, _) = on_hand_and_reserved(&app, &product).await;
    assert_eq!(on_hand, 7, "nothing changed");
    assert_eq!(app.set_stock(&w[0], &product, 6).await.status(), 200);
    problem(adjust(0, "nothing").await, 422).await;
    problem(adjust(1, "").await, 422).await;
    problem(app.set_stock(&w[0], &product, -1).await, 422).await;
    let unknown = "01900000-0000-7000-8000-000000000000";
    problem(app.set_stock(&w[0], unknown, 1).await, 404).await;

    let stock = app.stock(&product).await;
    let total: i64 = stock
        .iter()
        .map(|s| s["on_hand"].as_i64().unwrap() - s["reserved"].as_i64().unwrap())
        .sum();
    assert_eq!(available(&app, &product).await, total);
    assert_eq!(total, 4, "6 - 6 in one warehouse, 4 in the other");

    // Admins only.
    let rows = app.get(&format!("/api/v1/products/{product}/stock"));
    refused(rows.bearer_auth(&app.customer), 403).await;
    refused(app.get("/api/v1/warehouses"), 401).await;
    let again = json!({"code": "MUG-W0", "name": "Again"});
    let r = app
        .admin_json(Method::POST, "/api/v1/warehouses", again)
        .await;
    problem_of(r, 409, "code-taken").await;
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
    settle(&app, &app.orders, &r1, "commit").await;
    settle(&app, &app.orders, &r2, "release").await;
    adjust_stock(&app, &w[1], &product, 4, "return").await;

    let journal = format!("/api/v1/stock/movements?product_id={product}");
    let page = json_of(app.as_admin(Method::GET, &journal)).await;
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
        let int = |key: &str| m[key].as_i64().unwrap();
        let warehouse = m["warehouse_id"].as_str().unwrap().to_owned();
        let (on_hand, reserved) = replayed.entry(warehouse).or_default();
        *on_hand += int("delta_on_hand");
        *reserved += int("delta_reserved");
        let after = (int("on_hand_after"), int("reserved_after"));
        assert_eq!((*on_hand, *reserved), after, "{m}");
        assert!(!m["actor"].as_str().unwrap().is_empty());
    }
    for s in app.stock(&product).await {
        let int = |key: &str| s[key].as_i64().unwrap();
        let w = s["warehouse_id"].as_str().unwrap();
        assert_eq!(replayed[w], (int("on_hand"), int("reserved")));
    }
    // 10 - 7 shipped + 4 returned = 7 on hand, nothing reserved.
    assert_eq!(available(&app, &product).await, 7);
}
both!(the_journal_replayed_from_zero_equals_current_stock);

async fn stock_changes_that_would_overflow_answer_422(app: TestApp) {
    let (product, w) = app.stocked("BOLT", &[10]).await;
    let adjust = |delta: i64| adjust_stock(&app, &w[0], &product, delta, "count");
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
    let count = |reason: String| {
        app.admin_json(Method::PUT, &path, json!({"on_hand": 5, "reason": reason}))
    };
    let body = problem(count("x".repeat(501)).await, 422).await;
    assert_eq!(fields(&body), vec!["reason"]);
    let (on_hand, _) = on_hand_and_reserved(&app, &product).await;
    assert_eq!(on_hand, 1, "nothing changed");
    assert_eq!(count("é".repeat(500)).await.status(), 200);
    assert_eq!(app.stock(&product).await[0]["on_hand"], 5);
}
both!(a_stock_count_reason_is_at_most_500_characters);

fn seqs(movements: &[Value]) -> Vec<i64> {
    movements
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// One more unit of `product` in `warehouse`; the answer's status.
async fn add_one(app: &TestApp, warehouse: &str, product: &str, reason: String) -> u16 {
    let r = adjust_stock(app, warehouse, product, 1, &reason).await;
    r.status().as_u16()
}

/// Paging the journal by `after` (= the last page's `next_after`) yields
/// every movement exactly once and in order, whatever the page size, with
/// or without a product filter.
async fn movement_pages_cover_the_journal_exactly_once(app: TestApp) {
    let (lamp, lw) = app.stocked("PAGE-LAMP", &[1]).await;
    let (desk, dw) = app.stocked("PAGE-DESK", &[1]).await;
    // 23 more movements of the lamp, 8 more of the desk in between: 33 in all.
    for i in 0..23 {
        assert_eq!(
            add_one(&app, &lw[0], &lamp, format!("lamp delivery {i}")).await,
            200
        );
        if i % 3 == 0 {
            assert_eq!(
                add_one(&app, &dw[0], &desk, format!("desk delivery {i}")).await,
                200
            );
        }
    }
    let all = app.movements(None, 100).await;
    assert_eq!(all.len(), 33);
    let all_seqs = seqs(&all);
    assert!(all_seqs.windows(2).all(|w| w[0] < w[1]), "{all_seqs:?}");
    let lamp_all = app.movements(Some(lamp.as_str()), 100).await;
    assert_eq!(lamp_all.len(), 24);
    assert!(lamp_all.iter().all(|m| m["product_id"] == lamp.as_str()));
    let mut reasons: Vec<&str> = lamp_all
        .iter()
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons.len(), 24, "each movement once: {reasons:?}");

    for limit in [1, 2, 5, 7, 24, 33, 34] {
        assert_eq!(
            seqs(&app.movements(None, limit).await),
            all_seqs,
            "pages of {limit}"
        );
        assert_eq!(
            seqs(&app.movements(Some(lamp.as_str()), limit).await),
            seqs(&lamp_all),
            "lamp pages of {limit}"
        );
    }
    // A full page points on; the page after the last movement is empty and ends.
    let last = *all_seqs.last().unwrap();
    let journal =
        |query: &str| app.as_admin(Method::GET, &format!("/api/v1/stock/movements?{query}"));
    let page = json_of(journal("limit=33")).await;
    assert_eq!(page["next_after"], last);
    let page = json_of(journal(&format!("after={last}"))).await;
    assert_eq!(page, json!({"items": [], "next_after": null}));
    for bad in ["limit=0", "limit=1001"] {
        let body = refused(journal(bad), 422).await;
        assert_eq!(fields(&body), ["limit"], "{bad}");
    }
    let rows = app.assert_journal_replays(&lamp).await;
    assert_eq!(rows.values().copied().collect::<Vec<_>>(), [(24, 0)]);
    app.assert_journal_replays(&desk).await;
}
both!(movement_pages_cover_the_journal_exactly_once);
