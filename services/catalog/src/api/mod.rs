//! The HTTP face of the catalog: public routes under `/api/v1`, the internal
//! reservation and product lookup routes under `/internal/v1` (service tokens
//! with `stock:reserve`; a restock with `stock:adjust`), the shared state and
//! the one error type.

use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use emporium_auth::Verifier;
use emporium_db::SharedClock;
use emporium_http::{FieldError, Problem};
use emporium_messaging::outbox::RelayWaker;

use crate::store::{CatalogStore, StoreError};

mod categories;
mod lookup;
pub mod openapi;
mod products;
mod reservations;
mod search;
mod stock;

#[derive(Clone)]
pub struct AppState(pub Arc<Catalog>);

pub struct Catalog {
    pub store: Arc<dyn CatalogStore>,
    pub verifier: Arc<Verifier>,
    pub relay: RelayWaker,
    pub reservation_ttl: Duration,
    /// How long a kept reservation (a confirmed order's) holds its stock.
    pub kept_reservation_ttl: Duration,
    /// The time every handler and the store read.
    pub clock: SharedClock,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.0.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/api/v1/categories",
            get(categories::tree).post(categories::create),
        )
        .route(
            "/api/v1/categories/{id}",
            axum::routing::patch(categories::update).delete(categories::delete),
        )
        .route("/api/v1/products", get(search::list).post(products::create))
        .route(
            "/api/v1/products/{id}",
            get(products::get_one)
                .patch(products::update)
                .delete(products::delete),
        )
        .route("/api/v1/products/{id}/stock", get(stock::of_product))
        .route(
            "/api/v1/warehouses",
            get(stock::warehouses).post(stock::create_warehouse),
        )
        .route("/api/v1/warehouses/{wid}/stock/{pid}", put(stock::set))
        .route(
            "/api/v1/warehouses/{wid}/stock/{pid}/adjustments",
            post(stock::adjust),
        )
        .route("/api/v1/stock/movements", get(stock::movements))
        .route("/internal/v1/products/lookup", post(lookup::lookup))
        .route("/internal/v1/reservations", post(reservations::reserve))
        .route("/internal/v1/reservations/{id}", get(reservations::get_one))
        .route(
            "/internal/v1/reservations/{id}/release",
            post(reservations::release),
        )
        .route(
            "/internal/v1/reservations/{id}/commit",
            post(reservations::commit),
        )
        .route(
            "/internal/v1/reservations/{id}/keep",
            post(reservations::keep),
        )
        .route(
            "/internal/v1/reservations/{id}/restock",
            post(reservations::restock),
        )
        .with_state(state)
}

/// Every way a catalog request can fail; mapped to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("conflict: {1}")]
    Conflict(&'static str, String),
    #[error("stale version")]
    Stale { current: i64 },
    #[error("a weak entity tag")]
    WeakTag,
    #[error("not implemented: {0}")]
    NotImplemented(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::Invalid(vec![e])
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(errors) => Problem::validation(errors),
            ApiError::NotFound(what) => Problem::not_found(format!("No such {what}.")),
            ApiError::Conflict(kind, why) => Problem::conflict(kind, why),
            ApiError::Stale { current } => stale(format!(
                "The current version is {current}; read it again and retry."
            )),
            ApiError::WeakTag => stale(
                "If-Match compares strongly and a weak tag (W/\"…\") never matches; \
                 send the ETag exactly as it was given.",
            ),
            ApiError::NotImplemented(what) => Problem::new(
                StatusCode::NOT_IMPLEMENTED,
                "not-implemented",
                "This is not available yet.",
            )
            .with_detail(what),
            ApiError::Store(e) => Problem::from(e),
            ApiError::Internal(cause) => {
                tracing::error!(error = %emporium_http::problem::logged_cause(&cause), "Request failed.");
                Problem::internal()
            }
        }
    }
}

/// A 412: the `If-Match` the write carried does not match.
fn stale(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "stale-version",
        "The resource changed since you read it.",
    )
    .with_detail(detail)
}

/// How much of a failure's cause is logged.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub use emporium_http::time::rfc3339;
