//! The crate's integration tests, in one binary: the shared server over real
//! connections, and the idempotency layer on both database engines.

#![allow(clippy::unwrap_used)]

mod idempotency;
mod server;
