//! What sqlx's proc macros did, without them: migrations embedded in the
//! binary and rows decoded into structs. Without `sqlx::migrate!` and
//! `#[derive(sqlx::FromRow)]` sqlx needs no proc-macro crate, so its drivers
//! (SQLite's C library above all) are compiled once, for the target, instead
//! of a second time for the compiler.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One embedded migration file: its name (`<version>_<description>.sql`) and text.
pub type MigrationFile = (&'static str, &'static str);

/// `migration_files!("migrations/postgres": "0001_init.sql", "0002_more.sql")`:
/// the named files of a directory of the calling crate, embedded.
#[macro_export]
macro_rules! migration_files {
    ($dir:literal: $($file:literal),+ $(,)?) => {
        &[$((
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "/", $file)),
        )),+]
    };
}

/// `migrations!("0001_init.sql", "0002_more.sql")`: a crate's own
/// [`Migrations`](crate::Migrations), the same file names embedded from its
/// `migrations/postgres` and `migrations/sqlite` directories.
#[macro_export]
macro_rules! migrations {
    ($($file:literal),+ $(,)?) => {
        $crate::Migrations {
            postgres: $crate::migration_files!("migrations/postgres": $($file),+),
            sqlite: $crate::migration_files!("migrations/sqlite": $($file),+),
        }
    };
}

/// A migrator over embedded files, equal to what `sqlx::migrate!` builds from
/// the same directory: the same versions, descriptions and checksums, so
/// databases migrated before keep validating.
pub fn migrator(files: &[MigrationFile]) -> Migrator {
    let migrations = files
        .iter()
        .map(|(name, sql)| {
            let (version, rest) = name
                .split_once('_')
                .expect("a migration file is named <version>_<description>.sql");
            let version: i64 = version
                .parse()
                .expect("a migration file name starts with its version number");
            let description = rest
                .trim_end_matches(".sql")
                .trim_end_matches(".up")
                .trim_end_matches(".down")
                .replace('_', " ");
            Migration::new(
                version,
                Cow::Owned(description),
                MigrationType::from_filename(rest),
                sqlx::SqlSafeStr::into_sql_str(*sql),
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Fails unless each list names exactly the `.sql` files of its directory
/// (relative to the calling crate's `CARGO_MANIFEST_DIR`), in order: what
/// each crate's test calls, so a new migration file cannot be forgotten.
pub fn check_listed(manifest_dir: &str, lists: &[(&[MigrationFile], &str)]) -> Result<(), String> {
    for (files, dir) in lists {
        let listed: Vec<String> = files.iter().map(|(name, _)| (*name).to_owned()).collect();
        let present = sql_files_in(&std::path::Path::new(manifest_dir).join(dir));
        if listed != present {
            return Err(format!(
                "{dir} holds {present:?} but the list names {listed:?}"
            ));
        }
    }
    Ok(())
}

/// A test that every migration list names exactly the `.sql` files of its
/// directory: `emporium_db::migrations_are_listed!(MIGRATIONS);` for a crate's
/// [`migrations!`], or `(POSTGRES => "migrations/postgres", …)` per list.
#[macro_export]
macro_rules! migrations_are_listed {
    ($migrations:ident) => {
        $crate::migrations_are_listed!(
            $migrations.postgres => "migrations/postgres",
            $migrations.sqlite => "migrations/sqlite"
        );
    };
    ($($list:expr => $dir:literal),+ $(,)?) => {
        #[cfg(test)]
        #[test]
        fn every_migration_file_is_embedded() {
            let lists = [$(($list, $dir)),+];
            let listed = $crate::embed::check_listed(env!("CARGO_MANIFEST_DIR"), &lists);
            assert_eq!(listed, Ok(()));
        }
    };
}

/// The names of the `.sql` files in `dir`, sorted.
pub fn sql_files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Declares a struct and decodes it from a row by column name, on either
/// engine (what `#[derive(sqlx::FromRow)]` did):
///
/// ```ignore
/// emporium_db::record! {
///     #[derive(Debug, Clone)]
///     pub struct StockRecord { pub product_id: Uuid, pub on_hand: i64 }
/// }
/// ```
#[macro_export]
macro_rules! record {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }

        impl<'r, R: $crate::sqlx::Row> $crate::sqlx::FromRow<'r, R> for $name
        where
            &'r str: $crate::sqlx::ColumnIndex<R>,
            $($ty: $crate::sqlx::Decode<'r, R::Database> + $crate::sqlx::Type<R::Database>,)*
        {
            fn from_row(row: &'r R) -> Result<Self, $crate::sqlx::Error> {
                Ok(Self {
                    $($field: $crate::sqlx::Row::try_get(row, stringify!($field))?),*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FILES: &[MigrationFile] = &[
        ("0002_more_things.sql", "CREATE TABLE b (x INTEGER);"),
        (
            "0001_init.sql",
            "-- no-transaction\nCREATE TABLE a (x INTEGER);",
        ),
    ];

    #[test]
    fn embedded_migrations_match_what_sqlx_reads_from_disk() {
        let dir = std::env::temp_dir().join(format!("embed-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, sql) in FILES {
            std::fs::write(dir.join(name), sql).unwrap();
        }
        let from_disk = sqlx::migrate::resolve_blocking(&dir).unwrap();
        let embedded = migrator(FILES);
        assert_eq!(embedded.migrations.len(), from_disk.len());
        for (ours, (theirs, _)) in embedded.migrations.iter().zip(&from_disk) {
            assert_eq!(ours.version, theirs.version);
            assert_eq!(ours.description, theirs.description);
            assert_eq!(ours.checksum, theirs.checksum);
            assert_eq!(ours.no_tx, theirs.no_tx);
            assert_eq!(ours.migration_type, theirs.migration_type);
        }
        assert_eq!(embedded.migrations[0].description, "init");
        assert!(embedded.migrations[0].no_tx);
        assert_eq!(
            sql_files_in(&dir),
            vec![
                "0001_init.sql".to_owned(),
                "0002_more_things.sql".to_owned()
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    record! {
        #[derive(Debug, PartialEq)]
        struct Row {
            id: i64,
            name: String,
            note: Option<String>,
        }
    }

    #[tokio::test]
    async fn records_decode_by_column_name() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let row: Row = sqlx::query_as("SELECT 'box' AS name, NULL AS note, 7 AS id")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            row,
            Row {
                id: 7,
                name: "box".into(),
                note: None
            }
        );
    }
}
