//! The store on either engine: [`SqlStore`] holds one [`Db`]; each statement
//! is written once and run on its pool or in a transaction ([`Db::sql`],
//! [`emporium_db::Tx::sql`]). The engines differ in
//! how a write transaction begins and in the row-lock suffix (`FOR UPDATE`
//! on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises writers),
//! both behind [`Tx`]; search differs more (see `search.rs`).

use std::sync::Arc;

use emporium_db::{Db, Migrations, SharedClock};
use emporium_messaging::outbox::Outbox;

use super::*;

/// The catalog's store on either engine, reading the time from its clock.
pub struct SqlStore {
    pub(super) db: Db,
    pub(super) clock: SharedClock,
}

/// The service's own migrations (the outbox's come from emporium-messaging).
const MIGRATIONS: Migrations = emporium_db::migrations!(
    "0001_catalog.sql",
    "0002_search.sql",
    "0003_reservation_owner.sql"
);

/// Opens the store named by `url`, applying migrations (its own, then the outbox's),
/// on the system clock.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn CatalogStore>> {
    connect_at(url, max_connections, emporium_db::system_clock()).await
}

/// As [`connect`], reading the time from `clock` (tests move it).
pub async fn connect_at(
    url: &str,
    max_connections: u32,
    clock: SharedClock,
) -> anyhow::Result<Arc<dyn CatalogStore>> {
    let db = emporium_db::open_service_db(
        url,
        max_connections,
        &[MIGRATIONS, emporium_messaging::migrations::OUTBOX],
    )
    .await?;
    Ok(Arc::new(SqlStore { db, clock }))
}

#[async_trait::async_trait]
impl CatalogStore for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.sql().execute("SELECT 1", ()).await?;
        Ok(())
    }

    fn outbox(&self) -> Outbox {
        Outbox(self.db.clone())
    }
}

emporium_db::migrations_are_listed!(MIGRATIONS);
