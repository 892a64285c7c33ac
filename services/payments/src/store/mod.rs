//! Payments' storage, on PostgreSQL or SQLite ([`Db`](emporium_db::Db)):
//! the ledger, and the intents with their provider calls and history.

mod intents;
mod ledger;

pub use intents::{
    Intent, NewIntent, Noticed, OpKind, OpState, Opened, Operation, Outcome, Started, StepRequest,
    Store, StoredToken, Sums, events_of, refusals,
};
pub use ledger::{Ledger, RecordError};

/// The service's own migrations.
pub const MIGRATIONS: emporium_db::Migrations =
    emporium_db::migrations!("0001_ledger.sql", "0002_payments.sql");

emporium_db::migrations_are_listed!(MIGRATIONS);
