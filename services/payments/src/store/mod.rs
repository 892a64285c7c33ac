//! Payments' storage, on PostgreSQL or SQLite ([`Db`]). Today: the ledger.

mod ledger;

pub use ledger::{Ledger, RecordError};

/// The service's own migration files, per engine.
pub const POSTGRES: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/postgres": "0001_ledger.sql");
pub const SQLITE: &[emporium_db::embed::MigrationFile] =
    emporium_db::migration_files!("migrations/sqlite": "0001_ledger.sql");

/// The service's own migrations.
pub const MIGRATIONS: emporium_db::Migrations = emporium_db::Migrations {
    postgres: POSTGRES,
    sqlite: SQLITE,
};

emporium_db::migrations_are_listed!(POSTGRES => "migrations/postgres", SQLITE => "migrations/sqlite");
