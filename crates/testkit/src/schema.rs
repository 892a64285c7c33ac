//! Schema parity: the PostgreSQL and SQLite migrations of a service must
//! produce the same tables and columns, or the store's one SQL text breaks on
//! one engine only. What differs on purpose (a search index) is listed by the
//! test, so a new difference fails it.

use std::collections::BTreeSet;
use std::future::Future;

use emporium_db::testing::TestDatabase;
use sqlx::Connection;

/// `table.column` of every column in the public schema.
pub async fn postgres_columns(url: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(rows.into_iter().map(|(t, c)| format!("{t}.{c}")).collect())
}

/// `table.column` of every column of every ordinary table (SQLite's own and
/// FTS5's shadow tables are the engine's, not the schema's).
pub async fn sqlite_columns(url: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut conn = sqlx::SqliteConnection::connect(url).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND m.sql NOT LIKE 'CREATE VIRTUAL TABLE%' \
         AND NOT EXISTS (SELECT 1 FROM sqlite_master AS v WHERE v.type = 'table' \
             AND v.sql LIKE 'CREATE VIRTUAL TABLE%' AND m.name LIKE v.name || '\\_%' ESCAPE '\\')",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(rows.into_iter().map(|(t, c)| format!("{t}.{c}")).collect())
}

/// Migrates a fresh database on each engine with `migrate` (the service's
/// store opening it) and asserts both have the same columns, apart from
/// `only_postgres` and `only_sqlite`.
pub async fn assert_schema_parity<F, Fut>(migrate: F, only_postgres: &[&str], only_sqlite: &[&str])
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let pg = TestDatabase::postgres().await.unwrap();
    let lite = TestDatabase::sqlite();
    migrate(pg.url.clone()).await.unwrap();
    migrate(lite.url.clone()).await.unwrap();
    let pg_columns = postgres_columns(&pg.url).await.unwrap();
    let lite_columns = sqlite_columns(&lite.url).await.unwrap();
    assert!(
        pg_columns.len() > 5 && lite_columns.len() > 5,
        "no schema was read: {pg_columns:?} {lite_columns:?}"
    );
    let pg_only: BTreeSet<&str> = pg_columns
        .difference(&lite_columns)
        .map(String::as_str)
        .collect();
    let lite_only: BTreeSet<&str> = lite_columns
        .difference(&pg_columns)
        .map(String::as_str)
        .collect();
    assert_eq!(
        pg_only,
        only_postgres.iter().copied().collect(),
        "columns only the PostgreSQL migrations make"
    );
    assert_eq!(
        lite_only,
        only_sqlite.iter().copied().collect(),
        "columns only the SQLite migrations make"
    );
}
