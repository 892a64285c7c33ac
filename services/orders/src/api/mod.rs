//! The HTTP face of orders: the cart and orders under `/api/v1` (docs/api.md).
//!
//! Customers see and act on their own cart and orders only (someone else's
//! order answers 404, as a missing one does); admins see every order and
//! move them on (ship, deliver, refund).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use emporium_auth::Verifier;
use emporium_client::catalog::{LookupError, Products};
use emporium_contracts::products::ProductSummary;
use emporium_db::StoreError;
use emporium_http::{Problem, RequestContext};
use uuid::Uuid;

use crate::saga::{Driven, Loaded, Saga, SagaError};
use crate::store::Carts;

mod cart;
pub mod openapi;
mod orders;

#[derive(Clone)]
pub struct AppState(pub Arc<Api>);

pub struct Api {
    pub saga: Saga,
    pub carts: Carts,
    pub products: Products,
    pub verifier: Arc<Verifier>,
    /// How long a request waits for its saga before answering it is pending.
    pub answer_within: Duration,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.0.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/cart", get(cart::show).delete(cart::clear))
        .route("/api/v1/cart/items/{product_id}", put(cart::set_item))
        .route("/api/v1/orders", get(orders::list).post(orders::place))
        .route("/api/v1/orders/{id}", get(orders::get_one))
        .route("/api/v1/orders/{id}/history", get(orders::history))
        .route("/api/v1/orders/{id}/cancel", post(orders::cancel))
        .route("/api/v1/orders/{id}/ship", post(orders::ship))
        .route("/api/v1/orders/{id}/deliver", post(orders::deliver))
        .route("/api/v1/orders/{id}/refund", post(orders::refund))
        .with_state(state)
}

/// Problem types of the orders routes, beside the generic ones.
pub mod problems {
    /// 409: the order's status does not allow what was asked.
    pub const STATUS_CONFLICT: &str = "order-status-conflict";
    /// 503: the catalog did not answer; nothing was changed.
    pub const CATALOG_UNAVAILABLE: &str = "catalog-unavailable";
}

/// Every way an orders route can fail, as the answer it gives.
#[derive(Debug)]
pub enum ApiError {
    Problem(Problem),
    Saga(SagaError),
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl From<SagaError> for ApiError {
    fn from(e: SagaError) -> Self {
        Self::Saga(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Saga(SagaError::Store(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(p) => p.into_response(),
            Self::Saga(SagaError::Store(e)) => Problem::from(e).into_response(),
            Self::Saga(SagaError::Stopped) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The service is stopping",
            )
            .with_detail("Send the same request again: it will be finished, not repeated.")
            .into_response(),
            Self::Saga(e @ SagaError::Corrupt(..)) => {
                tracing::error!(error = %e, "An order's stream does not replay.");
                Problem::internal().into_response()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// 503 for a catalog that did not answer.
fn catalog_down(e: &LookupError) -> ApiError {
    tracing::warn!(error = %e, "The catalog did not answer a product lookup.");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        problems::CATALOG_UNAVAILABLE,
        "The catalog did not answer",
    )
    .with_detail("Nothing was changed; try again shortly.")
    .into()
}

impl Api {
    /// The catalog's current view of `ids`, by id (unknown and deleted
    /// products are absent).
    async fn products(
        &self,
        ids: Vec<Uuid>,
        ctx: &RequestContext,
    ) -> ApiResult<HashMap<Uuid, ProductSummary>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self
            .products
            .lookup(ids, Some(ctx))
            .await
            .map_err(|e| match e {
                LookupError::Invalid(detail) => {
                    tracing::error!(%detail, "The catalog refused a product lookup.");
                    ApiError::Problem(Problem::internal())
                }
                e => catalog_down(&e),
            })?;
        Ok(found.items.into_iter().map(|p| (p.id, p)).collect())
    }

    /// Drives the order's saga until it has finished or the request has
    /// waited long enough; a saga another replica or request drives is
    /// waited for. `created`: the order this request just created (and
    /// holds the claim of).
    async fn settle(
        &self,
        id: Uuid,
        created: Option<Loaded>,
        ctx: &RequestContext,
    ) -> ApiResult<Driven> {
        let deadline = tokio::time::Instant::now() + self.answer_within;
        let mut created = created;
        loop {
            let driven = match created.take() {
                Some(loaded) => self.saga.drive_from(loaded, true, deadline, ctx).await?,
                None => self
                    .saga
                    .drive(id, false, deadline, ctx)
                    .await?
                    .ok_or_else(|| Problem::not_found("No such order."))?,
            };
            match driven {
                Driven::Pending(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                driven => return Ok(driven),
            }
        }
    }
}

/// An order the caller may see: its own, or any for an admin; else 404.
fn visible(loaded: Option<Loaded>, user: &emporium_auth::AuthUser) -> ApiResult<Loaded> {
    loaded
        .filter(|l| user.is_admin() || l.order.customer_id() == user.id)
        .ok_or_else(|| Problem::not_found("No such order.").into())
}
