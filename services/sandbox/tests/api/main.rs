//! The sandbox provider over HTTPS, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod helpers;
mod provider;
