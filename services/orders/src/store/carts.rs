//! Carts: one row per customer and product, and orders' copy of each
//! customer's name and email (fed by accounts' events).

use emporium_db::{Db, StoreError};
use uuid::Uuid;

/// The most lines one cart holds.
pub const MAX_LINES: i64 = 100;

/// What a cart change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartChange {
    Set,
    Removed,
    /// The cart holds [`MAX_LINES`] other products already.
    Full,
}

/// Carts and customers, on PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub struct Carts {
    db: Db,
}

impl Carts {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The cart's lines, `(product_id, quantity)`, oldest first.
    pub async fn lines(&self, customer: Uuid) -> Result<Vec<(Uuid, i64)>, StoreError> {
        const SQL: &str = "SELECT product_id, quantity FROM cart_items \
            WHERE customer_id = $1 ORDER BY added_at, product_id";
        Ok(self.db.sql().fetch_all(SQL, (customer,)).await?)
    }

    /// Sets a line to `quantity` (1–100), or removes it (0). A new line in a
    /// full cart is refused; the count and the insert are one transaction
    /// with the customer's lines locked, so a burst cannot overfill it.
    pub async fn set(
        &self,
        customer: Uuid,
        product: Uuid,
        quantity: i64,
        now: i64,
    ) -> Result<CartChange, StoreError> {
        let mut tx = self.db.begin_write().await?;
        if quantity == 0 {
            const SQL: &str = "DELETE FROM cart_items WHERE customer_id = $1 AND product_id = $2";
            tx.sql().execute(SQL, (customer, product)).await?;
            tx.commit().await?;
            return Ok(CartChange::Removed);
        }
        const UPDATE: &str =
            "UPDATE cart_items SET quantity = $3 WHERE customer_id = $1 AND product_id = $2";
        if tx
            .sql()
            .execute(UPDATE, (customer, product, quantity))
            .await?
            == 1
        {
            tx.commit().await?;
            return Ok(CartChange::Set);
        }
        // Locks the customer's lines, so two new lines at once are counted
        // one after the other on PostgreSQL (SQLite has one writer anyway);
        // below the limit there is nothing to fear.
        let lock = tx.locking("SELECT product_id FROM cart_items WHERE customer_id = $1");
        let _: Vec<(Uuid,)> = tx.sql().fetch_all(lock, (customer,)).await?;
        let count: i64 = tx
            .sql()
            .scalar(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM cart_items WHERE customer_id = $1",
                (customer,),
            )
            .await?;
        if count >= MAX_LINES {
            tx.rollback().await?;
            return Ok(CartChange::Full);
        }
        const INSERT: &str = "INSERT INTO cart_items (customer_id, product_id, quantity, added_at) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = $3";
        tx.sql()
            .execute(INSERT, (customer, product, quantity, now))
            .await?;
        tx.commit().await?;
        Ok(CartChange::Set)
    }

    /// Empties the cart.
    pub async fn clear(&self, customer: Uuid) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM cart_items WHERE customer_id = $1";
        self.db.sql().execute(SQL, (customer,)).await?;
        Ok(())
    }

    /// Applies an account event once (`event_id` in the inbox): `Some((name,
    /// email))` keeps that copy of the customer (an email of `None` keeps the
    /// one held), `None` erases it.
    pub async fn customer_changed(
        &self,
        event_id: Uuid,
        customer: Uuid,
        change: Option<(&str, Option<&str>)>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        const INBOX: &str = "INSERT INTO inbox (consumer, event_id, handled_at) \
            VALUES ($1, $2, $3) ON CONFLICT (consumer, event_id) DO NOTHING";
        if tx
            .sql()
            .execute(INBOX, ("orders.customers", event_id, now))
            .await?
            == 0
        {
            tx.rollback().await?;
            return Ok(());
        }
        match change {
            None => {
                tx.sql()
                    .execute("DELETE FROM customers WHERE id = $1", (customer,))
                    .await?;
                tx.sql()
                    .execute("DELETE FROM cart_items WHERE customer_id = $1", (customer,))
                    .await?;
            }
            Some((name, Some(email))) => {
                const SQL: &str = "INSERT INTO customers (id, name, email, updated_at) \
                    VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
                    SET name = $2, email = $3, updated_at = $4";
                tx.sql().execute(SQL, (customer, name, email, now)).await?;
            }
            Some((name, None)) => {
                const SQL: &str = "UPDATE customers SET name = $2, updated_at = $3 WHERE id = $1";
                tx.sql().execute(SQL, (customer, name, now)).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Orders' copy of a customer: `(name, email)`.
    pub async fn customer(&self, id: Uuid) -> Result<Option<(String, String)>, StoreError> {
        const SQL: &str = "SELECT name, email FROM customers WHERE id = $1";
        Ok(self.db.sql().fetch_optional(SQL, (id,)).await?)
    }
}
