//! Payments' storage, on PostgreSQL or SQLite ([`Db`]). Today: the ledger.

mod ledger;

pub use ledger::{Ledger, RecordError};

/// The service's own migrations.
pub const MIGRATIONS: emporium_db::Migrations = emporium_db::migrations!("0001_ledger.sql");

emporium_db::migrations_are_listed!(MIGRATIONS);
