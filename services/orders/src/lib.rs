//! The orders service's core: orders as an event-sourced aggregate, and the
//! event store they live in.
//!
//! ## Layout
//! - [`domain`]: the order aggregate (its events, the fold, the state machine
//!   and the saga's next step), totals in minor units, shipping addresses.
//! - [`store`]: one append-only stream per order with optimistic concurrency
//!   (a stale writer gets a conflict, never a lost event), and the read model
//!   for lists and lookups written in the same transaction as each append.
//! - [`view`]: the read model of an order (the document lookups answer with),
//!   from the fold, and the rebuild's projection of a stored stream.
//!
//! Not built yet: the cart, the checkout saga,
//! the HTTP API and the service itself. No service runs this crate yet.

pub mod domain;
pub mod store;
pub mod view;

impl store::StreamEvent for domain::OrderEvent {
    fn type_name(&self) -> &'static str {
        domain::OrderEvent::type_name(self)
    }
}
