//! The sandbox provider over HTTPS, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod cancel;
mod client;
mod helpers;
mod provider;
mod webhooks;
