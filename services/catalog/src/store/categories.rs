//! The category tree.

use super::*;

#[async_trait::async_trait]
pub trait CategoryStore: Send + Sync {
    async fn insert_category(&self, c: &CategoryRecord) -> Result<(), StoreError>;

    async fn category(&self, id: Uuid) -> Result<Option<CategoryRecord>, StoreError>;

    /// Every category, parents before children.
    async fn categories(&self) -> Result<Vec<CategoryRecord>, StoreError>;

    async fn update_category(&self, c: &CategoryRecord) -> Result<bool, StoreError>;

    async fn delete_category(&self, id: Uuid) -> Result<CategoryDelete, StoreError>;
}

/// Implements [`CategoryStore`] for a store over `$db`; instantiated in `sql.rs`
/// for each engine, where the helpers it calls live.
macro_rules! impl_categories_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl CategoryStore for $store {
            async fn insert_category(&self, c: &CategoryRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO categories (id, parent_id, name, slug, path, position, attributes, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(c.id)
                .bind(c.parent_id)
                .bind(&c.name)
                .bind(&c.slug)
                .bind(&c.path)
                .bind(c.position)
                .bind(&c.attributes)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)?;
                Ok(())
            }

            async fn category(&self, id: Uuid) -> Result<Option<CategoryRecord>, StoreError> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn categories(&self) -> Result<Vec<CategoryRecord>, StoreError> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CATEGORY_COLUMNS} FROM categories ORDER BY path, position, name"
                )))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn update_category(&self, c: &CategoryRecord) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE categories SET name = $2, slug = $3, position = $4, attributes = $5, \
                     updated_at = $6 WHERE id = $1",
                )
                .bind(c.id)
                .bind(&c.name)
                .bind(&c.slug)
                .bind(c.position)
                .bind(&c.attributes)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_category(&self, id: Uuid) -> Result<CategoryDelete, StoreError> {
                let mut tx = self.begin_write().await?;
                let exists: Option<String> = sqlx::query_scalar(<$db as Dialect>::locking(
                    "SELECT path FROM categories WHERE id = $1",
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_none() {
                    return Ok(CategoryDelete::NotFound);
                }
                // Soft-deleted products still name their category, so they count too.
                let products: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE category_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                if products > 0 {
                    return Ok(CategoryDelete::HasProducts);
                }
                let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM categories WHERE parent_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                if children > 0 {
                    return Ok(CategoryDelete::HasChildren);
                }
                sqlx::query("DELETE FROM categories WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(CategoryDelete::Done)
            }
        }
    };
}

pub(super) use impl_categories_store;
