//! The HTTP face of accounts: routes, shared state, and the one error type.

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use emporium_auth::Verifier;
use emporium_db::SharedClock;
use emporium_http::{FieldError, Problem};

use emporium_messaging::outbox::RelayWaker;

use crate::config::LoginConfig;
use crate::domain::{PasswordPolicy, TrustedProxies};
use crate::passwords::{HashError, Hasher};
use crate::store::{AccountsStore, StoreError, refused};
use crate::tokens::{KeyRing, TokenSettings};

mod auth;
pub mod openapi;
mod users;
mod views;

pub use views::{TokenPair, UserView};

/// Everything a handler needs; cloned per request (one `Arc`).
#[derive(Clone)]
pub struct AppState(pub Arc<Accounts>);

pub struct Accounts {
    pub store: Arc<dyn AccountsStore>,
    pub keys: Arc<KeyRing>,
    pub verifier: Arc<Verifier>,
    pub policy: Arc<PasswordPolicy>,
    pub hasher: Hasher,
    pub tokens: TokenSettings,
    pub login: LoginConfig,
    /// Peers whose `X-Forwarded-For` names the client (the gateway).
    pub trusted_proxies: TrustedProxies,
    /// Woken after a commit that wrote events, so they leave without waiting for a poll.
    pub relay: RelayWaker,
    /// The time every handler reads (tokens' `iat`/`exp`, throttle windows, stored times).
    pub clock: SharedClock,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.0.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/auth/register", post(auth::register))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/token", post(auth::service_token))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route(
            "/api/v1/users/me",
            get(users::me)
                .patch(users::update_me)
                .delete(users::close_me),
        )
        .route("/api/v1/users/me/password", put(users::change_password))
        .route("/api/v1/users", get(users::list))
        .route(
            "/api/v1/users/{id}",
            get(users::get_one).patch(users::admin_update),
        )
        .with_state(state)
}

/// Every way an accounts request can fail; mapped to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// Wrong password, unknown email, disabled account: one indistinguishable answer.
    #[error("bad credentials")]
    BadCredentials,
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("email taken")]
    EmailTaken,
    #[error("conflict: {1}")]
    Conflict(&'static str, &'static str),
    #[error("throttled for {0} s")]
    Throttled(u64),
    /// Password hashing is saturated; try again shortly.
    #[error("busy")]
    Busy,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, message: &str) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(refused::LAST_ADMIN) => Self::Conflict(
                "last-admin",
                "The shop must keep at least one enabled admin.",
            ),
            StoreError::Refused(refused::NOT_AN_ADMIN) => {
                Self::Forbidden("This needs the admin role.")
            }
            other => Self::Store(other),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy,
            HashError::Failed(why) => Self::Internal(anyhow::anyhow!(why)),
        }
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid(errors) => Problem::validation(errors),
            ApiError::BadCredentials => Problem::unauthorized("The email or password is wrong."),
            ApiError::Unauthenticated(why) => Problem::unauthorized(why),
            ApiError::Forbidden(why) => Problem::forbidden(why),
            ApiError::NotFound => Problem::not_found("No such user."),
            ApiError::EmailTaken => {
                Problem::conflict("email-taken", "An account with this email exists already.")
            }
            ApiError::Conflict(kind, why) => Problem::conflict(kind, why),
            ApiError::Throttled(secs) => Problem::too_many_requests(secs),
            ApiError::Busy => Problem::from_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("Too many password checks are waiting; try again in a second.")
                .with_header(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                ),
            ApiError::BadRequest(why) => Problem::bad_request(why),
            ApiError::Store(e) => Problem::from(e),
            ApiError::Internal(cause) => {
                tracing::error!(error = %emporium_http::problem::logged_cause(&cause), "Request failed.");
                Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
