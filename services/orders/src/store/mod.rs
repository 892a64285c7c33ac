//! Orders' storage, on PostgreSQL or SQLite: the event store and the read
//! model ([`EventStore`]).

mod carts;
mod events;

pub use carts::{CartChange, Carts, MAX_LINES};

pub use events::{AppendError, EventStore, Lease, ListFilter, Projection, Recorded, StreamEvent};

/// The service's own migrations.
pub const MIGRATIONS: emporium_db::Migrations =
    emporium_db::migrations!("0001_orders.sql", "0002_service.sql");

emporium_db::migrations_are_listed!(MIGRATIONS);
