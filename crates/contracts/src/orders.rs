//! Orders as other services see them: the events the orders service
//! publishes (through its outbox) when an order reaches a status.
//!
//! Every event carries the same summary of the order; `reason` is set on a
//! rejection (`out_of_stock`, `payment_declined`, …).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Event;

const SOURCE: &str = "/emporium/orders";

/// One product of an order and how many of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// An order as its events tell other services about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// The status it reached (`pending`, `confirmed`, …).
    pub status: String,
    pub items: Vec<OrderItem>,
    /// What the customer is charged (minor units of `currency`).
    pub total: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The customer placed the order; the checkout runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced(pub OrderSummary);

/// Stock and payment are held: the order will be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed(pub OrderSummary);

/// The checkout failed and gave back what it held (`reason` says why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected(pub OrderSummary);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled(pub OrderSummary);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped(pub OrderSummary);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDelivered(pub OrderSummary);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefunded(pub OrderSummary);

events! {
    SOURCE;
    OrderPlaced => "emporium.orders.order.placed.v1",
    OrderConfirmed => "emporium.orders.order.confirmed.v1",
    OrderRejected => "emporium.orders.order.rejected.v1",
    OrderCancelled => "emporium.orders.order.cancelled.v1",
    OrderShipped => "emporium.orders.order.shipped.v1",
    OrderDelivered => "emporium.orders.order.delivered.v1",
    OrderRefunded => "emporium.orders.order.refunded.v1",
}
