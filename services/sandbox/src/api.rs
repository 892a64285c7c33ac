//! The provider's routes: `/v1/tokens`, `/v1/authorizations`, the moves on
//! an authorization, and `/v1/cancellations`. Every call needs the API key;
//! every money-moving call needs an `Idempotency-Key`, except a cancellation,
//! which is idempotent by nature.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emporium_config::Secret;
use emporium_contracts::provider::{
    AmountRequest, AuthorizeRequest, CancelRequest, Cancellation, CardToken, TokenRequest,
};
use emporium_db::{SharedClock, StoreError};
use emporium_http::idempotency::IdempotencyLayer;
use emporium_http::{AppJson, AppPath, FieldError, Problem};
use uuid::Uuid;

use crate::cards::{self, Behaviour};
use crate::faults::FaultSwitch;
use crate::store::{Authorized, Move, Moved, Store};

#[derive(Clone)]
pub struct AppState(pub Arc<Sandbox>);

pub struct Sandbox {
    pub store: Store,
    pub clock: SharedClock,
    /// How long after a capture its notification is due; `None` when no
    /// webhook is set, and no notification is queued.
    pub notify_after_ms: Option<i64>,
}

/// The largest amount one call moves (minor units): far from overflow, far
/// above any real basket.
const MAX_AMOUNT: i64 = 100_000_000_000;

/// The routes behind the API key and then the faults `faults` holds (read
/// on every call, so a change applies to the next call).
pub fn router(state: AppState, api_key: &Secret, faults: FaultSwitch) -> Router {
    let keys = IdempotencyLayer::new(state.0.store.db().clone(), state.0.clock.clone());
    let money = Router::new()
        .route("/v1/authorizations", post(authorize))
        .route("/v1/authorizations/{id}/capture", post(capture))
        .route("/v1/authorizations/{id}/void", post(void))
        .route("/v1/authorizations/{id}/refunds", post(refund))
        .layer(keys);
    let api_key = Arc::new(api_key.expose().to_owned());
    Router::new()
        .route("/v1/tokens", post(tokenize))
        .route("/v1/authorizations/{id}", get(record))
        // Outside the idempotency keys: cancelling again answers the same,
        // so a retry needs no key (one sent is ignored).
        .route("/v1/cancellations", post(cancel))
        .merge(money)
        .layer(from_fn_with_state(faults, crate::faults::faults))
        .layer(from_fn_with_state(api_key, require_key))
        .with_state(state)
}

/// `Authorization: Bearer <api key>`, compared in constant time.
async fn require_key(State(key): State<Arc<String>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        // HTTP/1.1 trims a header value's ends and HTTP/2 does not: the key
        // has no spaces, so trimming makes both read the same.
        .map(str::trim)
        .unwrap_or_default();
    let ok =
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), key.as_bytes())
            .is_ok();
    if ok {
        next.run(request).await
    } else {
        Problem::unauthorized("A valid API key is required.").into_response()
    }
}

