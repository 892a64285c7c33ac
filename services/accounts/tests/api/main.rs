//! The accounts service through HTTP: every test spawns the service on port 0
//! over HTTPS with a fresh database, once on SQLite and once on PostgreSQL.

mod helpers;

mod auth;
mod bad_input;
mod client_tokens;
mod events;
mod security;
mod service_clients;
mod token_attacks;
mod users;
