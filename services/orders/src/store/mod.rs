//! Orders' storage, on PostgreSQL or SQLite: the event store and the read
//! model ([`EventStore`]).

mod events;

pub use events::{AppendError, EventStore, Projection, Recorded, StreamEvent};

/// The service's own migrations.
pub const MIGRATIONS: emporium_db::Migrations = emporium_db::migrations!("0001_orders.sql");

emporium_db::migrations_are_listed!(MIGRATIONS);
