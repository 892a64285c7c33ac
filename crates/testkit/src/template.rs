//! A fresh database per test without migrating each one.
//!
//! On PostgreSQL each service's migrations run once into a template database
//! named after the service and a fingerprint of every migration file it
//! applies; each test then gets `CREATE DATABASE … TEMPLATE` of it, a file
//! copy that takes milliseconds. The template is built under another name and
//! renamed when complete, under an advisory lock, so concurrent test binaries
//! build it once and never clone half a template. A template whose migrations
//! changed has another fingerprint, so it is built anew. Old templates are
//! left alone (another checkout may be cloning them); `DROP DATABASE` the
//! `tpl_*` ones by hand to reclaim the space.
//! SQLite files are cheap to migrate; they are made fresh.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context;
use emporium_db::testing::{TestDatabase, admin_connection, postgres_admin_url};
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::OnceCell;

use crate::Backend;

/// The migration directories every service applies beside its own (the
/// outbox and inbox, the idempotency keys).
fn shared_migrations() -> [PathBuf; 2] {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        crates.join("messaging/migrations/postgres"),
        crates.join("http/migrations/postgres"),
    ]
}

/// Hex SHA-256 over the names and contents of the `.sql` files in `dirs`.
fn fingerprint(dirs: &[PathBuf]) -> anyhow::Result<String> {
    let mut files = Vec::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "sql") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for file in files {
        digest.update(file.file_name().unwrap_or_default().as_encoded_bytes());
        digest.update(&std::fs::read(&file)?);
    }
    Ok(digest
        .finish()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A database for one test of `service`, whose crate is at `manifest_dir`
/// (its `CARGO_MANIFEST_DIR`; its own PostgreSQL migrations are in
/// `migrations/postgres` there). `migrate`
/// applies every migration to the database at the URL it is given (opening
/// the service's store does). On SQLite a fresh file, migrated by the
/// service when it opens it.
pub async fn database<F, Fut>(
    backend: Backend,
    service: &str,
    manifest_dir: &str,
    migrate: F,
) -> TestDatabase
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    match backend {
        Backend::Sqlite => TestDatabase::sqlite(),
        Backend::Postgres => {
            let migrations = Path::new(manifest_dir).join("migrations/postgres");
            let template = template(service, &migrations, migrate).await.unwrap();
            TestDatabase::postgres_from_template(template)
                .await
                .unwrap()
        }
    }
}

/// The template's name, built on first use in this process (and by the
/// first process on this server).
async fn template<F, Fut>(
    service: &str,
    migrations: &Path,
    migrate: F,
) -> anyhow::Result<&'static str>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    static TEMPLATES: std::sync::Mutex<Vec<(String, &'static OnceCell<String>)>> =
        std::sync::Mutex::new(Vec::new());
    let cell: &'static OnceCell<String> = {
        let mut known = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
        match known.iter().find(|(s, _)| s == service) {
            Some((_, cell)) => cell,
            None => {
                let cell: &'static OnceCell<String> = Box::leak(Box::new(OnceCell::new()));
                known.push((service.to_owned(), cell));
                cell
            }
        }
    };
    let name = cell
        .get_or_try_init(|| async {
            let mut dirs = vec![migrations.to_path_buf()];
            dirs.extend(shared_migrations());
            let name = format!("tpl_{service}_{}", fingerprint(&dirs)?);
            build(&name, migrate).await?;
            anyhow::Ok(name)
        })
        .await?;
    Ok(name.as_str())
}

/// Builds `name` unless it exists, under an advisory lock held on the server.
async fn build<F, Fut>(name: &str, migrate: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let admin_url = postgres_admin_url();
    let mut admin = admin_connection().await?;
    // One builder per server; the others wait and then find it built.
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(name)
        .execute(&mut admin)
        .await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        let building = format!("{name}_building");
        // Names come from the service name and a hex digest, never from input.
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {building} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .execute(&mut admin)
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        migrate(format!("{base}/{building}")).await?;
        // Nobody may connect to a template: a connection would block every clone.
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE {building} WITH ALLOW_CONNECTIONS false"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}'"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE {building} RENAME TO {name}"
        )))
        .execute(&mut admin)
        .await?;
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(name)
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_the_files() {
        let dir = std::env::temp_dir().join(format!("tpl-fp-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1_a.sql"), "CREATE TABLE a (x INT);").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let one = fingerprint(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(one.len(), 16);
        std::fs::write(dir.join("notes.txt"), "still ignored").unwrap();
        assert_eq!(fingerprint(std::slice::from_ref(&dir)).unwrap(), one);
        std::fs::write(dir.join("2_b.sql"), "CREATE TABLE b (x INT);").unwrap();
        let two = fingerprint(std::slice::from_ref(&dir)).unwrap();
        assert_ne!(two, one);
        std::fs::write(dir.join("2_b.sql"), "CREATE TABLE b (y INT);").unwrap();
        assert_ne!(fingerprint(std::slice::from_ref(&dir)).unwrap(), two);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