enum ApiError {
    Invalid(Vec<FieldError>),
    NotFound(&'static str),
    Declined(&'static str),
    Unavailable,
    Conflict(&'static str, String),
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Invalid(errors) => Problem::validation(errors),
            Self::NotFound(what) => Problem::not_found(format!("No such {what}.")),
            Self::Declined(code) => {
                let kind = if code == emporium_contracts::provider::decline::INSUFFICIENT_FUNDS {
                    "insufficient-funds"
                } else {
                    "card-declined"
                };
                Problem::new(StatusCode::PAYMENT_REQUIRED, kind, "The card was declined")
            }
            Self::Unavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider-unavailable",
                "The card network did not answer",
            )
            .with_detail("A transient failure; retry with the same Idempotency-Key."),
            Self::Conflict(kind, detail) => Problem::conflict(kind, detail),
            Self::Store(e) => e.into(),
        };
        problem.into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A reference is the merchant's own id for the payment; the nil UUID is
/// what authorizations made before references existed carry, so no caller
/// may name it.
fn reference_errors(reference: Uuid, errors: &mut Vec<FieldError>) {
    if reference.is_nil() {
        errors.push(FieldError::new("reference", "must not be the nil UUID"));
    }
}

fn amount_errors(amount: i64, errors: &mut Vec<FieldError>) {
    if !(1..=MAX_AMOUNT).contains(&amount) {
        errors.push(FieldError::new(
            "amount",
            format!("must be 1 to {MAX_AMOUNT}"),
        ));
    }
}

/// Tokenizes a card: what the sandbox keeps is the token, what the card
/// does, and what may be shown of it; the number is dropped with the request.
async fn tokenize(
    State(state): State<AppState>,
    AppJson(card): AppJson<TokenRequest>,
) -> ApiResult<(StatusCode, AppJson<CardToken>)> {
    let mut errors = Vec::new();
    let brand = cards::brand(&card.number);
    if brand.is_none() {
        errors.push(FieldError::new("number", "is not a card number"));
    }
    if !(1..=12).contains(&card.exp_month) {
        errors.push(FieldError::new("exp_month", "must be 1 to 12"));
    }
    if !(2000..=2099).contains(&card.exp_year) {
        errors.push(FieldError::new("exp_year", "must be a four-digit year"));
    } else if (1..=12).contains(&card.exp_month) && expired(&card, state.0.clock.now_ms()) {
        errors.push(FieldError::new("exp_year", "the card has expired"));
    }
    let cvc_ok = (3..=4).contains(&card.cvc.len()) && card.cvc.bytes().all(|b| b.is_ascii_digit());
    if !cvc_ok {
        errors.push(FieldError::new("cvc", "must be 3 or 4 digits"));
    }
    let Some(brand) = brand.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let token = CardToken {
        token: format!("tok_{}", Uuid::new_v4().simple()),
        brand: brand.to_owned(),
        last4: card.number[card.number.len() - 4..].to_owned(),
        exp_month: card.exp_month,
        exp_year: card.exp_year,
    };
    let behaviour = Behaviour::of(&card.number);
    state
        .0
        .store
        .insert_token(&token, behaviour, state.0.clock.now_ms())
        .await?;
    Ok((StatusCode::CREATED, AppJson(token)))
}

/// A card is good through the last day of its expiry month.
fn expired(card: &TokenRequest, now_ms: i64) -> bool {
    use chrono::Datelike;
    let today = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    (card.exp_year, card.exp_month) < (i64::from(today.year()), i64::from(today.month()))
}

async fn authorize(
    State(state): State<AppState>,
    AppJson(body): AppJson<AuthorizeRequest>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    amount_errors(body.amount, &mut errors);
    if !emporium_contracts::currency::is_active_currency(&body.currency) {
        errors.push(FieldError::new(
            "currency",
            "must be an active ISO 4217 currency code such as EUR",
        ));
    }
    reference_errors(body.reference, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let s = &state.0;
    match s.store.behaviour(&body.token).await? {
        None => Err(ApiError::NotFound("token")),
        Some(Behaviour::Decline(code)) => Err(ApiError::Declined(code)),
        Some(Behaviour::GatewayError) => Err(ApiError::Unavailable),
        // The late failure comes after the capture, as a notification.
        Some(Behaviour::Approve | Behaviour::LateCaptureFailure) => {
            let now = s.clock.now_ms();
            let authorized = s
                .store
                .authorize(
                    &body.token,
                    body.amount,
                    &body.currency,
                    body.reference,
                    now,
                )
                .await?;
            match authorized {
                Authorized::Done(a) => Ok((StatusCode::CREATED, AppJson(a)).into_response()),
                Authorized::ReferenceCancelled => Err(ApiError::Conflict(
                    "reference-cancelled",
                    "The reference was cancelled; nothing more is authorized under it.".into(),
                )),
            }
        }
    }
}

/// A technical cancel by the merchant's reference (Adyen's "cancel by
/// merchant reference"): what a merchant sends when it cannot tell whether
/// an authorize went through (its answer was lost). Voids what is
/// authorized under the reference and refuses any authorize under it from
/// now on, one on its way included. Idempotent by nature: cancelling again
/// answers the same.
async fn cancel(
    State(state): State<AppState>,
    AppJson(body): AppJson<CancelRequest>,
) -> ApiResult<AppJson<Cancellation>> {
    let mut errors = Vec::new();
    reference_errors(body.reference, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let s = &state.0;
    let voided = s.store.cancel(body.reference, s.clock.now_ms()).await?;
    Ok(AppJson(Cancellation {
        reference: body.reference,
        voided,
    }))
}

async fn apply(state: &AppState, id: Uuid, m: Move) -> ApiResult<Response> {
    let s = &state.0;
    let now = s.clock.now_ms();
    // A network settles a capture a while after it: its notification is due then.
    let notify_at = match m {
        Move::Capture(_) => s.notify_after_ms.map(|after| now.saturating_add(after)),
        Move::Void | Move::Refund(_) => None,
    };
    match s.store.apply(id, m, now, notify_at).await? {
        Moved::Done(a) => Ok(AppJson(a).into_response()),
        Moved::NotFound => Err(ApiError::NotFound("authorization")),
        Moved::WrongState(status) => Err(ApiError::Conflict(
            "wrong-state",
            format!("The authorization is {status:?} and cannot take this."),
        )),
        Moved::TooMuch { available } => Err(ApiError::Conflict(
            "amount-too-large",
            format!("At most {available} is left for this."),
        )),
    }
}

fn checked(amount: i64) -> ApiResult<i64> {
    let mut errors = Vec::new();
    amount_errors(amount, &mut errors);
    if errors.is_empty() {
        Ok(amount)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

async fn capture(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<AmountRequest>,
) -> ApiResult<Response> {
    apply(&state, id, Move::Capture(checked(body.amount)?)).await
}

async fn void(State(state): State<AppState>, AppPath(id): AppPath<Uuid>) -> ApiResult<Response> {
    apply(&state, id, Move::Void).await
}

async fn refund(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<AmountRequest>,
) -> ApiResult<Response> {
    let moved = apply(&state, id, Move::Refund(checked(body.amount)?)).await?;
    Ok((StatusCode::CREATED, moved).into_response())
}

async fn record(State(state): State<AppState>, AppPath(id): AppPath<Uuid>) -> ApiResult<Response> {
    match state.0.store.record(id).await? {
        Some(r) => Ok(AppJson(r).into_response()),
        None => Err(ApiError::NotFound("authorization")),
    }
}
