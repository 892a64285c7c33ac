//! The SQL behind [`AccountsStore`], written once and instantiated for both engines.

use std::sync::Arc;

use emporium_db::{Db, Tx};
use emporium_messaging::outbox::Outbox;
use uuid::Uuid;

use super::{AccountsStore, StoreError};

/// The service's own migrations (the outbox and inbox tables come from
/// emporium-messaging).
const MIGRATIONS: emporium_db::Migrations = emporium_db::migrations!(
    "0001_accounts.sql",
    "0002_throttle.sql",
    "0003_token_generation.sql",
    "0004_email_skeleton.sql"
);

/// The accounts store on either engine: each statement is written once and
/// run on whichever pool or transaction the [`Db`] holds ([`Db::sql`]).
pub struct SqlStore {
    pub(super) db: Db,
}

/// Opens the store named by `url`, applying migrations first.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn AccountsStore>> {
    Ok(Arc::new(SqlStore {
        db: emporium_db::open_service_db(
            url,
            max_connections,
            &[MIGRATIONS, emporium_messaging::migrations::OUTBOX],
        )
        .await?,
    }))
}

/// Applies migrations and nothing else (`emporium migrate accounts`).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    connect(url, 1).await.map(|_| ())
}

pub(super) const USER_COLUMNS: &str = "id, email, name, password_hash, roles, disabled, closed, created_at, \
     updated_at, token_generation";

/// An enabled, open admin (roles are comma-separated names).
pub(super) const ENABLED_ADMIN: &str =
    "closed = FALSE AND disabled = FALSE AND roles LIKE '%admin%'";

#[async_trait::async_trait]
impl AccountsStore for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.sql().execute("SELECT 1", ()).await?;
        Ok(())
    }

    fn outbox(&self) -> Outbox {
        Outbox(self.db.clone())
    }
}

/// Ends every login session of the user.
pub(super) async fn revoke_all_families(
    tx: &mut Tx,
    user_id: Uuid,
    now: i64,
) -> Result<(), sqlx::Error> {
    const SQL: &str =
        "UPDATE refresh_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
    tx.sql().execute(SQL, (user_id, now)).await?;
    Ok(())
}

/// Every enabled admin's id, their rows locked in id order, so changes that
/// could leave the shop without an admin take turns.
pub(super) async fn lock_enabled_admins(tx: &mut Tx) -> Result<Vec<Uuid>, sqlx::Error> {
    let sql = tx.locking(&format!(
        "SELECT id FROM users WHERE {ENABLED_ADMIN} ORDER BY id"
    ));
    let ids: Vec<(Uuid,)> = tx.sql().fetch_all(sql, ()).await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Refuses the transaction's change if no enabled admin is left.
pub(super) async fn ensure_an_admin_remains(tx: &mut Tx) -> Result<(), StoreError> {
    let sql = format!("SELECT COUNT(*) FROM users WHERE {ENABLED_ADMIN}");
    let left: i64 = tx.sql().scalar(sqlx::AssertSqlSafe(sql), ()).await?;
    if left == 0 {
        return Err(StoreError::Refused(super::refused::LAST_ADMIN));
    }
    Ok(())
}

emporium_db::migrations_are_listed!(MIGRATIONS);
