//! The provider's routes: `/v1/tokens`, `/v1/authorizations` and the moves
//! on an authorization. Every call needs the API key; every money-moving call
//! needs an `Idempotency-Key`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emporium_contracts::provider::{AmountRequest, AuthorizeRequest, CardToken, TokenRequest};
use emporium_db::{SharedClock, StoreError};
use emporium_http::idempotency::IdempotencyLayer;
use emporium_http::{AppJson, AppPath, FieldError, Problem};
use uuid::Uuid;

use crate::cards::{self, Behaviour};
use crate::config::ProviderSettings;
use crate::store::{Move, Moved, Store};

#[derive(Clone)]
pub struct AppState(pub Arc<Sandbox>);

pub struct Sandbox {
    pub store: Store,
    pub clock: SharedClock,
}

/// The largest amount one call moves (minor units): far from overflow, far
/// above any real basket.
const MAX_AMOUNT: i64 = 100_000_000_000;

pub fn router(state: AppState, settings: ProviderSettings) -> Router {
    let keys = IdempotencyLayer::new(state.0.store.db().clone(), state.0.clock.clone());
    let money = Router::new()
        .route("/v1/authorizations", post(authorize))
        .route("/v1/authorizations/{id}/capture", post(capture))
        .route("/v1/authorizations/{id}/void", post(void))
        .route("/v1/authorizations/{id}/refunds", post(refund))
        .layer(keys);
    let api_key = Arc::new(settings.api_key.expose().to_owned());
    Router::new()
        .route("/v1/tokens", post(tokenize))
        .route("/v1/authorizations/{id}", get(record))
        .merge(money)
        .layer(from_fn_with_state(settings, crate::faults::faults))
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
    let currency_ok =
        body.currency.len() == 3 && body.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        errors.push(FieldError::new("currency", "must be three capital letters"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let s = &state.0;
    match s.store.behaviour(&body.token).await? {
        None => Err(ApiError::NotFound("token")),
        Some(Behaviour::Decline(code)) => Err(ApiError::Declined(code)),
        Some(Behaviour::GatewayError) => Err(ApiError::Unavailable),
        Some(Behaviour::Approve) => {
            let now = s.clock.now_ms();
            let a = s
                .store
                .authorize(&body.token, body.amount, &body.currency, now)
                .await?;
            Ok((StatusCode::CREATED, AppJson(a)).into_response())
        }
    }
}

async fn apply(state: &AppState, id: Uuid, m: Move) -> ApiResult<Response> {
    match state.0.store.apply(id, m, state.0.clock.now_ms()).await? {
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
