//! Products as documents, and their search.

use super::*;

#[async_trait::async_trait]
pub trait ProductStore: Send + Sync {
    async fn insert_product(
        &self,
        p: &ProductWrite,
        now: i64,
        events: &[emporium_messaging::Envelope],
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
        events: &[emporium_messaging::Envelope],
    ) -> Result<ProductUpdate, StoreError>;

    async fn delete_product(
        &self,
        id: Uuid,
        now: i64,
        events: &[emporium_messaging::Envelope],
    ) -> Result<bool, StoreError>;
}

/// Implements [`ProductStore`] for a store over `$db`; instantiated in `sql.rs`
/// for each engine, where the helpers it calls live.
macro_rules! impl_products_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl ProductStore for $store {
            async fn insert_product(
                &self,
                p: &ProductWrite,
                now: i64,
                events: &[Envelope],
            ) -> Result<ProductRecord, StoreError> {
                let mut tx = self.begin_write().await?;
                let query = sqlx::query(
                    "INSERT INTO products (id, sku, name, description, price_amount, price_currency, \
                     category_id, attributes, images, low_stock_below, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11)",
                );
                Self::bind_product(query, p, now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let record = Self::finish_product_write(tx, p.id, events).await?;
                Ok(record)
            }

            async fn product(&self, id: Uuid) -> Result<Option<ProductRecord>, StoreError> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{PRODUCT_SELECT} WHERE p.id = $1 AND p.deleted_at IS NULL"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn search(&self, query: &ProductQuery) -> Result<Vec<ProductRecord>, StoreError> {
                let mut qb = search::build::<$db>(PRODUCT_SELECT, query, true);
                Ok(qb.build_query_as::<ProductRecord>().fetch_all(&self.pool).await?)
            }

            async fn search_attributes(&self, query: &ProductQuery) -> Result<Vec<serde_json::Value>, StoreError> {
                let mut qb = search::build::<$db>("SELECT p.attributes FROM products p", query, false);
                let rows: Vec<(Json<serde_json::Value>,)> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|(Json(v),)| v).collect())
            }

            async fn update_product(
                &self,
                p: &ProductWrite,
                expected: Option<i64>,
                now: i64,
                events: &[Envelope],
            ) -> Result<ProductUpdate, StoreError> {
                let mut tx = self.begin_write().await?;
                let current: Option<i64> = sqlx::query_scalar(<$db as Dialect>::locking(
                    "SELECT version FROM products WHERE id = $1 AND deleted_at IS NULL",
                ))
                .bind(p.id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(current) = current else {
                    return Ok(ProductUpdate::NotFound);
                };
                if expected.is_some_and(|v| v != current) {
                    return Ok(ProductUpdate::StaleVersion { current });
                }
                let query = sqlx::query(
                    "UPDATE products SET sku = $2, name = $3, description = $4, price_amount = $5, \
                     price_currency = $6, category_id = $7, attributes = $8, images = $9, \
                     low_stock_below = $10, version = version + 1, updated_at = $11 WHERE id = $1",
                );
                Self::bind_product(query, p, now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let record = Self::finish_product_write(tx, p.id, events).await?;
                Ok(ProductUpdate::Done(Box::new(record)))
            }

            async fn delete_product(&self, id: Uuid, now: i64, events: &[Envelope]) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE products SET deleted_at = $2, updated_at = $2, version = version + 1 \
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if done {
                    outbox::enqueue_all(&mut tx, events).await?;
                }
                tx.commit().await?;
                Ok(done)
            }
        }
    };
}

pub(super) use impl_products_store;
