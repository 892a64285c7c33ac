//! The signed-in user's own profile, and admin management of users.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use emporium_auth::{Admin, AuthUser, Role};
use emporium_http::paging;
use emporium_http::{AppJson, AppPath, AppQuery, FieldError, RequestContext};
use emporium_messaging::outbox::Commit;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::views::{Page, UserView};
use super::{ApiError, ApiResult, AppState};
use crate::domain::{DisplayName, roles_from_text, roles_to_text};
use crate::events;
use crate::store::{NewPassword, StoreError, UserChange, UserRecord};

/// The user behind a token, as the account is now: a token outliving its
/// account, its account's enabling or its session (logout, password change)
/// no longer counts.
pub(super) async fn current(state: &AppState, user: &AuthUser) -> ApiResult<UserRecord> {
    let record = state
        .0
        .store
        .user_by_id(user.id)
        .await?
        .filter(|u| !u.closed && !u.disabled)
        .ok_or(ApiError::Unauthenticated("The account no longer exists."))?;
    let session = session_of(user)?;
    if state.0.store.session_ended(session, user.id).await? {
        return Err(ApiError::Unauthenticated("The session has ended."));
    }
    Ok(record)
}

/// A conflict on an account write means another change came first.
fn concurrent_change(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::Conflict(
            "concurrent-change",
            "The account changed meanwhile; read it again and retry.",
        ),
        other => other.into(),
    }
}

/// The login session (refresh family) an access token belongs to.
pub(super) fn session_of(user: &AuthUser) -> ApiResult<Uuid> {
    user.claims
        .sid
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or(ApiError::Unauthenticated(
            "The token belongs to no session.",
        ))
}

/// An admin as the account is now: the role in the token is not enough, the
/// account must still hold it (and be enabled, with its session open).
async fn current_admin(state: &AppState, admin: &Admin) -> ApiResult<UserRecord> {
    let record = current(state, &admin.0).await?;
    if !roles_from_text(&record.roles).contains(&Role::Admin) {
        return Err(ApiError::Forbidden("This needs the admin role."));
    }
    Ok(record)
}

/// The signed-in user's profile.
#[utoipa::path(get, path = "/api/v1/users/me", responses((status = 200, body = UserView), (status = 401)),
    security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<AppJson<UserView>> {
    Ok(AppJson(UserView::from(&current(&state, &user).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ProfileChange {
    pub name: Option<String>,
}

/// Changes the signed-in user's name.
#[utoipa::path(patch, path = "/api/v1/users/me", request_body = ProfileChange,
    responses((status = 200, body = UserView), (status = 401), (status = 422)), security(("bearer" = [])))]
pub async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: Option<Extension<RequestContext>>,
    AppJson(body): AppJson<ProfileChange>,
) -> ApiResult<AppJson<UserView>> {
    current(&state, &user).await?;
    // Nothing to change is a mistake (a misspelt field, say), not a success.
    let Some(raw) = body.name else {
        return Err(ApiError::field("body", "names no field to change (name)"));
    };
    let name = DisplayName::parse(&raw).map_err(|m| ApiError::field("name", m))?;
    let event = events::profile_updated(user.id, name.as_str(), events::trace_of(ctx.as_deref()));
    let updated = state
        .0
        .store
        .update_name(
            user.id,
            name.as_str(),
            Commit::now(&state.0.clock, &[event]),
        )
        .await?
        .ok_or(ApiError::Unauthenticated("The account no longer exists."))?;
    state.0.relay.wake();
    Ok(AppJson(UserView::from(&updated)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    #[serde(default)]
    pub current_password: String,
    #[serde(default)]
    pub new_password: String,
}

/// Changes the password; every session of the user ends.
#[utoipa::path(put, path = "/api/v1/users/me/password", request_body = PasswordChange,
    responses((status = 204), (status = 401), (status = 422)), security(("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: Option<Extension<RequestContext>>,
    AppJson(body): AppJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let s = &state.0;
    let record = current(&state, &user).await?;
    let new = s
        .policy
        .check(&body.new_password)
        .map_err(|m| ApiError::field("new_password", m))?;
    // Guesses of the current password count like failed logins, and the slot
    // is taken before hashing: a stolen token cannot guess at hashing speed.
    let subject = format!("password:{}", user.id);
    let limit = s.login.max_password_change_failures;
    super::auth::take_slot(&state, &subject, limit, s.login.window_secs).await?;
    let matched = match s
        .hasher
        .verify(&body.current_password, Some(&record.password_hash))
        .await
    {
        Ok(m) => m,
        Err(e) => {
            s.store.return_slot(&subject, limit).await?;
            return Err(e.into());
        }
    };
    if !matched {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "current_password",
            "is wrong",
        )]));
    }
    s.store.clear_slots(&subject).await?;
    let hash = s.hasher.hash(&new).await?;
    let generation = record.token_generation + 1;
    let event = events::session_revoked(
        user.id,
        None,
        Some(generation),
        events::trace_of(ctx.as_deref()),
    );
    s.store
        .update_password(
            user.id,
            &NewPassword {
                hash: &hash,
                token_generation: generation,
            },
            Commit::now(&state.0.clock, &[event]),
        )
        .await
        .map_err(concurrent_change)?;
    s.relay.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// Closes the signed-in user's account.
#[utoipa::path(delete, path = "/api/v1/users/me", responses((status = 204), (status = 401)),
    security(("bearer" = [])))]
