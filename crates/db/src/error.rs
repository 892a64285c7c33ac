//! One store error for every service: what a refused write means, with the
//! constraint that refused it named for the log (never for the client).

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write: the key is in use (409).
    #[error("a record with the same key exists ({constraint})")]
    Conflict { constraint: String },
    /// A foreign key refused the write: something it refers to was removed
    /// meanwhile (409).
    #[error("a referenced record does not exist ({constraint})")]
    MissingReference { constraint: String },
    /// A CHECK or NOT NULL constraint refused a value the service let through (422).
    #[error("a value breaks a rule of the schema ({constraint})")]
    Invalid { constraint: String },
    /// A rule of the service kept the write from happening (the last admin
    /// cannot go): the kind names it for the answer (409 `<kind>`).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// No connection could be had in time: the database is down or saturated (503).
    #[error("the database is unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl StoreError {
    /// The constraint a refused write broke, if that is what happened.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Self::Conflict { constraint }
            | Self::MissingReference { constraint }
            | Self::Invalid { constraint } => Some(constraint),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let named = |db: &dyn sqlx::error::DatabaseError| {
            db.constraint()
                .map(str::to_owned)
                // SQLite names no constraint; its message names the columns.
                .unwrap_or_else(|| db.message().chars().take(200).collect())
        };
        match &e {
            sqlx::Error::Database(db) => match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => Self::Conflict {
                    constraint: named(db.as_ref()),
                },
                sqlx::error::ErrorKind::ForeignKeyViolation => Self::MissingReference {
                    constraint: named(db.as_ref()),
                },
                sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::NotNullViolation => Self::Invalid {
                    constraint: named(db.as_ref()),
                },
                _ => Self::Database(e),
            },
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(e)
            }
            _ => Self::Database(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::TestDatabase;

    async fn refusals_on(url: &str) {
        let db = crate::Db::connect(url, 1).await.unwrap();
        let statements = [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE child (id INTEGER PRIMARY KEY, \
             parent_id INTEGER NOT NULL CONSTRAINT child_parent_fk REFERENCES parent (id), \
             qty INTEGER NOT NULL CONSTRAINT child_qty_positive CHECK (qty > 0), \
             code TEXT NOT NULL CONSTRAINT child_code_unique UNIQUE)",
            "INSERT INTO parent (id) VALUES (1)",
            "INSERT INTO child (id, parent_id, qty, code) VALUES (1, 1, 1, 'a')",
        ];
        let run = |sql: &'static str| {
            let db = db.clone();
            async move {
                match &db {
                    crate::Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
                    crate::Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
                }
                .map_err(StoreError::from)
            }
        };
        for sql in statements {
            run(sql).await.unwrap();
        }
        let dup = run("INSERT INTO child (id, parent_id, qty, code) VALUES (2, 1, 1, 'a')")
            .await
            .unwrap_err();
        assert!(matches!(dup, StoreError::Conflict { .. }), "{dup:?}");
        let gone = run("INSERT INTO child (id, parent_id, qty, code) VALUES (3, 9, 1, 'c')")
            .await
            .unwrap_err();
        assert!(
            matches!(gone, StoreError::MissingReference { .. }),
            "{gone:?}"
        );
        let bad = run("INSERT INTO child (id, parent_id, qty, code) VALUES (4, 1, 0, 'd')")
            .await
            .unwrap_err();
        assert!(matches!(bad, StoreError::Invalid { .. }), "{bad:?}");
        if let crate::Db::Postgres(_) = db {
            assert_eq!(dup.constraint(), Some("child_code_unique"));
            assert_eq!(gone.constraint(), Some("child_parent_fk"));
            assert_eq!(bad.constraint(), Some("child_qty_positive"));
        } else {
            assert!(dup.constraint().unwrap().contains("child.code"), "{dup:?}");
        }
        db.close().await;
    }

    #[tokio::test]
    async fn constraint_refusals_are_told_apart_on_postgres() {
        let db = TestDatabase::postgres().await.unwrap();
        refusals_on(&db.url).await;
    }

    #[tokio::test]
    async fn constraint_refusals_are_told_apart_on_sqlite() {
        let db = TestDatabase::sqlite();
        refusals_on(&db.url).await;
    }
}
