//! Warehouses, stock levels and the journal.

#![allow(clippy::unwrap_used)]

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fields, new_id, problem};
use emporium_testkit::both;

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
    let body = problem(app.set_stock(&w[0], &product, 5).await, 409).await;
    assert_eq!(body["type"], "/problems/below-reserved");
    assert_eq!(
        app.stock(&product).await[0]["on_hand"],
        7,
        "nothing changed"
    );
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
    let body = problem(
        app.admin_json(
            Method::POST,
            "/api/v1/warehouses",
            json!({"code": "MUG-W0", "name": "Again"}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(body["type"], "/problems/code-taken");
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

fn seqs(movements: &[Value]) -> Vec<i64> {
    movements
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// One more unit of `product` in `warehouse`; the answer's status.
async fn add_one(app: &TestApp, warehouse: &str, product: &str, reason: String) -> u16 {
    app.admin_json(
        Method::POST,
        &format!("/api/v1/warehouses/{warehouse}/stock/{product}/adjustments"),
        json!({"delta": 1, "reason": reason}),
    )
    .await
    .status()
    .as_u16()
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
    let page: Value = app
        .as_admin(Method::GET, "/api/v1/stock/movements?limit=33")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["next_after"], last);
    let page: Value = app
        .as_admin(
            Method::GET,
            &format!("/api/v1/stock/movements?after={last}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page, json!({"items": [], "next_after": null}));
    for bad in ["limit=0", "limit=1001"] {
        let r = app
            .as_admin(Method::GET, &format!("/api/v1/stock/movements?{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(fields(&problem(r, 422).await), ["limit"], "{bad}");
    }
    let rows = app.assert_journal_replays(&lamp).await;
    assert_eq!(rows.values().copied().collect::<Vec<_>>(), [(24, 0)]);
    app.assert_journal_replays(&desk).await;
}
both!(movement_pages_cover_the_journal_exactly_once);
