//! Statements with their values, on either engine: `db.fetch_optional(sql,
//! (id,))`, `tx.execute(sql, (id, now))`. The values are a tuple bound as
//! `$1`, `$2`, … (both engines take `$n`); the rows decode the same way from
//! both ([`Row`]). This is how most of a store's statements are written; a
//! statement that needs more (a query builder) uses [`on_db!`](crate::on_db).

use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Postgres, SqlSafeStr, Sqlite};

use crate::{Db, Tx};

/// A value either engine binds: `Uuid`, `i64`, `i32`, `bool`, `&str`,
/// `String`, `Vec<u8>`, `Json<_>`, an `Option` of one, a reference to one.
pub trait Value<'q>:
    sqlx::Encode<'q, Postgres>
    + sqlx::Type<Postgres>
    + sqlx::Encode<'q, Sqlite>
    + sqlx::Type<Sqlite>
    + Send
{
}

impl<'q, T> Value<'q> for T where
    T: sqlx::Encode<'q, Postgres>
        + sqlx::Type<Postgres>
        + sqlx::Encode<'q, Sqlite>
        + sqlx::Type<Sqlite>
        + Send
{
}

/// A row decoded the same way from either engine: a [`record!`](crate::record)
/// struct or a tuple (`(i64,)` for one column).
pub trait Row:
    for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + Send
    + Unpin
{
}

impl<T> Row for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin
{
}

/// The values of a statement: a tuple of [`Value`]s, bound in order as
/// `$1`, `$2`, … (`()` for none).
pub trait Args<'q>: Send {
    fn postgres(self) -> Result<PgArguments, BoxDynError>;
    fn sqlite(self) -> Result<SqliteArguments, BoxDynError>;
}

macro_rules! tuple_args {
    ($($value:ident),*) => {
        impl<'q, $($value: Value<'q>),*> Args<'q> for ($($value,)*) {
            #[allow(non_snake_case, unused_mut)]
            fn postgres(self) -> Result<PgArguments, BoxDynError> {
                let ($($value,)*) = self;
                let mut args = PgArguments::default();
                $(args.add($value)?;)*
                Ok(args)
            }

            #[allow(non_snake_case, unused_mut)]
            fn sqlite(self) -> Result<SqliteArguments, BoxDynError> {
                let ($($value,)*) = self;
                let mut args = SqliteArguments::default();
                $(args.add($value)?;)*
                Ok(args)
            }
        }
    };
}

tuple_args!();
tuple_args!(A);
tuple_args!(A, B);
tuple_args!(A, B, C);
tuple_args!(A, B, C, D);
tuple_args!(A, B, C, D, E);
tuple_args!(A, B, C, D, E, F);
tuple_args!(A, B, C, D, E, F, G);
tuple_args!(A, B, C, D, E, F, G, H);
tuple_args!(A, B, C, D, E, F, G, H, I);
tuple_args!(A, B, C, D, E, F, G, H, I, J);
tuple_args!(A, B, C, D, E, F, G, H, I, J, K);
tuple_args!(A, B, C, D, E, F, G, H, I, J, K, L);

/// A list of values of one type, bound in order as `$1`, `$2`, … (for an
/// `IN ($1, $2, …)` of as many placeholders as the list holds: [`placeholders`]).
impl<'q, T: Value<'q>> Args<'q> for Vec<T> {
    fn postgres(self) -> Result<PgArguments, BoxDynError> {
        let mut args = PgArguments::default();
        for value in self {
            args.add(value)?;
        }
        Ok(args)
    }

    fn sqlite(self) -> Result<SqliteArguments, BoxDynError> {
        let mut args = SqliteArguments::default();
        for value in self {
            args.add(value)?;
        }
        Ok(args)
    }
}

