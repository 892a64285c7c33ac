//! The product events the catalog publishes, written to the outbox in the
//! transaction of each change, with the product id as subject.

use emporium_contracts::catalog::{
    ProductCreated, ProductDeleted, ProductPriceChanged, ProductSnapshot, ProductUpdated,
};
use emporium_messaging::Envelope;
use uuid::Uuid;

use crate::store::ProductWrite;

fn snapshot(p: &ProductWrite, version: i64) -> ProductSnapshot {
    ProductSnapshot {
        product_id: p.id,
        sku: p.sku.clone(),
        name: p.name.clone(),
        price_amount: p.price_amount,
        price_currency: p.price_currency.clone(),
        category_id: p.category_id,
        version,
    }
}

pub fn created(p: &ProductWrite, trace: Option<String>) -> Envelope {
    Envelope::new(
        &ProductCreated(snapshot(p, 1)),
        Some(p.id.to_string()),
        trace,
    )
}

/// `updated`, and `price_changed` before it when the price moved.
pub fn updated(
    before_amount: i64,
    p: &ProductWrite,
    version: i64,
    trace: Option<String>,
) -> Vec<Envelope> {
    let subject = Some(p.id.to_string());
    let mut events = Vec::new();
    if before_amount != p.price_amount {
        let changed = ProductPriceChanged {
            product_id: p.id,
            old_amount: before_amount,
            new_amount: p.price_amount,
            currency: p.price_currency.clone(),
        };
        events.push(Envelope::new(&changed, subject.clone(), trace.clone()));
    }
    events.push(Envelope::new(
        &ProductUpdated(snapshot(p, version)),
        subject,
        trace,
    ));
    events
}

pub fn deleted(id: Uuid, trace: Option<String>) -> Envelope {
    Envelope::new(
        &ProductDeleted { product_id: id },
        Some(id.to_string()),
        trace,
    )
}
