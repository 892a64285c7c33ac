//! Events between services: nothing lost, nothing applied twice.
//!
//! A producer writes its event into its own database in the same transaction
//! as the state change (the outbox); a relay publishes outbox rows to the bus
//! and marks them only once the bus has confirmed them. A consumer records each
//! handled event id in its own database in the same transaction as the effect
//! (the inbox), so a redelivered event is acknowledged without being applied
//! again. Failed handling is retried with exponential backoff, then parked in a
//! dead-letter queue with its last error, from which it can be replayed.
//!
//! ## Layout
//! - [`envelope`]: the CloudEvents 1.0 JSON envelope.
//! - [`outbox`]: [`outbox::enqueue_in`] inside a store's transaction (`Tx`), [`outbox::Outbox`] and the [`outbox::Relay`].
//! - [`inbox`]: [`inbox::first_delivery`] inside a transaction.
//! - [`bus`]: the [`bus::Bus`] trait (publish with confirms, subscribe, dead letters), retry policy.
//! - [`rabbit`]: the RabbitMQ bus (lapin): topic exchange, quorum queues, delay queues, DLQ.
//! - `settle`: what every bus does with a delivery: handle, then ack, retry or dead-letter.
//! - [`embedded`]: the bus of `emporium up`, on a SQLite file, with the same semantics.
//! - [`migrations`]: the outbox and inbox tables, applied beside each service's own.
//! - [`settings`]: the `[events]` settings section and opening the bus it names.
//! - [`revocations`]: feeds a verifier's deny list from accounts' revoking events.

pub mod bus;
pub mod embedded;
pub mod envelope;
pub mod inbox;
pub mod migrations;
pub mod outbox;
pub mod rabbit;
pub mod revocations;
pub mod settings;
mod settle;

pub use bus::{
    Bus, DeadLetter, EventHandler, HandlerError, OutgoingEvent, RetryPolicy, Subscription,
};
pub use envelope::Envelope;

/// Milliseconds since the Unix epoch, as every table here stores time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
