//! How a refused or failed store call is answered: written once for every
//! service. The constraint that refused a write goes to the log, never to the
//! client.

use axum::http::StatusCode;
use emporium_db::StoreError;

use crate::problem::{Problem, logged_cause};

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { constraint } => {
                tracing::info!(constraint = %constraint, "A write met a key in use.");
                Problem::conflict("conflict", "A record with the same key exists.")
            }
            StoreError::MissingReference { constraint } => {
                tracing::info!(constraint = %constraint, "A write referred to a record deleted meanwhile.");
                Problem::conflict(
                    "reference-gone",
                    "Something this refers to was deleted meanwhile; read it again.",
                )
            }
            StoreError::Refused(kind) => {
                Problem::conflict(kind, "The change breaks a rule of the service.")
            }
            StoreError::Invalid { constraint } => {
                // Validation should have caught it: worth a warning, not a 500.
                tracing::warn!(constraint = %constraint, "The schema refused a value validation let through.");
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "constraint-violated",
                    "A value is not allowed here.",
                )
            }
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %logged_cause(&cause.into()), "The database is unavailable.");
                Problem::from_status(StatusCode::SERVICE_UNAVAILABLE)
                    .with_detail("The database is unavailable; try again shortly.")
            }
            StoreError::Database(cause) => {
                tracing::error!(error = %logged_cause(&cause.into()), "Request failed.");
                Problem::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_answer_without_naming_the_constraint() {
        let secret = "users_email_skeleton_key".to_owned();
        for (error, status, kind) in [
            (
                StoreError::Conflict {
                    constraint: secret.clone(),
                },
                409,
                "conflict",
            ),
            (
                StoreError::MissingReference {
                    constraint: secret.clone(),
                },
                409,
                "reference-gone",
            ),
            (
                StoreError::Invalid {
                    constraint: secret.clone(),
                },
                422,
                "constraint-violated",
            ),
            (
                StoreError::Unavailable(sqlx::Error::PoolTimedOut),
                503,
                "unavailable",
            ),
            (
                StoreError::Database(sqlx::Error::RowNotFound),
                500,
                "internal",
            ),
        ] {
            let problem = Problem::from(error);
            assert_eq!(problem.status.as_u16(), status);
            assert_eq!(problem.kind, kind);
            let told = format!(
                "{} {:?} {:?}",
                problem.title, problem.detail, problem.errors
            );
            assert!(!told.contains(&secret), "{told}");
        }
    }
}
