//! A transaction on either engine ([`Tx`]): the store-side twin of [`Db`].
//!
//! A store method that needs several statements in one transaction begins a
//! [`Tx`] with [`Db::begin_write`], runs each statement with [`Tx::sql`],
//! passes `&mut Tx` to its helpers, and commits. The engine's row-lock suffix
//! comes from [`Tx::locking`].

use crate::{Db, Dialect};

/// A transaction on either engine; a write one is begun the engine's way
/// ([`Dialect::BEGIN_WRITE`]).
/// Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Db {
    /// Begins a write transaction: on SQLite it holds the write lock from its
    /// start, so concurrent writers queue instead of failing to upgrade.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Self::Postgres(pool) => Tx::Postgres(crate::begin_write(pool).await?),
            Self::Sqlite(pool) => Tx::Sqlite(crate::begin_write(pool).await?),
        })
    }

    /// Begins a transaction for reads only: its statements all see one
    /// snapshot (PostgreSQL: `REPEATABLE READ`; SQLite in WAL mode: the
    /// snapshot of its first read), and on SQLite no write lock is taken.
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
        Ok(match self {
            Self::Postgres(pool) => Tx::Postgres(pool.begin_with(SNAPSHOT).await?),
            Self::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
        })
    }
}

impl Tx {
    /// `sql` with the engine's row-lock suffix ([`Dialect::ROW_LOCK`]).
    pub fn locking(&self, sql: &str) -> sqlx::AssertSqlSafe<String> {
        match self {
            Self::Postgres(_) => <sqlx::Postgres as Dialect>::locking(sql),
            Self::Sqlite(_) => <sqlx::Sqlite as Dialect>::locking(sql),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.commit().await,
            Self::Sqlite(tx) => tx.commit().await,
        }
    }

    /// Undoes the transaction now (dropping it does too, a little later).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.rollback().await,
            Self::Sqlite(tx) => tx.rollback().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::testing::TestDatabase;

    #[tokio::test]
    async fn a_transaction_commits_or_rolls_back_as_a_whole() {
        let file = TestDatabase::sqlite();
        // One connection: the count after the drop runs where the insert did.
        let db = crate::Db::connect(&file.url, 1).await.unwrap();
        let table = "CREATE TABLE t (x INTEGER)";
        db.sql().execute(table, ()).await.unwrap();
        let count = || async {
            let n: i64 = db.sql().scalar("SELECT COUNT(*) FROM t", ()).await.unwrap();
            n
        };

        let mut tx = db.begin_write().await.unwrap();
        assert_eq!(tx.locking("SELECT x FROM t").0, "SELECT x FROM t");
        tx.sql()
            .execute("INSERT INTO t VALUES (1)", ())
            .await
            .unwrap();
        drop(tx);
        assert_eq!(count().await, 0, "dropped without commit: rolled back");

        let mut tx = db.begin_write().await.unwrap();
        tx.sql()
            .execute("INSERT INTO t VALUES (2)", ())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count().await, 1);
    }

    /// A read transaction on PostgreSQL keeps its snapshot while others commit.
    #[tokio::test]
    async fn a_read_transaction_sees_one_snapshot() {
        let database = TestDatabase::postgres().await.unwrap();
        let db = crate::Db::connect(&database.url, 2).await.unwrap();
        let sql = db.sql();
        sql.execute("CREATE TABLE t (x BIGINT)", ()).await.unwrap();
        let mut read = db.begin_read().await.unwrap();
        let count = "SELECT COUNT(*) FROM t";
        let before: i64 = read.sql().scalar(count, ()).await.unwrap();
        db.sql()
            .execute("INSERT INTO t VALUES (1)", ())
            .await
            .unwrap();
        let after: i64 = read.sql().scalar(count, ()).await.unwrap();
        assert_eq!((before, after), (0, 0), "the snapshot moved");
        let refused = read.sql().execute("INSERT INTO t VALUES (2)", ()).await;
        assert!(refused.is_err(), "a read transaction wrote");
        read.rollback().await.unwrap();
        let now: i64 = db.sql().scalar(count, ()).await.unwrap();
        assert_eq!(now, 1);
    }
}