/// `$from, $from+1, …`: `count` placeholders, comma-separated, for a list
/// bound as [`Args`] (`placeholders(1, 3)` is `$1, $2, $3`).
pub fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a statement runs: a pool ([`Db::sql`]) or a transaction's
/// connection ([`Tx::sql`]), on either engine.
pub enum Sql<'a> {
    PostgresPool(&'a sqlx::PgPool),
    Postgres(&'a mut sqlx::PgConnection),
    SqlitePool(&'a sqlx::SqlitePool),
    Sqlite(&'a mut sqlx::SqliteConnection),
}

impl Db {
    /// Runs statements on the pool.
    pub fn sql(&self) -> Sql<'_> {
        match self {
            Self::Postgres(pool) => Sql::PostgresPool(pool),
            Self::Sqlite(pool) => Sql::SqlitePool(pool),
        }
    }
}

impl Tx {
    /// Runs statements in the transaction.
    pub fn sql(&mut self) -> Sql<'_> {
        match self {
            Self::Postgres(tx) => Sql::Postgres(tx),
            Self::Sqlite(tx) => Sql::Sqlite(tx),
        }
    }
}

/// One body, run with `$run(executor, engine's arguments)` in each of the
/// four places a statement can run.
macro_rules! on_sql {
    ($sql:expr, $args:expr, |$e:ident, $a:ident| $body:expr) => {
        match $sql {
            Sql::PostgresPool($e) => {
                let $a = $args.postgres().map_err(sqlx::Error::Encode)?;
                $body
            }
            Sql::Postgres($e) => {
                let $a = $args.postgres().map_err(sqlx::Error::Encode)?;
                $body
            }
            Sql::SqlitePool($e) => {
                let $a = $args.sqlite().map_err(sqlx::Error::Encode)?;
                $body
            }
            Sql::Sqlite($e) => {
                let $a = $args.sqlite().map_err(sqlx::Error::Encode)?;
                $body
            }
        }
    };
}

impl Sql<'_> {
    /// Runs a statement; returns how many rows it changed.
    pub async fn execute<'q>(
        self,
        sql: impl SqlSafeStr,
        args: impl Args<'q>,
    ) -> Result<u64, sqlx::Error> {
        on_sql!(self, args, |e, a| sqlx::query_with(sql, a)
            .execute(e)
            .await
            .map(|done| done.rows_affected()))
    }

    /// The first row, which must exist.
    pub async fn fetch_one<'q, T: Row>(
        self,
        sql: impl SqlSafeStr,
        args: impl Args<'q>,
    ) -> Result<T, sqlx::Error> {
        let row = self.fetch_optional(sql, args).await?;
        row.ok_or(sqlx::Error::RowNotFound)
    }

    /// The first row, if any.
    pub async fn fetch_optional<'q, T: Row>(
        self,
        sql: impl SqlSafeStr,
        args: impl Args<'q>,
    ) -> Result<Option<T>, sqlx::Error> {
        on_sql!(self, args, |e, a| sqlx::query_as_with(sql, a)
            .fetch_optional(e)
            .await)
    }

    /// Every row.
    pub async fn fetch_all<'q, T: Row>(
        self,
        sql: impl SqlSafeStr,
        args: impl Args<'q>,
    ) -> Result<Vec<T>, sqlx::Error> {
        on_sql!(self, args, |e, a| sqlx::query_as_with(sql, a)
            .fetch_all(e)
            .await)
    }

    /// The first column of the first row, which must exist.
    pub async fn scalar<'q, T>(
        self,
        sql: impl SqlSafeStr,
        args: impl Args<'q>,
    ) -> Result<T, sqlx::Error>
    where
        (T,): Row,
    {
        self.fetch_one(sql, args).await.map(|(value,)| value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::testing::TestDatabase;

    #[tokio::test]
    async fn statements_bind_their_values_in_order() {
        let file = TestDatabase::sqlite();
        let db = crate::Db::connect(&file.url, 2).await.unwrap();
        let sql = db.sql();
        sql.execute("CREATE TABLE t (id INTEGER, name TEXT, note TEXT)", ())
            .await
            .unwrap();
        let mut tx = db.begin_write().await.unwrap();
        let note: Option<&str> = None;
        let added = tx
            .sql()
            .execute(
                "INSERT INTO t VALUES ($1, $2, $3), ($4, $5, $6)",
                (1_i64, "one", note, 2_i64, "two", Some("x")),
            )
            .await
            .unwrap();
        assert_eq!(added, 2);
        tx.commit().await.unwrap();
        let row: Option<(String, Option<String>)> = db
            .sql()
            .fetch_optional("SELECT name, note FROM t WHERE id = $1", (2_i64,))
            .await
            .unwrap();
        assert_eq!(row, Some(("two".into(), Some("x".into()))));
        let count: i64 = db
            .sql()
            .scalar("SELECT COUNT(*) FROM t WHERE note IS NULL", ())
            .await
            .unwrap();
        assert_eq!(count, 1);
        let all: Vec<(i64,)> = db
            .sql()
            .fetch_all("SELECT id FROM t ORDER BY id", ())
            .await
            .unwrap();
        assert_eq!(all, vec![(1,), (2,)]);
    }

    #[tokio::test]
    async fn a_list_binds_its_values_in_order() {
        assert_eq!(super::placeholders(1, 3), "$1, $2, $3");
        assert_eq!(super::placeholders(2, 1), "$2");
        let file = TestDatabase::sqlite();
        let db = crate::Db::connect(&file.url, 1).await.unwrap();
        let sql = "SELECT CAST($1 AS TEXT) || CAST($3 AS TEXT) || CAST($2 AS TEXT)";
        let joined: String = db.sql().scalar(sql, vec!["a", "b", "c"]).await.unwrap();
        assert_eq!(joined, "acb");
    }

    /// `$n` is the n-th value on both engines, in any order and repeated.
    #[tokio::test]
    async fn placeholders_name_values_by_position_on_both_engines() {
        let sqlite = TestDatabase::sqlite();
        let postgres = TestDatabase::postgres().await.unwrap();
        for url in [&sqlite.url, &postgres.url] {
            let db = crate::Db::connect(url, 1).await.unwrap();
            let sql = "SELECT CAST($2 AS TEXT) || CAST($1 AS TEXT) || CAST($2 AS TEXT)";
            let joined: String = db.sql().scalar(sql, ("a", "b")).await.unwrap();
            assert_eq!(joined, "bab", "{url}");
        }
    }
}
