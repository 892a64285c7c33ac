//! `/api/v1/payments`: card tokens (anyone), a payment by its order (its
//! customer or an admin), an admin's refund, and the ledger's verification.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use emporium_auth::{Admin, AuthUser, MaybeUser};
use emporium_contracts::payments::{Payment, RefundPayment};
use emporium_contracts::provider::{CardToken, TokenRequest};
use emporium_http::{AppJson, AppPath, AppQuery, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiResult, AppState, ClientAddress, missing, refund_key};
use crate::service::PayError;

/// `{number, exp_month, exp_year, cvc}`.
#[derive(Deserialize, ToSchema)]
pub struct CardRequest {
    pub number: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvc: String,
}

/// Tokenizes a card: checked here (Luhn, brand, expiry, CVC), kept by the
/// provider; payments keeps the token, brand, last four and expiry. The
/// number and CVC go no further than this call.
#[utoipa::path(post, path = "/api/v1/payments/tokens", request_body = CardRequest,
    responses((status = 201, description = "the token, brand, last4 and expiry"), (status = 422),
              (status = 429, description = "too many cards from this customer or address; see Retry-After")))]
pub async fn tokenize(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    client: ClientAddress,
    AppJson(card): AppJson<CardRequest>,
) -> ApiResult<(StatusCode, AppJson<CardToken>)> {
    // Card testing (trying stolen numbers one after another) meets a limit
    // per customer, or per address for anonymous callers.
    let key = match &user {
        Some(u) => format!("user:{}", u.id),
        None => format!("addr:{}", client.0),
    };
    if let Err(wait) = state.0.tokenizations.check(&key) {
        metrics::counter!("payment_tokens_throttled_total").increment(1);
        return Err(Problem::too_many_requests(wait.as_secs() + 1).into());
    }
    let request = TokenRequest {
        number: card.number,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvc: card.cvc,
    };
    let owner = user.map(|u| u.id);
    let token = state.0.payments.tokenize(&request, owner).await?;
    Ok((StatusCode::CREATED, AppJson(token)))
}

#[derive(Deserialize, IntoParams)]
pub struct ByOrder {
    pub order_id: Option<Uuid>,
}

/// The payment of an order: its customer's or, for an admin, anyone's.
#[utoipa::path(get, path = "/api/v1/payments", params(ByOrder),
    responses((status = 200, body = Payment), (status = 404, description = "none, or not yours")),
    security(("bearer" = [])))]
pub async fn by_order(
    State(state): State<AppState>,
    user: AuthUser,
    AppQuery(query): AppQuery<ByOrder>,
) -> ApiResult<AppJson<Payment>> {
    let order_id = query.order_id.ok_or_else(|| missing("order_id"))?;
    let payments = &state.0.payments;
    let intent = payments
        .store
        .by_order(order_id)
        .await?
        .filter(|i| user.is_admin() || i.customer_id == user.id)
        .ok_or(PayError::NotFound)?;
    Ok(AppJson(payments.view(intent).await?))
}

/// Refunds part or all of what is captured (admin). Needs an
/// `Idempotency-Key`: the same key again refunds nothing more.
#[utoipa::path(post, path = "/api/v1/payments/{id}/refund", request_body = RefundPayment,
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    responses((status = 200, body = Payment), (status = 409, description = "more than captured, or not refundable"),
              (status = 503, description = "the provider did not answer; retry with the same key")),
    security(("bearer" = [])))]
pub async fn refund(
    State(state): State<AppState>,
    Admin(admin): Admin,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
    AppJson(body): AppJson<RefundPayment>,
) -> ApiResult<AppJson<Payment>> {
    let key = refund_key(&headers)?;
    let payments = &state.0.payments;
    let intent = payments.store.by_id(id).await?.ok_or(PayError::NotFound)?;
    let key = format!("refund:user:{}:{key}", admin.id);
    let after = payments.refund(&intent, key, body.amount).await?;
    Ok(AppJson(payments.view(after).await?))
}

/// What `GET /api/v1/payments/ledger/verify` answers.
#[derive(Serialize, ToSchema)]
pub struct LedgerCheck {
    pub entries: i64,
    pub valid: bool,
    /// The first entry that does not hold: its sequence number and why.
    pub first_bad_entry: Option<BadEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct BadEntry {
    pub seq: i64,
    pub reason: &'static str,
}

/// Recomputes the ledger's hash chain and every payment's balances (admin).
#[utoipa::path(get, path = "/api/v1/payments/ledger/verify",
    responses((status = 200, body = LedgerCheck)), security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<AppJson<LedgerCheck>> {
    let found = state.0.payments.store.ledger().verify().await?;
    // For the alert on a broken chain: the last check's result and time.
    metrics::gauge!("payments_ledger_valid").set(if found.valid { 1.0 } else { 0.0 });
    metrics::gauge!("payments_ledger_entries").set(found.entries as f64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!("payments_ledger_verified_timestamp_seconds").set(now);
    Ok(AppJson(LedgerCheck {
        entries: found.entries,
        valid: found.valid,
        first_bad_entry: found
            .first_bad_entry
            .map(|(seq, reason)| BadEntry { seq, reason }),
    }))
}
