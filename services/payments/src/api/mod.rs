//! The HTTP face of payments: public routes under `/api/v1/payments`, the
//! provider's webhook, and the internal routes under `/internal/v1/payments`
//! for the orders service (service tokens with the `payments:*` scopes).

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emporium_auth::Verifier;
use emporium_config::Secret;
use emporium_contracts::payments::problems;
use emporium_db::StoreError;
use emporium_http::{FieldError, Problem};

use crate::service::{PayError, Payments};
use crate::store::refusals;

mod internal;
pub mod openapi;
mod public;
mod webhooks;

#[derive(Clone)]
pub struct AppState(pub Arc<Api>);

pub struct Api {
    pub payments: Payments,
    pub verifier: Arc<Verifier>,
    pub webhook_secret: Secret,
    pub webhook_tolerance_secs: i64,
    /// Tokenizations per client.
    pub tokenizations: emporium_http::rate::KeyedLimiter,
    /// Peers whose `X-Forwarded-For` names the client (the gateway).
    pub trusted_proxies: emporium_http::client::TrustedProxies,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.0.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/payments", get(public::by_order))
        .route("/api/v1/payments/tokens", post(public::tokenize))
        .route("/api/v1/payments/{id}/refund", post(public::refund))
        .route("/api/v1/payments/ledger/verify", get(public::verify))
        .route("/api/v1/payments/webhooks", post(webhooks::receive))
        .route("/internal/v1/payments", post(internal::authorize))
        .route("/internal/v1/payments/{order_id}", get(internal::get_one))
        .route(
            "/internal/v1/payments/{order_id}/capture",
            post(internal::capture),
        )
        .route(
            "/internal/v1/payments/{order_id}/void",
            post(internal::void),
        )
        .route(
            "/internal/v1/payments/{order_id}/refunds",
            post(internal::refund),
        )
        .with_state(state)
}

/// Every way a payments route can fail, as the answer it gives.
#[derive(Debug)]
pub enum ApiError {
    Pay(PayError),
    Problem(Problem),
}

impl From<PayError> for ApiError {
    fn from(e: PayError) -> Self {
        Self::Pay(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Pay(PayError::Store(e))
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Problem(p) => p,
            Self::Pay(PayError::Invalid(errors)) => Problem::validation(errors),
            Self::Pay(PayError::NotFound) => Problem::not_found("No such payment."),
            Self::Pay(PayError::Conflict(refusals::KEY_REUSED, detail)) => {
                emporium_http::idempotency::problems::reused().with_detail(detail)
            }
            Self::Pay(PayError::Conflict(kind, detail)) => Problem::conflict(kind, detail),
            Self::Pay(PayError::Unavailable) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                problems::PROVIDER_UNAVAILABLE,
                "The card provider did not answer",
            )
            .with_detail("Nothing was charged twice; try the same request again later."),
            Self::Pay(PayError::Store(e)) => e.into(),
        };
        problem.into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The `Idempotency-Key` of a refund: required, 1 to 255 visible ASCII
/// characters, sent once.
fn refund_key(headers: &HeaderMap) -> Result<String, Problem> {
    use emporium_http::idempotency::{key_of, problems};
    key_of(headers)
        .map_err(|_| problems::invalid())?
        .ok_or_else(problems::missing)
}

/// A field error for a query or body value that is missing.
fn missing(field: &str) -> ApiError {
    PayError::Invalid(vec![FieldError::new(field.to_owned(), "is required")]).into()
}

/// Who is calling, by address: the last `X-Forwarded-For` entry when the
/// peer is a trusted proxy (`tokens.trusted_proxies`: the gateway), else the
/// peer; an IPv6 client by its /64 (`emporium_http::client`).
pub struct ClientAddress(pub String);

impl axum::extract::FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = emporium_http::client::peer_of(&parts.extensions);
        let trusted = &state.0.trusted_proxies;
        Ok(Self(emporium_http::client::client_key(
            trusted,
            &parts.headers,
            peer,
        )))
    }
}