pub async fn close_me(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: Option<Extension<RequestContext>>,
) -> ApiResult<StatusCode> {
    let record = current(&state, &user).await?;
    let event = events::deleted(
        user.id,
        record.token_generation + 1,
        events::trace_of(ctx.as_deref()),
    );
    state
        .0
        .store
        .close_user(user.id, Commit::now(&state.0.clock, &[event]))
        .await?;
    state.0.relay.wake();
    tracing::info!(user_id = %user.id, "Account closed.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub cursor: Option<String>,
    /// Text, checked by `paging::limit`: a bad value is a 422 naming `limit`.
    pub limit: Option<String>,
}

/// Every open account, in creation order (admins).
#[utoipa::path(get, path = "/api/v1/users", params(("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = Page<UserView>), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    AppQuery(q): AppQuery<ListQuery>,
) -> ApiResult<AppJson<Page<UserView>>> {
    current_admin(&state, &admin).await?;
    let limit = paging::limit(q.limit.as_deref()).map_err(|e| ApiError::Invalid(vec![e]))?;
    let after = paging::decode_cursor::<Uuid>(q.cursor.as_deref())
        .map_err(|e| ApiError::Invalid(vec![e]))?;
    let rows = state.0.store.list_users(after, limit + 1).await?;
    let (rows, next_cursor) = paging::page_of(rows, limit, |u| u.id);
    Ok(AppJson(Page {
        items: rows.iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// One account (admins).
#[utoipa::path(get, path = "/api/v1/users/{id}", responses((status = 200, body = UserView), (status = 404)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    admin: Admin,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<UserView>> {
    current_admin(&state, &admin).await?;
    let user = state
        .0
        .store
        .user_by_id(id)
        .await?
        .filter(|u| !u.closed)
        .ok_or(ApiError::NotFound)?;
    Ok(AppJson(UserView::from(&user)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AdminChange {
    /// The complete new set of roles (`customer`, `admin`).
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
}

/// Changes roles or disables an account (admins). Disabling ends its sessions.
#[utoipa::path(patch, path = "/api/v1/users/{id}", request_body = AdminChange,
    responses((status = 200, body = UserView), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])))]
pub async fn admin_update(
    State(state): State<AppState>,
    acting: Admin,
    ctx: Option<Extension<RequestContext>>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<AdminChange>,
) -> ApiResult<AppJson<UserView>> {
    current_admin(&state, &acting).await?;
    let Admin(admin) = acting;
    if body.roles.is_none() && body.disabled.is_none() {
        return Err(ApiError::field(
            "body",
            "names no field to change (roles, disabled)",
        ));
    }
    let roles = match body.roles {
        None => None,
        Some(names) => {
            let mut roles = Vec::new();
            for name in &names {
                roles.push(match name.as_str() {
                    "customer" => Role::Customer,
                    "admin" => Role::Admin,
                    _ => return Err(ApiError::field("roles", "may hold only customer and admin")),
                });
            }
            if roles.is_empty() {
                return Err(ApiError::field("roles", "must name at least one role"));
            }
            Some(roles)
        }
    };
    // An admin cannot lock themselves out; another admin has to do that.
    if id == admin.id
        && (body.disabled == Some(true)
            || roles.as_ref().is_some_and(|r| !r.contains(&Role::Admin)))
    {
        return Err(ApiError::Conflict(
            "self-lockout",
            "You cannot disable yourself or drop your own admin role.",
        ));
    }
    let mut change = UserChange {
        user: id,
        roles: roles.map(|r| roles_to_text(&r)),
        disabled: body.disabled,
        token_generation: None,
    };
    let trace = events::trace_of(ctx.as_deref());
    let before = state
        .0
        .store
        .user_by_id(id)
        .await?
        .filter(|u| !u.closed)
        .ok_or(ApiError::NotFound)?;
    // Disabling and new roles end the user's tokens: the generation moves on.
    let disabling = body.disabled == Some(true) && !before.disabled;
    let new_roles = change.roles.clone().filter(|r| *r != before.roles);
    let generation = before.token_generation + 1;
    let mut events = Vec::new();
    if disabling {
        events.push(events::disabled(id, generation, trace.clone()));
    }
    if let Some(roles) = &new_roles {
        events.push(events::roles_changed(id, roles, generation, trace));
    }
    if !events.is_empty() {
        change.token_generation = Some(generation);
    }
    let user = state
        .0
        .store
        .change_user(admin.id, &change, Commit::now(&state.0.clock, &events))
        .await
        .map_err(concurrent_change)?
        .ok_or(ApiError::NotFound)?;
    state.0.relay.wake();
    tracing::info!(admin_id = %admin.id, user_id = %id, "User changed by an admin.");
    Ok(AppJson(UserView::from(&user)))
}
