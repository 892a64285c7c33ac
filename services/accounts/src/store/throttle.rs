//! Password-attempt throttling: slots taken before a password is checked.

use super::sql::SqlStore;
use super::*;

#[async_trait::async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Takes one of `limit` slots of `subject` in a fixed window, atomically
    /// (one upsert), so concurrent attempts can never take more than `limit`.
    async fn take_slot(&self, subject: &str, window: Window, now: i64) -> Result<Slot, StoreError>;

    /// Gives a taken slot back (the attempt succeeded and does not count).
    async fn return_slot(&self, subject: &str, limit: i64) -> Result<(), StoreError>;

    /// Forgets a subject's slots.
    async fn clear_slots(&self, subject: &str) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl ThrottleStore for SqlStore {
    async fn take_slot(&self, subject: &str, window: Window, now: i64) -> Result<Slot, StoreError> {
        // One statement, so the row lock (PostgreSQL) or the write lock
        // (SQLite) orders concurrent attempts. A refused attempt leaves the
        // count at limit + 1, so "refused" is visible in the answer.
        const SQL: &str = "INSERT INTO throttle_slots (subject, window_start, taken) \
            VALUES ($1, $2, 1) ON CONFLICT (subject) DO UPDATE SET \
            taken = CASE WHEN throttle_slots.window_start <= $2 - $3 THEN 1 \
                         WHEN throttle_slots.taken < $4 THEN throttle_slots.taken + 1 \
                         ELSE $4 + 1 END, \
            window_start = CASE WHEN throttle_slots.window_start <= $2 - $3 THEN $2 \
                         ELSE throttle_slots.window_start END \
            RETURNING taken, window_start";
        let (limit, window_ms) = (window.limit, window.length_ms);
        let values = (subject, now, window_ms, limit);
        let (taken, window_start): (i64, i64) = self.db.sql().fetch_one(SQL, values).await?;
        Ok(if taken <= limit {
            Slot::Taken
        } else {
            Slot::Refused {
                retry_after_ms: (window_start + window_ms - now).max(0),
            }
        })
    }

    async fn return_slot(&self, subject: &str, limit: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE throttle_slots SET taken = CASE WHEN taken > $2 THEN $2 - 1 \
            WHEN taken > 0 THEN taken - 1 ELSE 0 END WHERE subject = $1";
        self.db.sql().execute(SQL, (subject, limit)).await?;
        Ok(())
    }

    async fn clear_slots(&self, subject: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM throttle_slots WHERE subject = $1";
        self.db.sql().execute(SQL, (subject,)).await?;
        Ok(())
    }
}
