//! Products as documents, and their search.

use emporium_db::{Tx, on_db, on_tx};
use emporium_messaging::Envelope;
use emporium_messaging::outbox;

use super::sql::SqlStore;
use super::*;

#[async_trait::async_trait]
pub trait ProductStore: Send + Sync {
    async fn insert_product(
        &self,
        p: &ProductWrite,
        now: i64,
        events: &[Envelope],
    ) -> Result<ProductRecord, StoreError>;

    async fn product(&self, id: Uuid) -> Result<Option<ProductRecord>, StoreError>;

    /// One page of live products matching the query.
    async fn search(&self, query: &ProductQuery) -> Result<Vec<ProductRecord>, StoreError>;

    /// The attributes of every match (at most 10,000), for facet counts.
    async fn search_attributes(&self, query: &ProductQuery) -> Result<Vec<Value>, StoreError>;

    /// Replaces a product's fields if its version is still `expected` (when given).
    async fn update_product(
        &self,
        p: &ProductWrite,
        expected: Option<i64>,
        now: i64,
        events: &[Envelope],
    ) -> Result<ProductUpdate, StoreError>;

    async fn delete_product(
        &self,
        id: Uuid,
        now: i64,
        events: &[Envelope],
    ) -> Result<bool, StoreError>;
}

pub(super) const PRODUCT_SELECT: &str = "SELECT p.id, p.sku, p.name, p.description, \
    p.price_amount, p.price_currency, p.category_id, p.attributes, p.images, p.low_stock_below, \
    p.version, p.created_at, p.updated_at, CAST(COALESCE((SELECT SUM(s.on_hand - s.reserved) \
    FROM stock s WHERE s.product_id = p.id), 0) AS BIGINT) AS available FROM products p";

/// Binds a product's fields as `$1`–`$10` and `now` as `$11`, in the order
/// both the insert and the update name them.
fn bind_product<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments>,
    p: &'q ProductWrite,
    now: i64,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Json<&'q Value>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(p.id)
        .bind(&p.sku)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.price_amount)
        .bind(&p.price_currency)
        .bind(p.category_id)
        .bind(Json(&p.attributes))
        .bind(Json(&p.images))
        .bind(p.low_stock_below)
        .bind(now)
}

/// Writes a product change's events, commits, and returns the product as stored.
async fn finish_product_write(
    mut tx: Tx,
    id: Uuid,
    events: &[Envelope],
) -> Result<ProductRecord, StoreError> {
    outbox::enqueue_in(&mut tx, events).await?;
    let sql = format!("{PRODUCT_SELECT} WHERE p.id = $1");
    let record = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(conn)
            .await
    })?;
    tx.commit().await?;
    Ok(record)
}

#[async_trait::async_trait]
impl ProductStore for SqlStore {
    async fn insert_product(
        &self,
        p: &ProductWrite,
        now: i64,
        events: &[Envelope],
    ) -> Result<ProductRecord, StoreError> {
        let mut tx = self.db.begin_write().await?;
        const SQL: &str = "INSERT INTO products (id, sku, name, description, price_amount, \
            price_currency, category_id, attributes, images, low_stock_below, version, \
            created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11)";
        on_tx!(&mut tx, |conn| {
            bind_product(sqlx::query(SQL), p, now)
                .execute(conn)
                .await
                .map(drop)
        })?;
        finish_product_write(tx, p.id, events).await
    }

    async fn product(&self, id: Uuid) -> Result<Option<ProductRecord>, StoreError> {
        let sql = format!("{PRODUCT_SELECT} WHERE p.id = $1 AND p.deleted_at IS NULL");
        Ok(self.db.row_by(&sql, id).await?)
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
        now: i64,
        events: &[Envelope],
    ) -> Result<ProductUpdate, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let sql = tx.locking("SELECT version FROM products WHERE id = $1 AND deleted_at IS NULL");
        let current: Option<i64> = on_tx!(&mut tx, |conn| {
            sqlx::query_scalar(sql)
                .bind(p.id)
                .fetch_optional(conn)
                .await
        })?;
        let Some(current) = current else {
            return Ok(ProductUpdate::NotFound);
        };
        if expected.is_some_and(|v| v != current) {
            return Ok(ProductUpdate::StaleVersion { current });
        }
        const SQL: &str = "UPDATE products SET sku = $2, name = $3, description = $4, \
            price_amount = $5, price_currency = $6, category_id = $7, attributes = $8, \
            images = $9, low_stock_below = $10, version = version + 1, updated_at = $11 \
            WHERE id = $1";
        on_tx!(&mut tx, |conn| {
            bind_product(sqlx::query(SQL), p, now)
                .execute(conn)
                .await
                .map(drop)
        })?;
        let record = finish_product_write(tx, p.id, events).await?;
        Ok(ProductUpdate::Done(Box::new(record)))
    }

    async fn delete_product(
        &self,
        id: Uuid,
        now: i64,
        events: &[Envelope],
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let deleted = on_tx!(&mut tx, |conn| {
            sqlx::query(
                "UPDATE products SET deleted_at = $2, updated_at = $2, version = version + 1 \
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(now)
            .execute(conn)
            .await
            .map(|done| done.rows_affected() == 1)
        })?;
        outbox::commit_with(tx, if deleted { events } else { &[] }).await?;
        Ok(deleted)
    }
}
