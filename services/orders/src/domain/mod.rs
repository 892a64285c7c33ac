//! The rules of an order, free of I/O and of clocks: the shipping address
//! and its checks, what an order costs, and the order itself as an
//! event-sourced aggregate with the saga step it needs next.
//!
//! - [`address`]: [`ShippingAddress`] and the 422 it answers, field by field.
//! - [`countries`]: the officially assigned ISO 3166-1 alpha-2 codes.
//! - [`totals`]: [`Line`], [`Totals`] and [`Money`], checked against overflow.
//! - [`order`]: [`OrderEvent`], the [`Order`] fold and its state machine,
//!   and [`SagaStep`], what the orchestrator does next.

pub mod address;
pub mod countries;
pub mod order;
pub mod totals;

pub use address::ShippingAddress;
pub use countries::{COUNTRIES, is_country};
pub use order::{
    Actor, ActorKind, IllegalEvent, Order, OrderEvent, OrderPayment, OrderStatus, RejectionReason,
    SagaStep, Transition,
};
pub use totals::{Line, Money, Totals, TotalsError};
