//! Orders against real databases and the real catalog, payments and sandbox
//! provider over HTTPS: the API tests run on SQLite and on PostgreSQL; the
//! event store's own tests are in [`store`].

#![allow(clippy::unwrap_used)]

mod access;
mod cart;
mod checkout;
mod events;
mod helpers;
mod recovery;
mod store;
mod transitions;
