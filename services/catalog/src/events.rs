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

/// The stock event a change of what can be sold calls for, if any: `depleted`
/// on reaching zero, `low` on falling below the threshold, `replenished` on
/// climbing back to it (or out of zero).
pub fn stock_transition(
    product: Uuid,
    before: i64,
    after: i64,
    threshold: i64,
) -> Option<Envelope> {
    use emporium_contracts::stock::{StockDepleted, StockLow, StockReplenished};
    let subject = Some(product.to_string());
    if after <= 0 && before > 0 {
        Some(Envelope::new(
            &StockDepleted {
                product_id: product,
            },
            subject,
            None,
        ))
    } else if after > 0
        && after < threshold
        && (before >= threshold || before <= 0)
        && before > after
    {
        Some(Envelope::new(
            &StockLow {
                product_id: product,
                available: after,
                threshold,
            },
            subject,
            None,
        ))
    } else if after > before && (after >= threshold.max(1)) && before < threshold.max(1) {
        Some(Envelope::new(
            &StockReplenished {
                product_id: product,
                available: after,
            },
            subject,
            None,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use emporium_contracts::Event;
    use emporium_contracts::stock::{StockDepleted, StockLow, StockReplenished};

    use super::*;

    fn kind(before: i64, after: i64) -> Option<String> {
        stock_transition(Uuid::nil(), before, after, 5).map(|e| e.event_type)
    }

    #[test]
    fn crossing_thresholds_is_announced_once() {
        assert_eq!(kind(10, 4).as_deref(), Some(StockLow::TYPE));
        assert_eq!(kind(4, 3), None, "already low");
        assert_eq!(kind(3, 0).as_deref(), Some(StockDepleted::TYPE));
        assert_eq!(kind(0, 0), None);
        assert_eq!(kind(0, 2), None, "back, but still low");
        assert_eq!(kind(2, 5).as_deref(), Some(StockReplenished::TYPE));
        assert_eq!(kind(0, 9).as_deref(), Some(StockReplenished::TYPE));
        assert_eq!(kind(9, 12), None);
    }
}
