//! The category tree.

use emporium_db::{on_db, on_tx};

use super::sql::SqlStore;
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

const CATEGORY_COLUMNS: &str =
    "id, parent_id, name, slug, path, position, attributes, created_at, updated_at";

#[async_trait::async_trait]
impl CategoryStore for SqlStore {
    async fn insert_category(&self, c: &CategoryRecord) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
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
            .execute(pool)
            .await
            .map(drop)
        })?;
        Ok(())
    }

    async fn category(&self, id: Uuid) -> Result<Option<CategoryRecord>, StoreError> {
        let sql = format!("SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1");
        Ok(self.db.row_by(&sql, id).await?)
    }

    async fn categories(&self) -> Result<Vec<CategoryRecord>, StoreError> {
        let sql =
            format!("SELECT {CATEGORY_COLUMNS} FROM categories ORDER BY path, position, name");
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
        })?)
    }

    async fn update_category(&self, c: &CategoryRecord) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE categories SET name = $2, slug = $3, position = $4, attributes = $5, \
                 updated_at = $6 WHERE id = $1",
            )
            .bind(c.id)
            .bind(&c.name)
            .bind(&c.slug)
            .bind(c.position)
            .bind(&c.attributes)
            .bind(c.updated_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(done == 1)
    }

    async fn delete_category(&self, id: Uuid) -> Result<CategoryDelete, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let sql = tx.locking("SELECT path FROM categories WHERE id = $1");
        let exists: Option<String> = on_tx!(&mut tx, |conn| {
            sqlx::query_scalar(sql).bind(id).fetch_optional(conn).await
        })?;
        if exists.is_none() {
            return Ok(CategoryDelete::NotFound);
        }
        // Soft-deleted products still name their category, so they count too.
        let (products, children): (i64, i64) = on_tx!(&mut tx, |conn| {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM products WHERE category_id = $1), \
                 (SELECT COUNT(*) FROM categories WHERE parent_id = $1)",
            )
            .bind(id)
            .fetch_one(conn)
            .await
        })?;
        if products > 0 {
            return Ok(CategoryDelete::HasProducts);
        }
        if children > 0 {
            return Ok(CategoryDelete::HasChildren);
        }
        on_tx!(&mut tx, |conn| {
            sqlx::query("DELETE FROM categories WHERE id = $1")
                .bind(id)
                .execute(conn)
                .await
                .map(drop)
        })?;
        tx.commit().await?;
        Ok(CategoryDelete::Done)
    }
}
