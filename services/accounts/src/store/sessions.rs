//! Login sessions: refresh-token families, rotated on every use.

use emporium_messaging::Envelope;
use emporium_messaging::outbox::{self, Commit};
use uuid::Uuid;

use emporium_db::Tx;

use super::sql::SqlStore;
use super::*;

#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// Whether the session (refresh family) has ended or is not the user's.
    async fn session_ended(&self, family_id: Uuid, user_id: Uuid) -> Result<bool, StoreError>;

    /// Starts a login session: a new family holding its first refresh token.
    async fn start_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        token: &IssuedToken<'_>,
    ) -> Result<(), StoreError>;

    /// Uses a refresh token once, in one transaction, issuing `new_hash` in its
    /// place. A reused token revokes its family, and the event `on_reuse`
    /// makes of (user, family) is written in that transaction.
    async fn rotate_refresh(
        &self,
        presented_hash: &str,
        next: &IssuedToken<'_>,
        on_reuse: &(dyn Fn(Uuid, Uuid) -> Envelope + Send + Sync),
    ) -> Result<RefreshOutcome, StoreError>;

    /// Revokes a family if it belongs to the user; `events` are written if it did.
    async fn revoke_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        c: Commit<'_>,
    ) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl SessionStore for SqlStore {
    async fn session_ended(&self, family_id: Uuid, user_id: Uuid) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT revoked_at FROM refresh_families WHERE id = $1 AND user_id = $2";
        let revoked: Option<(Option<i64>,)> = self
            .db
            .sql()
            .fetch_optional(SQL, (family_id, user_id))
            .await?;
        Ok(!matches!(revoked, Some((None,))))
    }

    async fn start_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        token: &IssuedToken<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        const SQL: &str =
            "INSERT INTO refresh_families (id, user_id, created_at) VALUES ($1, $2, $3)";
        tx.sql()
            .execute(SQL, (family_id, user_id, token.issued_at))
            .await?;
        issue(&mut tx, family_id, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        presented_hash: &str,
        next: &IssuedToken<'_>,
        on_reuse: &(dyn Fn(Uuid, Uuid) -> Envelope + Send + Sync),
    ) -> Result<RefreshOutcome, StoreError> {
        let now = next.issued_at;
        let mut tx = self.db.begin_write().await?;
        // The token's, family's and user's rows are locked: a logout, password
        // change or disable committing meanwhile waits for this rotation, or
        // this one sees it; none slips between.
        let sql = tx.locking(
            "SELECT t.family_id, f.user_id, t.used_at, t.expires_at, f.revoked_at, \
             u.disabled, u.closed FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id \
             JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1",
        );
        let row: Option<PresentedToken> = tx.sql().fetch_optional(sql, (presented_hash,)).await?;
        let Some((family_id, user_id, used_at, expires_at, revoked_at, disabled, closed)) = row
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        if revoked_at.is_some() || expires_at <= now || disabled || closed {
            return Ok(RefreshOutcome::Invalid);
        }
        // Conditional on `used_at IS NULL`, so of two racing uses exactly one
        // wins; the loser, like any later reuse, revokes the family.
        const USE: &str =
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL";
        let won = used_at.is_none() && tx.sql().execute(USE, (presented_hash, now)).await? == 1;
        if !won {
            const REVOKE: &str = "UPDATE refresh_families SET revoked_at = $2 WHERE id = $1";
            tx.sql().execute(REVOKE, (family_id, now)).await?;
            // Access tokens of the session may be in a thief's hands: every
            // service must refuse them now, not at expiry.
            outbox::commit_with(tx, &[on_reuse(user_id, family_id)]).await?;
            return Ok(RefreshOutcome::Reused { family_id });
        }
        issue(&mut tx, family_id, next).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated { user_id, family_id })
    }

    async fn revoke_family(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        c: Commit<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        const SQL: &str = "UPDATE refresh_families SET revoked_at = $3 \
            WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL";
        let revoked = tx.sql().execute(SQL, (family_id, user_id, c.now)).await? == 1;
        outbox::commit_with(tx, if revoked { c.events } else { &[] }).await?;
        Ok(())
    }
}

/// A presented refresh token's row: family, user, used, expiry, family
/// revoked, user disabled, user closed.
type PresentedToken = (Uuid, Uuid, Option<i64>, i64, Option<i64>, bool, bool);

/// Stores a new refresh token of a family.
async fn issue(tx: &mut Tx, family_id: Uuid, token: &IssuedToken<'_>) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO refresh_tokens (token_hash, family_id, created_at, \
        expires_at) VALUES ($1, $2, $3, $4)";
    let values = (token.hash, family_id, token.issued_at, token.expires_at);
    tx.sql().execute(SQL, values).await?;
    Ok(())
}
