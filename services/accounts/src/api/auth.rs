//! Registration, login, refresh, logout, the client-credentials grant, JWKS.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Form};
use emporium_auth::{AuthUser, Role};
use emporium_http::{AppJson, FieldError, RequestContext};
use emporium_messaging::outbox::Commit;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::views::{ServiceToken, TokenPair, UserView};
use super::{ApiError, ApiResult, AppState};
use crate::domain::{DisplayName, Email, roles_from_text};
use crate::events;
use crate::store::{IssuedToken, NewUser, RefreshOutcome, Slot, StoreError, UserRecord, Window};
use crate::tokens::{hashes_match, random_token, secret_hash};

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub name: String,
}

/// Creates a customer account.
#[utoipa::path(post, path = "/api/v1/auth/register", request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 409, description = "email taken"),
              (status = 422, description = "invalid fields")))]
pub async fn register(
    State(state): State<AppState>,
    ctx: Option<Extension<RequestContext>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    AppJson(body): AppJson<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let s = &state.0;
    let address = client_address(&state, &headers, peer.map(|Extension(ConnectInfo(a))| a));
    take_slot(
        &state,
        &format!("register:{address}"),
        s.login.max_registrations_per_address,
        s.login.registration_window_secs,
    )
    .await?;
    let mut errors = Vec::new();
    let email = Email::parse(&body.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    let name = DisplayName::parse(&body.name)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let password = s
        .policy
        .check(&body.password)
        .map_err(|m| errors.push(FieldError::new("password", m)))
        .ok();
    let (Some(email), Some(name), Some(password)) = (email, name, password) else {
        return Err(ApiError::Invalid(errors));
    };
    // Cheap early answer for the common case; the unique index decides races.
    if s.store.user_by_email(email.as_str()).await?.is_some() {
        return Err(ApiError::EmailTaken);
    }
    let password_hash = s.hasher.hash(&password).await?;
    let now = state.0.clock.now_ms();
    let new = NewUser::new(&email, &name, password_hash, &[Role::Customer], now);
    let trace = events::trace_of(ctx.as_deref());
    let event = events::registered(new.id, email.as_str(), name.as_str(), trace);
    let user = s
        .store
        .insert_user(&new, &[event])
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::EmailTaken,
            other => other.into(),
        })?;
    s.relay.wake();
    metrics::counter!("accounts_registrations_total").increment(1);
    tracing::info!(user_id = %user.id, "User registered.");
    let location = format!("/api/v1/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        AppJson(UserView::from(&user)),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
}

/// The address attempts are counted against (`emporium_http::client`).
fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    let peer = peer.map(|p| p.ip());
    emporium_http::client::client_key(&state.0.trusted_proxies, headers, peer)
}

/// Takes a throttle slot or answers 429.
pub(super) async fn take_slot(
    state: &AppState,
    subject: &str,
    limit: i64,
    window_secs: u64,
) -> ApiResult<()> {
    let window_ms = (window_secs as i64).saturating_mul(1000);
    match state
        .0
        .store
        .take_slot(
            subject,
            Window {
                limit,
                length_ms: window_ms,
            },
            state.0.clock.now_ms(),
        )
        .await?
    {
        Slot::Taken => Ok(()),
        Slot::Refused { retry_after_ms } => {
            metrics::counter!("accounts_throttled_total").increment(1);
            Err(ApiError::Throttled((retry_after_ms as u64).div_ceil(1000)))
        }
    }
}

/// Where the per-account subject stands in [`login_subjects`].
const ACCOUNT: usize = 2;

/// The throttle subjects one login attempt counts against, with their limits.
fn login_subjects(state: &AppState, email: &str, address: &str) -> [(String, i64); 3] {
    let l = &state.0.login;
    [
        (format!("login:{email}|{address}"), l.max_failures),
        (
            format!("login-address:{address}"),
            l.max_failures_per_address,
        ),
        (format!("login-account:{email}"), l.max_failures_per_account),
    ]
}

