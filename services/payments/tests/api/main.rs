//! Payments against real databases and the real sandbox provider over
//! HTTPS: every API test runs on SQLite and on PostgreSQL.

mod access;
mod cards;
mod client;
mod faults;
mod helpers;
mod ledger;
mod moves;
mod webhooks;
