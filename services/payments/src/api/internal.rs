//! `/internal/v1/payments`: the orders service authorizes, captures, voids
//! and refunds an order's payment (service tokens with the `payments:*`
//! scopes). A payment belongs to the client that authorized it: to any
//! other client it does not exist (404).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use emporium_auth::ServiceCaller;
use emporium_auth::extract::Scope;
use emporium_contracts::payments::{AuthorizePayment, CapturePayment, Payment, RefundPayment};
use emporium_contracts::scopes;
use emporium_http::{AppJson, AppPath};
use uuid::Uuid;

use super::{ApiResult, AppState, refund_key};
use crate::service::PayError;
use crate::store::Intent;

macro_rules! scope {
    ($($name:ident => $scope:expr),* $(,)?) => {
        $(pub struct $name;
        impl Scope for $name {
            const NAME: &'static str = $scope;
        })*
    };
}

scope! {
    Authorize => scopes::PAYMENTS_AUTHORIZE,
    Capture => scopes::PAYMENTS_CAPTURE,
    Void => scopes::PAYMENTS_VOID,
    Refund => scopes::PAYMENTS_REFUND,
}

/// The order's payment, if this client made it.
async fn owned(state: &AppState, client_id: &str, order_id: Uuid) -> ApiResult<Intent> {
    let found = state.0.payments.store.by_order(order_id).await?;
    Ok(found
        .filter(|i| i.client_id == client_id)
        .ok_or(PayError::NotFound)?)
}

async fn answer(state: &AppState, status: StatusCode, intent: Intent) -> ApiResult<Response> {
    let view = state.0.payments.view(intent).await?;
    Ok((status, AppJson(view)).into_response())
}

/// Authorizes the order's payment: 201 with the payment (`authorized`, or
/// `failed` with its reason); the same request again answers 200 with the
/// payment as it stands.
#[utoipa::path(post, path = "/internal/v1/payments", request_body = AuthorizePayment,
    responses((status = 201, body = Payment), (status = 200, body = Payment, description = "the same request again"),
              (status = 409, description = "the order has another payment"), (status = 422)),
    security(("bearer" = [])))]
pub async fn authorize(
    State(state): State<AppState>,
    caller: ServiceCaller<Authorize>,
    AppJson(body): AppJson<AuthorizePayment>,
) -> ApiResult<Response> {
    let (created, intent) = state.0.payments.authorize(&caller.client_id, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    answer(&state, status, intent).await
}

#[utoipa::path(get, path = "/internal/v1/payments/{order_id}", params(("order_id" = Uuid, Path)),
    responses((status = 200, body = Payment), (status = 404)), security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: ServiceCaller<Authorize>,
    AppPath(order_id): AppPath<Uuid>,
) -> ApiResult<Response> {
    let intent = owned(&state, &caller.client_id, order_id).await?;
    answer(&state, StatusCode::OK, intent).await
}

/// Captures everything authorized (`{}`), or `amount` of it (the rest is released).
#[utoipa::path(post, path = "/internal/v1/payments/{order_id}/capture", request_body = CapturePayment,
    params(("order_id" = Uuid, Path)),
    responses((status = 200, body = Payment), (status = 409), (status = 503)), security(("bearer" = [])))]
pub async fn capture(
    State(state): State<AppState>,
    caller: ServiceCaller<Capture>,
    AppPath(order_id): AppPath<Uuid>,
    AppJson(body): AppJson<CapturePayment>,
) -> ApiResult<Response> {
    let intent = owned(&state, &caller.client_id, order_id).await?;
    let amount = body.amount;
    let after = state.0.payments.capture(&intent, amount).await?;
    answer(&state, StatusCode::OK, after).await
}

#[utoipa::path(post, path = "/internal/v1/payments/{order_id}/void", params(("order_id" = Uuid, Path)),
    responses((status = 200, body = Payment), (status = 409), (status = 503)), security(("bearer" = [])))]
pub async fn void(
    State(state): State<AppState>,
    caller: ServiceCaller<Void>,
    AppPath(order_id): AppPath<Uuid>,
) -> ApiResult<Response> {
    let intent = owned(&state, &caller.client_id, order_id).await?;
    let after = state.0.payments.void(&intent).await?;
    answer(&state, StatusCode::OK, after).await
}

/// Refunds `amount` of what is captured, once per `Idempotency-Key`.
#[utoipa::path(post, path = "/internal/v1/payments/{order_id}/refunds", request_body = RefundPayment,
    params(("order_id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    responses((status = 200, body = Payment), (status = 409), (status = 503)), security(("bearer" = [])))]
pub async fn refund(
    State(state): State<AppState>,
    caller: ServiceCaller<Refund>,
    AppPath(order_id): AppPath<Uuid>,
    headers: HeaderMap,
    AppJson(body): AppJson<RefundPayment>,
) -> ApiResult<Response> {
    let key = refund_key(&headers)?;
    let intent = owned(&state, &caller.client_id, order_id).await?;
    let key = format!("refund:client:{}:{key}", caller.client_id);
    let after = state.0.payments.refund(&intent, key, body.amount).await?;
    answer(&state, StatusCode::OK, after).await
}
