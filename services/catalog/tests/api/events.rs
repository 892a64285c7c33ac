//! What the catalog tells other services, through the outbox and the bus.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use emporium_contracts::Event;
use emporium_contracts::catalog::{
    ProductCreated, ProductDeleted, ProductPriceChanged, ProductUpdated,
};
use emporium_contracts::stock::{StockDepleted, StockLow, StockReplenished};
use emporium_testkit::events::{Recorder, listen, types};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, new_id};
use emporium_testkit::both;

/// Waits for as many events as `expected` names, and asserts they are these.
async fn assert_published(recorder: &Recorder, expected: &[&str]) {
    let seen = recorder
        .wait_until(Duration::from_secs(20), "the events", |seen| {
            seen.len() >= expected.len()
        })
        .await;
    assert_eq!(types(&seen), expected);
}

async fn product_and_stock_changes_are_published(app: TestApp) {
    // The types listened for, in the order the steps below publish them.
    let expected = [
        ProductCreated::TYPE,
        ProductPriceChanged::TYPE,
        ProductUpdated::TYPE,
        StockReplenished::TYPE,
        StockLow::TYPE,
        StockDepleted::TYPE,
        ProductDeleted::TYPE,
    ];
    let (recorder, _stop) = listen(&*app.bus, &expected).await;

    let category = app.category("Lamps", None, json!([])).await;
    let product = app.product("LAMP-1", &category, json!({})).await;
    let id = product["id"].as_str().unwrap().to_owned();
    app.admin_json(
        Method::PATCH,
        &format!("/api/v1/products/{id}"),
        json!({"price": {"amount": 2999, "currency": "EUR"}}),
    )
    .await;
    let w = app.warehouse("LAMP-W").await;
    app.set_stock(&w, &id, 10).await; // 0 → 10: replenished
    app.reserve(&new_id(), json!([{"product_id": id, "quantity": 6}]))
        .await; // 10 → 4: low
    app.reserve(&new_id(), json!([{"product_id": id, "quantity": 4}]))
        .await; // 4 → 0: depleted
    let r = app
        .as_admin(Method::DELETE, &format!("/api/v1/products/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    assert_published(&recorder, &expected).await;
    let events = recorder.events();
    assert!(
        events
            .iter()
            .all(|e| e.subject.as_deref() == Some(id.as_str()))
    );
    let changed: ProductPriceChanged = events[1].decode().unwrap();
    assert_eq!((changed.old_amount, changed.new_amount), (1999, 2999));
    let low: StockLow = events[4].decode().unwrap();
    assert_eq!((low.available, low.threshold), (4, 5));
}
both!(product_and_stock_changes_are_published);

/// Stock events use the product's own `low_stock_below`, as created and as
/// changed by a PATCH (the default of 5 would announce neither `low` below).
async fn stock_events_use_the_products_own_low_stock_threshold(app: TestApp) {
    let (recorder, _stop) = listen(
        &*app.bus,
        &[StockLow::TYPE, StockDepleted::TYPE, StockReplenished::TYPE],
    )
    .await;

    let category = app.category("Bulbs", None, json!([])).await;
    let r = app
        .admin_json(
            Method::POST,
            "/api/v1/products",
            json!({"sku": "BULB-1", "name": "Bulb", "description": "Bright.",
                   "price": {"amount": 500, "currency": "EUR"}, "category_id": category,
                   "low_stock_below": 20}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let w = app.warehouse("BULB-W").await;
    assert_eq!(app.set_stock(&w, &id, 30).await.status(), 200); // 0 → 30: replenished
    let r = app
        .reserve(&new_id(), json!([{"product_id": id, "quantity": 15}]))
        .await;
    assert_eq!(r.status(), 201); // 30 → 15: below 20, low
    let r = app
        .admin_json(
            Method::PATCH,
            &format!("/api/v1/products/{id}"),
            json!({"low_stock_below": 10}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .reserve(&new_id(), json!([{"product_id": id, "quantity": 6}]))
        .await;
    assert_eq!(r.status(), 201); // 15 → 9: below the new 10, low again

    assert_published(
        &recorder,
        &[StockReplenished::TYPE, StockLow::TYPE, StockLow::TYPE],
    )
    .await;
    let events = recorder.events();
    let replenished: StockReplenished = events[0].decode().unwrap();
    assert_eq!(replenished.available, 30);
    let low: StockLow = events[1].decode().unwrap();
    assert_eq!((low.available, low.threshold), (15, 20));
    let low: StockLow = events[2].decode().unwrap();
    assert_eq!((low.available, low.threshold), (9, 10));
}
both!(stock_events_use_the_products_own_low_stock_threshold);
