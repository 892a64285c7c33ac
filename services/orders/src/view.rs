//! What the read model keeps of an order: the document `GET
//! /api/v1/orders/{id}` will answer with (docs/api.md), and the columns lists
//! filter on. It is always what folding the order's stream gives: written
//! with every append, and rebuilt from the streams by `emporium orders
//! rebuild-projections`.

use serde_json::json;
use uuid::Uuid;

use crate::domain::{Order, OrderEvent};
use crate::store::{Projection, Recorded};

/// Where the order's payment stands, as its customer sees it.
fn payment_status(order: &Order) -> &'static str {
    if order.refunded() > 0 {
        if order.refunded() >= order.payment_captured() {
            "refunded"
        } else {
            "partially_refunded"
        }
    } else if order.payment_captured() > 0 {
        "captured"
    } else if order.payment_held() {
        "authorized"
    } else if order.payment().is_some() {
        "voided"
    } else {
        "none"
    }
}

/// The read model of `order`, placed at `created_at` and last changed at
/// `updated_at` (Unix milliseconds).
pub fn projection(order: &Order, (created_at, updated_at): (i64, i64)) -> Projection {
    let totals = order.totals();
    let document = json!({
        "id": order.id(),
        "customer_id": order.customer_id(),
        "status": order.status().as_str(),
        "items": order.lines(),
        "total": totals.total,
        "totals": totals,
        "shipping_address": order.shipping_address(),
        "payment": order.payment().map(|p| json!({
            "brand": p.brand,
            "last4": p.last4,
            "status": payment_status(order),
        })),
        "rejection_reason": order.rejection_reason().map(|r| r.as_str()),
        "attention": order.attention(),
        "created_at": emporium_time(created_at),
        "updated_at": emporium_time(updated_at),
    });
    Projection {
        customer_id: order.customer_id(),
        status: order.status().as_str().to_owned(),
        total_amount: totals.total.amount,
        currency: totals.currency().to_owned(),
        document,
        created_at,
        in_progress: order.in_progress().map(|t| t.as_str().to_owned()),
    }
}

/// Folds a stored stream into its read model (what the rebuild runs).
pub fn project(id: Uuid, stream: &[Recorded]) -> anyhow::Result<Projection> {
    let events = stream
        .iter()
        .map(Recorded::decode::<OrderEvent>)
        .collect::<Result<Vec<_>, _>>()?;
    let order = Order::replay(id, &events)?;
    let created_at = stream.first().map_or(0, |e| e.at);
    let updated_at = stream.last().map_or(0, |e| e.at);
    Ok(projection(&order, (created_at, updated_at)))
}

/// RFC 3339 with milliseconds, UTC, as every API of the shop writes time.
fn emporium_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
