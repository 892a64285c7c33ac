//! Axum extractors that authenticate the caller.
//!
//! Each needs `Arc<Verifier>` reachable from the router state (`FromRef`).
//! Missing or bad credentials answer 401 with `WWW-Authenticate: Bearer`; a
//! valid token without the needed role or scope answers 403.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use emporium_http::Problem;
use uuid::Uuid;

use crate::claims::{Claims, Role, TokenType};
use crate::verifier::{Verifier, VerifyError};

/// A signed-in person (any role).
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub claims: Claims,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.claims.has_role(Role::Admin)
    }
}

/// A caller who may be signed in: `None` without an `Authorization` header.
/// A header that is there must hold a valid token (401 otherwise), so a
/// broken token is never taken for an anonymous caller.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<AuthUser>);

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct Admin(pub AuthUser);

/// A service client holding scope `S::NAME`.
#[derive(Debug, Clone)]
pub struct ServiceCaller<S> {
    pub client_id: String,
    pub claims: Claims,
    _scope: PhantomData<S>,
}

/// A scope a [`ServiceCaller`] must hold, as a type: `ServiceCaller<StockReserve>`.
pub trait Scope: Send + Sync + 'static {
    const NAME: &'static str;
}

fn bearer(parts: &Parts) -> Result<&str, Problem> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| Problem::unauthorized("Send `Authorization: Bearer <token>`."))?;
    let value = value
        .to_str()
        .map_err(|_| Problem::unauthorized("The Authorization header is malformed."))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| Problem::unauthorized("The Authorization header is malformed."))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::unauthorized("Use the Bearer scheme."));
    }
    Ok(token.trim())
}

async fn verified<S>(parts: &Parts, state: &S, expected: TokenType) -> Result<Claims, Problem>
where
    Arc<Verifier>: FromRef<S>,
{
    let token = bearer(parts)?;
    let verifier = Arc::<Verifier>::from_ref(state);
    verifier.verify(token, expected).await.map_err(|e| {
        tracing::info!(reason = %e, "Token refused.");
        match e {
            VerifyError::KeysUnavailable => {
                Problem::from_status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                    .with_detail("Tokens cannot be checked right now.")
            }
            _ => Problem::unauthorized("The token is invalid or expired."),
        }
    })
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let claims = verified(parts, state, TokenType::Access).await?;
        let id = Uuid::parse_str(&claims.sub)
            .map_err(|_| Problem::unauthorized("The token names no user."))?;
        Ok(Self { id, claims })
    }
}

impl<S> FromRequestParts<S> for MaybeUser
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Ok(Self(None));
        }
        Ok(Self(Some(
            AuthUser::from_request_parts(parts, state).await?,
        )))
    }
}

impl<S> FromRequestParts<S> for Admin
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !user.is_admin() {
            return Err(Problem::forbidden("This needs the admin role."));
        }
        Ok(Self(user))
    }
}

impl<S, Sc> FromRequestParts<S> for ServiceCaller<Sc>
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
    Sc: Scope,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let claims = verified(parts, state, TokenType::Service).await?;
        if !claims.has_scope(Sc::NAME) {
            return Err(Problem::forbidden(format!(
                "This needs the scope `{}`.",
                Sc::NAME
            )));
        }
        Ok(Self {
            client_id: claims.sub.clone(),
            claims,
            _scope: PhantomData,
        })
    }
}
