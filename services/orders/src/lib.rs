//! The orders service's core: orders as an event-sourced aggregate, and the
//! event store they live in.
//!
//! ## Layout
//! - [`store`]: one append-only stream per order with optimistic concurrency
//!   (a stale writer gets a conflict, never a lost event), and the read model
//!   for lists and lookups written in the same transaction as each append.
//!
//! Not built yet: the order aggregate's rules, the cart, the checkout saga,
//! the HTTP API and the service itself. No service runs this crate yet.

pub mod store;
