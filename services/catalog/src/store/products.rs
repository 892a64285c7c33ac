//! Products as documents, and their search.

use emporium_db::{Tx, on_db};
use emporium_messaging::Envelope;
use emporium_messaging::outbox::{self, Commit};
use sqlx::AssertSqlSafe;

use super::sql::SqlStore;
use super::*;

#[async_trait::async_trait]
pub trait ProductStore: Send + Sync {
    async fn insert_product(
        &self,
        p: &ProductWrite,
        c: Commit<'_>,
    ) -> Result<ProductRecord, StoreError>;

    async fn product(&self, id: Uuid) -> Result<Option<ProductRecord>, StoreError>;

    /// The live products among `ids`, in one query and in no particular order;
    /// unknown and deleted ids are left out.
    async fn live_products(&self, ids: &[Uuid]) -> Result<Vec<ProductRecord>, StoreError>;

    /// One page of live products matching the query.
    async fn search(&self, query: &ProductQuery) -> Result<Vec<ProductRecord>, StoreError>;

    /// The attributes of every match (at most 10,000), for facet counts.
    async fn search_attributes(&self, query: &ProductQuery) -> Result<Vec<Value>, StoreError>;

    /// Replaces a product's fields if its version is still `expected` (when given).
    async fn update_product(
        &self,
        p: &ProductWrite,
        expected: Option<i64>,
        c: Commit<'_>,
    ) -> Result<ProductUpdate, StoreError>;

    async fn delete_product(&self, id: Uuid, c: Commit<'_>) -> Result<bool, StoreError>;
}

pub(super) const PRODUCT_SELECT: &str = "SELECT p.id, p.sku, p.name, p.description, \
    p.price_amount, p.price_currency, p.category_id, p.attributes, p.images, p.low_stock_below, \
    p.version, p.created_at, p.updated_at, CAST(COALESCE((SELECT SUM(s.on_hand - s.reserved) \
    FROM stock s WHERE s.product_id = p.id), 0) AS BIGINT) AS available FROM products p";

/// A product's fields as `$1`–`$10` and the time as `$11`, in the order both
/// the insert and the update name them.
type ProductValues<'a> = (
    Uuid,
    &'a str,
    &'a str,
    &'a str,
    i64,
    &'a str,
    Uuid,
    Json<&'a Value>,
    Json<&'a Value>,
    i64,
    i64,
);

fn product_values(p: &ProductWrite, now: i64) -> ProductValues<'_> {
    let (attributes, images) = (Json(&p.attributes), Json(&p.images));
    let (id, category) = (p.id, p.category_id);
    let texts = (p.sku.as_str(), p.name.as_str(), p.description.as_str());
    let price = (p.price_amount, p.price_currency.as_str());
    (
        id,
        texts.0,
        texts.1,
        texts.2,
        price.0,
        price.1,
        category,
        attributes,
        images,
        p.low_stock_below,
        now,
    )
}

/// Writes a product change's events, commits, and returns the product as stored.
async fn finish_product_write(
    mut tx: Tx,
    id: Uuid,
    events: &[Envelope],
) -> Result<ProductRecord, StoreError> {
    let sql = AssertSqlSafe(format!("{PRODUCT_SELECT} WHERE p.id = $1"));
    let record = tx.sql().fetch_one(sql, (id,)).await?;
    outbox::commit_with(tx, events).await?;
    Ok(record)
}

#[async_trait::async_trait]
impl ProductStore for SqlStore {
    async fn insert_product(
        &self,
        p: &ProductWrite,
        c: Commit<'_>,
    ) -> Result<ProductRecord, StoreError> {
        let mut tx = self.db.begin_write().await?;
        const SQL: &str = "INSERT INTO products (id, sku, name, description, price_amount, \
            price_currency, category_id, attributes, images, low_stock_below, version, \
            created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11)";
        tx.sql().execute(SQL, product_values(p, c.now)).await?;
        finish_product_write(tx, p.id, c.events).await
    }

    async fn product(&self, id: Uuid) -> Result<Option<ProductRecord>, StoreError> {
        let sql = format!("{PRODUCT_SELECT} WHERE p.id = $1 AND p.deleted_at IS NULL");
        Ok(self
            .db
            .sql()
            .fetch_optional(AssertSqlSafe(sql), (id,))
            .await?)
    }

    async fn live_products(&self, ids: &[Uuid]) -> Result<Vec<ProductRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{PRODUCT_SELECT} WHERE p.deleted_at IS NULL AND p.id IN ({})",
            emporium_db::placeholders(1, ids.len())
        );
        Ok(self
            .db
            .sql()
            .fetch_all(AssertSqlSafe(sql), ids.to_vec())
            .await?)
    }

    async fn search(&self, query: &ProductQuery) -> Result<Vec<ProductRecord>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            search::build_for(pool, PRODUCT_SELECT, query, true)
                .build_query_as::<ProductRecord>()
                .fetch_all(pool)
                .await
        })?)
    }

    async fn search_attributes(&self, query: &ProductQuery) -> Result<Vec<Value>, StoreError> {
        const SELECT: &str = "SELECT p.attributes FROM products p";
        let rows: Vec<(Json<Value>,)> = on_db!(&self.db, |pool| {
            search::build_for(pool, SELECT, query, false)
                .build_query_as()
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(|(Json(v),)| v).collect())
    }

    async fn update_product(
        &self,
        p: &ProductWrite,
        expected: Option<i64>,
        c: Commit<'_>,
    ) -> Result<ProductUpdate, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let sql = tx.locking("SELECT version FROM products WHERE id = $1 AND deleted_at IS NULL");
        let Some((current,)) = tx.sql().fetch_optional(sql, (p.id,)).await? else {
            return Ok(ProductUpdate::NotFound);
        };
        if expected.is_some_and(|v| v != current) {
            return Ok(ProductUpdate::StaleVersion { current });
        }
        const SQL: &str = "UPDATE products SET sku = $2, name = $3, description = $4, \
            price_amount = $5, price_currency = $6, category_id = $7, attributes = $8, \
            images = $9, low_stock_below = $10, version = version + 1, updated_at = $11 \
            WHERE id = $1";
        tx.sql().execute(SQL, product_values(p, c.now)).await?;
        let record = finish_product_write(tx, p.id, c.events).await?;
        Ok(ProductUpdate::Done(Box::new(record)))
    }

    async fn delete_product(&self, id: Uuid, c: Commit<'_>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        const SQL: &str = "UPDATE products SET deleted_at = $2, updated_at = $2, \
            version = version + 1 WHERE id = $1 AND deleted_at IS NULL";
        let deleted = tx.sql().execute(SQL, (id, c.now)).await? == 1;
        outbox::commit_with(tx, if deleted { c.events } else { &[] }).await?;
        Ok(deleted)
    }
}
