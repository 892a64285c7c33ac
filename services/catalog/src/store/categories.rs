//! The category tree.

use sqlx::AssertSqlSafe;

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
        const SQL: &str = "INSERT INTO categories (id, parent_id, name, slug, path, position, \
            attributes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let (id, parent, at) = (c.id, c.parent_id, (c.created_at, c.updated_at));
        let values = (
            id,
            parent,
            &c.name,
            &c.slug,
            &c.path,
            c.position,
            &c.attributes,
            at.0,
            at.1,
        );
        self.db.sql().execute(SQL, values).await?;
        Ok(())
    }

    async fn category(&self, id: Uuid) -> Result<Option<CategoryRecord>, StoreError> {
        let sql = format!("SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1");
        Ok(self
            .db
            .sql()
            .fetch_optional(AssertSqlSafe(sql), (id,))
            .await?)
    }

    async fn categories(&self) -> Result<Vec<CategoryRecord>, StoreError> {
        let sql =
            format!("SELECT {CATEGORY_COLUMNS} FROM categories ORDER BY path, position, name");
        Ok(self.db.sql().fetch_all(AssertSqlSafe(sql), ()).await?)
    }

    async fn update_category(&self, c: &CategoryRecord) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE categories SET name = $2, slug = $3, position = $4, \
            attributes = $5, updated_at = $6 WHERE id = $1";
        let values = (
            c.id,
            &c.name,
            &c.slug,
            c.position,
            &c.attributes,
            c.updated_at,
        );
        Ok(self.db.sql().execute(SQL, values).await? == 1)
    }

    async fn delete_category(&self, id: Uuid) -> Result<CategoryDelete, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let sql = tx.locking("SELECT path FROM categories WHERE id = $1");
        let exists: Option<(String,)> = tx.sql().fetch_optional(sql, (id,)).await?;
        if exists.is_none() {
            return Ok(CategoryDelete::NotFound);
        }
        // Soft-deleted products still name their category, so they count too.
        const COUNTS: &str = "SELECT (SELECT COUNT(*) FROM products WHERE category_id = $1), \
            (SELECT COUNT(*) FROM categories WHERE parent_id = $1)";
        let (products, children): (i64, i64) = tx.sql().fetch_one(COUNTS, (id,)).await?;
        if products > 0 {
            return Ok(CategoryDelete::HasProducts);
        }
        if children > 0 {
            return Ok(CategoryDelete::HasChildren);
        }
        let sql = "DELETE FROM categories WHERE id = $1";
        tx.sql().execute(sql, (id,)).await?;
        tx.commit().await?;
        Ok(CategoryDelete::Done)
    }
}
