//! The payments service's core: what a card must be to be accepted, the
//! states of a payment intent, and the ledger every money movement is
//! recorded in (double-entry, hash-chained, append-only).
//!
//! ## Layout
//! - [`domain`]: [`domain::Card`] (Luhn, brand, expiry, CVC; the number is
//!   never printed), [`domain::IntentStatus`] and its legal steps.
//! - [`ledger`]: transfers as pairs of entries that sum to zero, the hash
//!   chain over them, and [`ledger::verify`].
//! - [`export`]: the ledger as Elasticsearch `_bulk` NDJSON (ECS field names).
//! - [`store`]: the ledger's table on PostgreSQL or SQLite ([`store::Ledger`]),
//!   its migrations (on PostgreSQL a trigger refuses UPDATE, DELETE and
//!   TRUNCATE; on SQLite triggers refuse UPDATE and DELETE).
//!
//! Not built yet (see the payments issue): the HTTP API, webhooks, intents'
//! storage and events. No service runs this crate yet; `emporium payments
//! ledger verify|export` reads its ledger.

pub mod domain;
pub mod export;
pub mod ledger;
pub mod store;
