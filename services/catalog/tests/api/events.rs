//! What the catalog tells other services, through the outbox and the bus.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_contracts::Event;
use emporium_contracts::catalog::{
    ProductCreated, ProductDeleted, ProductPriceChanged, ProductUpdated,
};
use emporium_contracts::stock::{StockDepleted, StockLow, StockReplenished};
use emporium_messaging::{Bus, Envelope, EventHandler, HandlerError, RetryPolicy, Subscription};
use reqwest::Method;
use serde_json::json;
use tokio::sync::watch;

use crate::both;
use crate::helpers::{TestApp, new_id};

#[derive(Default)]
struct Recorder(Mutex<Vec<Envelope>>);

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

async fn product_and_stock_changes_are_published(app: TestApp) {
    let recorder = Arc::new(Recorder::default());
    let (_stop, mut rx) = watch::channel(false);
    let types = [
        ProductCreated::TYPE,
        ProductUpdated::TYPE,
        ProductPriceChanged::TYPE,
        StockLow::TYPE,
        StockDepleted::TYPE,
        StockReplenished::TYPE,
        ProductDeleted::TYPE,
    ];
    app.bus
        .subscribe(
            Subscription {
                consumer: "listener".into(),
                event_types: types.map(str::to_owned).to_vec(),
                handler: recorder.clone(),
                retry: RetryPolicy::default(),
                prefetch: 16,
            },
            Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
        )
        .await
        .unwrap();

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

    let expected = vec![
        ProductCreated::TYPE,
        ProductPriceChanged::TYPE,
        ProductUpdated::TYPE,
        StockReplenished::TYPE,
        StockLow::TYPE,
        StockDepleted::TYPE,
        ProductDeleted::TYPE,
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<String> = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event_type.clone())
            .collect();
        if seen.len() >= expected.len() {
            assert_eq!(seen, expected);
            break;
        }
        assert!(Instant::now() < deadline, "saw only {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = recorder.0.lock().unwrap().clone();
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
