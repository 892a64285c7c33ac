//! What differs between the two engines for SQL written once: how a write
//! transaction begins, and how a read locks the rows a write will change.

/// An engine's side of the SQL the stores share.
pub trait Dialect: sqlx::Database {
    /// How a write transaction begins. SQLite's `BEGIN IMMEDIATE` takes the
    /// write lock up front, so concurrent writers queue on it instead of
    /// failing when a read lock would need upgrading.
    const BEGIN_WRITE: &'static str;
    /// Appended to a `SELECT` whose rows a write will change. PostgreSQL locks
    /// them (READ COMMITTED would let another transaction change them
    /// between the read and the write); SQLite's write transaction already
    /// holds the whole database.
    const ROW_LOCK: &'static str;

    /// `sql` with [`Dialect::ROW_LOCK`] appended.
    fn locking(sql: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(format!("{sql}{}", Self::ROW_LOCK))
    }
}

impl Dialect for sqlx::Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const ROW_LOCK: &'static str = " FOR UPDATE";
}

impl Dialect for sqlx::Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const ROW_LOCK: &'static str = "";
}

/// Runs one statement on whichever engine a [`Db`](crate::Db) holds: `on_db!(db,
/// |pool| sqlx::query(SQL).bind(x).execute(pool).await)`. The body is
/// type-checked once per engine; the SQL is written once (both engines take
/// `$n` placeholders). This is how a store is written against `Db`.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::Db::Postgres($pool) => $body,
            $crate::Db::Sqlite($pool) => $body,
        }
    };
}

/// Begins a write transaction the engine's way.
pub async fn begin_write<DB: Dialect>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    pool.begin_with(DB::BEGIN_WRITE).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_sqlite_write_transaction_holds_the_write_lock_from_its_start() {
        let db = crate::testing::TestDatabase::sqlite();
        let pool = crate::connect_sqlite(&db.url, 2).await.unwrap();
        let _first = begin_write(&pool).await.unwrap();
        // A second writer cannot begin while the first holds the lock.
        let mut other = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db.url.trim_start_matches("sqlite://"))
            .busy_timeout(std::time::Duration::from_millis(50));
        other = other.create_if_missing(false);
        let mut conn = sqlx::ConnectOptions::connect(&other).await.unwrap();
        let second = sqlx::Connection::begin_with(&mut conn, "BEGIN IMMEDIATE").await;
        assert!(second.is_err(), "the first writer holds the lock");
        assert_eq!(
            <sqlx::Postgres as Dialect>::locking("SELECT 1").0,
            "SELECT 1 FOR UPDATE"
        );
        assert_eq!(<sqlx::Sqlite as Dialect>::locking("SELECT 1").0, "SELECT 1");
    }
}