/// Signs in with email and password.
///
/// Each attempt first takes a slot in every throttle that counts it, then
/// checks the password: a burst of concurrent attempts can never evaluate
/// more passwords than the limits allow. A success gives the slots back.
#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "wrong credentials"),
              (status = 429, description = "throttled")))]
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginRequest>,
) -> ApiResult<AppJson<TokenPair>> {
    let s = &state.0;
    let mut missing = Vec::new();
    if body.email.trim().is_empty() {
        missing.push(FieldError::new("email", "must not be empty"));
    }
    if body.password.is_empty() {
        missing.push(FieldError::new("password", "must not be empty"));
    }
    if !missing.is_empty() {
        return Err(ApiError::Invalid(missing));
    }
    // An address that cannot be valid is looked up as written and simply not found.
    let email = Email::parse(&body.email)
        .map(|e| e.as_str().to_owned())
        .unwrap_or_else(|_| body.email.trim().to_lowercase().chars().take(300).collect());
    let address = client_address(
        &state,
        &headers,
        peer.map(|Extension(ConnectInfo(addr))| addr),
    );
    let subjects = login_subjects(&state, &email, &address);
    let mut taken: Vec<&(String, i64)> = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let outcome = match take_slot(&state, &subject.0, subject.1, s.login.window_secs).await {
            Ok(()) => {
                taken.push(subject);
                Ok(())
            }
            // Past the per-account limit the account is slowed, not locked:
            // one attempt per interval is still evaluated, so the owner gets
            // in; a refusal then says when the next one will be.
            Err(_) if i == ACCOUNT => {
                take_slot(
                    &state,
                    &format!("login-account-slow:{email}"),
                    1,
                    s.login.account_slow_interval_secs,
                )
                .await
            }
            Err(refused) => Err(refused),
        };
        if let Err(e) = outcome {
            // Refused by a later throttle: the earlier slots were not used.
            for (key, limit) in taken {
                s.store.return_slot(key, *limit).await?;
            }
            return Err(e);
        }
    }

    let issued_at = state.0.clock.now_ms() / 1000;
    let user = s.store.user_by_email(&email).await?.filter(|u| !u.closed);
    let matched = s
        .hasher
        .verify(
            &body.password,
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await;
    let matched = match matched {
        Ok(m) => m,
        Err(e) => {
            // Not evaluated: the attempt does not count.
            for (key, limit) in taken {
                s.store.return_slot(key, *limit).await?;
            }
            return Err(e.into());
        }
    };
    let user = match user {
        Some(u) if matched && !u.disabled => u,
        Some(u) if matched => {
            tracing::info!(user_id = %u.id, "Login refused: the account is disabled.");
            return Err(ApiError::BadCredentials);
        }
        _ => {
            metrics::counter!("accounts_logins_failed_total").increment(1);
            return Err(ApiError::BadCredentials);
        }
    };
    // Failures from this address on this account start over; the wider counts
    // only lose this attempt.
    s.store.clear_slots(&subjects[0].0).await?;
    for (key, limit) in taken.into_iter().skip(1) {
        s.store.return_slot(key, *limit).await?;
    }
    let now = state.0.clock.now_ms();
    let family = Uuid::now_v7();
    let refresh = random_token(32);
    let expires = now + s.tokens.refresh_ttl.as_millis() as i64;
    let hash = secret_hash(&refresh);
    let token = IssuedToken {
        hash: &hash,
        issued_at: now,
        expires_at: expires,
    };
    s.store.start_family(family, user.id, &token).await?;
    metrics::counter!("accounts_logins_total").increment(1);
    let pair = issue_pair(&state, &user, family, refresh, issued_at).await?;
    Ok(AppJson(pair))
}

/// Signs the pair. `issued_at` (Unix seconds) is taken when the request began
/// reading the account, before anything was written: a revocation that other
/// services learn of at time T then covers every token whose issuing read the
/// state before T (their deny lists refuse tokens issued at or before T).
async fn issue_pair(
    state: &AppState,
    user: &UserRecord,
    family: Uuid,
    refresh_token: String,
    issued_at: i64,
) -> ApiResult<TokenPair> {
    let s = &state.0;
    let claims = s.tokens.access_claims(
        user.id,
        roles_from_text(&user.roles),
        family,
        user.token_generation,
        issued_at,
    );
    Ok(TokenPair {
        access_token: s.keys.sign(&claims).await?,
        refresh_token,
        token_type: "Bearer".into(),
        expires_in: s.tokens.access_ttl.as_secs(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[serde(default)]
    pub refresh_token: String,
}

/// Trades a refresh token for a new pair; the old one stops working.
#[utoipa::path(post, path = "/api/v1/auth/refresh", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair),
              (status = 401, description = "unknown, expired or reused token (reuse revokes the family)")))]
