//! The catalog through HTTP: the service is spawned on port 0 over HTTPS,
//! once on SQLite and once on PostgreSQL, with a fresh database per test.
//! Tokens are signed by a test key the service trusts through its key source.

mod fixtures;
mod helpers;

mod catalog;
mod client;
mod events;
mod ops;
mod reservations;
mod revocations;
mod stock;