pub async fn refresh(
    State(state): State<AppState>,
    AppJson(body): AppJson<RefreshRequest>,
) -> ApiResult<AppJson<TokenPair>> {
    let s = &state.0;
    if body.refresh_token.is_empty() || body.refresh_token.len() > 256 {
        return Err(ApiError::Unauthenticated("The refresh token is invalid."));
    }
    let issued_at = state.0.clock.now_ms() / 1000;
    let now = state.0.clock.now_ms();
    let next = random_token(32);
    let outcome = s
        .store
        .rotate_refresh(
            &secret_hash(&body.refresh_token),
            &IssuedToken {
                hash: &secret_hash(&next),
                issued_at: now,
                expires_at: now + s.tokens.refresh_ttl.as_millis() as i64,
            },
            &|user, family| events::session_revoked(user, Some(family), None, None),
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated { user_id, family_id } => {
            let user = s
                .store
                .user_by_id(user_id)
                .await?
                .ok_or(ApiError::Unauthenticated("The refresh token is invalid."))?;
            Ok(AppJson(
                issue_pair(&state, &user, family_id, next, issued_at).await?,
            ))
        }
        RefreshOutcome::Reused { family_id } => {
            s.relay.wake();
            metrics::counter!("accounts_refresh_reuse_total").increment(1);
            tracing::warn!(%family_id, "Rotated refresh token presented again; family revoked.");
            Err(ApiError::Unauthenticated("The refresh token is invalid."))
        }
        RefreshOutcome::Invalid => Err(ApiError::Unauthenticated("The refresh token is invalid.")),
    }
}

/// Ends the session the access token belongs to: its refresh family is revoked.
#[utoipa::path(post, path = "/api/v1/auth/logout", responses((status = 204), (status = 401)),
    security(("bearer" = [])))]
pub async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: Option<Extension<RequestContext>>,
) -> ApiResult<StatusCode> {
    super::users::current(&state, &user).await?;
    let family = super::users::session_of(&user)?;
    let event = events::session_revoked(
        user.id,
        Some(family),
        None,
        events::trace_of(ctx.as_deref()),
    );
    state
        .0
        .store
        .revoke_family(family, user.id, Commit::now(&state.0.clock, &[event]))
        .await?;
    state.0.relay.wake();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ClientCredentials {
    #[serde(default)]
    pub grant_type: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    /// Space-separated; omitted means every scope the client holds.
    pub scope: Option<String>,
}

/// OAuth 2.0 client-credentials grant for services (form-encoded body).
#[utoipa::path(post, path = "/api/v1/auth/token",
    request_body(content = ClientCredentials, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = ServiceToken), (status = 401, description = "bad client"),
              (status = 403, description = "scope not granted")))]
pub async fn service_token(
    State(state): State<AppState>,
    form: Result<Form<ClientCredentials>, axum::extract::rejection::FormRejection>,
) -> ApiResult<AppJson<ServiceToken>> {
    let s = &state.0;
    let Form(body) = form.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if body.grant_type != "client_credentials" {
        return Err(ApiError::field("grant_type", "must be client_credentials"));
    }
    let client = s.store.client(&body.client_id).await?;
    let presented = secret_hash(&body.client_secret);
    let client = match client {
        Some(c) if hashes_match(&c.secret_hash, &presented) => c,
        _ => {
            return Err(ApiError::Unauthenticated(
                "The client id or secret is wrong.",
            ));
        }
    };
    let granted: Vec<&str> = client.scopes.split(' ').filter(|s| !s.is_empty()).collect();
    let scope = match body
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => granted.join(" "),
        Some(asked) => {
            if asked.split(' ').any(|a| !granted.contains(&a)) {
                return Err(ApiError::Forbidden(
                    "A requested scope is not granted to this client.",
                ));
            }
            asked.to_owned()
        }
    };
    let claims = s.tokens.service_claims(
        &client.client_id,
        scope.clone(),
        state.0.clock.now_ms() / 1000,
    );
    Ok(AppJson(ServiceToken {
        access_token: s.keys.sign(&claims).await?,
        token_type: "Bearer".into(),
        expires_in: s.tokens.service_ttl.as_secs(),
        scope,
    }))
}

/// The public keys tokens are verified with.
#[utoipa::path(get, path = "/.well-known/jwks.json", responses((status = 200)))]
pub async fn jwks(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let set = state.0.keys.jwks(state.0.clock.now_ms()).await?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=60")],
        AppJson(set),
    ))
}
