//! Stock reservations, for the services that sell (service tokens with
//! `stock:reserve`; a restock needs `stock:adjust`). Reserving is all or
//! nothing and idempotent per id (the order id); keep, release, commit and
//! restock are idempotent too.
//!
//! A reservation is taken with a short time to live while a checkout runs
//! (the safety net if the seller disappears); once the order is confirmed a
//! keep holds its stock until the order ships (commit) or is cancelled
//! (release); a restock puts what shipped back on hand (a returned order).
//!
//! A reservation belongs to the client that made it (its token's `sub`):
//! to any other client it does not exist (404 on read, keep, release, commit
//! and restock).
//! Reserving with an id another client holds answers 409
//! `reservation-id-taken`, not 404: it is a create whose key is in use, and a
//! 404 would invite a retry that can never succeed; it tells nothing about the
//! other client's reservation beyond that the id is used.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use emporium_auth::ServiceCaller;
use emporium_auth::extract::Scope;
use emporium_contracts::reservations::{
    MAX_ITEMS, MAX_QUANTITY, Reservation as ReservationView, ReservationLine, ReservationStatus,
    ReserveRequest, problems,
};
use emporium_contracts::scopes;
use emporium_http::{AppJson, AppPath, FieldError, Problem};
use uuid::Uuid;

use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::store::{
    Actor, MovementKind, Reservation, ReservationRequest, ReserveOutcome, RestockOutcome,
    SettleOutcome,
};

/// The scope a caller needs (and a product lookup).
pub struct StockReserve;
impl Scope for StockReserve {
    const NAME: &'static str = scopes::STOCK_RESERVE;
}

/// The scope a restock needs.
pub struct StockAdjust;
impl Scope for StockAdjust {
    const NAME: &'static str = scopes::STOCK_ADJUST;
}

fn view(r: &Reservation) -> ReservationView {
    ReservationView {
        id: r.id,
        status: r.status,
        lines: r
            .lines
            .iter()
            .map(|l| ReservationLine {
                warehouse_id: l.warehouse_id,
                product_id: l.product_id,
                quantity: l.quantity,
            })
            .collect(),
        expires_at: rfc3339(r.expires_at),
    }
}

fn actor<S>(caller: &ServiceCaller<S>, reason: &str) -> Actor {
    Actor {
        who: format!("service:{}", caller.client_id),
        reason: reason.to_owned(),
    }
}

/// Reserves every item or nothing, from as few warehouses as possible.
#[utoipa::path(post, path = "/internal/v1/reservations", request_body = ReserveRequest,
    responses((status = 201, body = ReservationView), (status = 200, body = ReservationView, description = "the same request again"),
              (status = 409, description = "out of stock, or the id was used for other items or by another client"), (status = 422)),
    security(("bearer" = [])))]
pub async fn reserve(
    State(state): State<AppState>,
    caller: ServiceCaller<StockReserve>,
    AppJson(body): AppJson<ReserveRequest>,
) -> ApiResult<Response> {
    let mut items = BTreeMap::new();
    let mut errors = Vec::new();
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        errors.push(FieldError::new(
            "items",
            format!("must hold 1 to {MAX_ITEMS} items"),
        ));
    }
    for (i, item) in body.items.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            errors.push(FieldError::new(
                format!("items[{i}].quantity"),
                "must be between 1 and 10,000",
            ));
        }
        if items.insert(item.product_id, item.quantity).is_some() {
            errors.push(FieldError::new(
                format!("items[{i}].product_id"),
                "appears twice",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let expires_at = state.0.clock.now_ms() + state.0.reservation_ttl.as_millis() as i64;
    let outcome = state
        .0
        .store
        .reserve(
            &ReservationRequest {
                id: body.id,
                client: &caller.client_id,
                items: &items,
                expires_at,
            },
            &actor(&caller, "reservation"),
        )
        .await?;
    let labels = |outcome: &'static str| [("outcome", outcome)];
    match outcome {
        ReserveOutcome::Created(r) => {
            metrics::counter!("stock_reservations_total", &labels("created")).increment(1);
            Ok((StatusCode::CREATED, AppJson(view(&r))).into_response())
        }
        ReserveOutcome::Existing(r) => {
            metrics::counter!("stock_reservations_total", &labels("repeated")).increment(1);
            Ok((StatusCode::OK, AppJson(view(&r))).into_response())
        }
        ReserveOutcome::Mismatch => Err(ApiError::Conflict(
            problems::MISMATCH,
            "This reservation id was already used for other items.".into(),
        )),
        ReserveOutcome::Taken => Err(ApiError::Conflict(
            problems::ID_TAKEN,
            "This reservation id is in use by another client.".into(),
        )),
        ReserveOutcome::OutOfStock(products) => {
            metrics::counter!("stock_reservations_total", &labels("out_of_stock")).increment(1);
            let detail = format!(
                "Not enough stock of: {}.",
                products
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(Problem::conflict(problems::OUT_OF_STOCK, detail).into_response())
        }
        ReserveOutcome::UnknownProducts(products) => Err(ApiError::Invalid(
            products
                .iter()
                .map(|p| FieldError::new("items", format!("no product {p}")))
                .collect(),
        )),
    }
}

/// The caller's reservation `id`: another client's answers 404, as a missing one.
/// (The owner never changes, so checking before a settle cannot race.)
async fn owned<S>(state: &AppState, caller: &ServiceCaller<S>, id: Uuid) -> ApiResult<Reservation> {
    state
        .0
        .store
        .reservation(id)
        .await?
        .filter(|r| !r.client_id.is_empty() && r.client_id == caller.client_id)
        .ok_or(ApiError::NotFound("reservation"))
}

/// One reservation (of the caller's).
#[utoipa::path(get, path = "/internal/v1/reservations/{id}",
    responses((status = 200, body = ReservationView), (status = 404)), security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: ServiceCaller<StockReserve>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<ReservationView>> {
    let r = owned(&state, &caller, id).await?;
    Ok(AppJson(view(&r)))
}

/// The answer to a step whose success leaves the reservation `wanted`
/// (`active` for a keep): the reservation, or why not.
async fn settled(
    state: &AppState,
    id: Uuid,
    outcome: SettleOutcome,
    wanted: ReservationStatus,
) -> ApiResult<AppJson<ReservationView>> {
    match outcome {
        SettleOutcome::NotFound => return Err(ApiError::NotFound("reservation")),
        SettleOutcome::ExpiredNow => {
            let step = if wanted == ReservationStatus::Active {
                "kept"
            } else {
                "committed"
            };
            return Err(ApiError::Conflict(
                problems::EXPIRED,
                format!("The reservation expired before it was {step}; its stock was released."),
            ));
        }
        // Asking again for what already happened is a retry, not an error.
        SettleOutcome::AlreadySettled(status) if status != wanted => {
            return Err(ApiError::Conflict(
                problems::SETTLED,
                format!("The reservation is already {status}."),
            ));
        }
        _ => {}
    }
    let r = state
        .0
        .store
        .reservation(id)
        .await?
        .ok_or(ApiError::NotFound("reservation"))?;
    Ok(AppJson(view(&r)))
}

/// Gives the reserved stock back (the order was rejected or cancelled).
#[utoipa::path(post, path = "/internal/v1/reservations/{id}/release",
    responses((status = 200, body = ReservationView), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    caller: ServiceCaller<StockReserve>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<ReservationView>> {
    owned(&state, &caller, id).await?;
    let outcome = state
        .0
        .store
        .release(
            id,
            MovementKind::Release,
            &actor(&caller, "released by the order"),
        )
        .await?;
    settled(&state, id, outcome, ReservationStatus::Released).await
}

/// The order shipped: reserved stock leaves the warehouse (`on_hand` and `reserved` both fall).
/// Past its `expires_at` a reservation is never committed: 409 `reservation-expired`,
/// and its stock is released as the sweeper would.
#[utoipa::path(post, path = "/internal/v1/reservations/{id}/commit",
    responses((status = 200, body = ReservationView), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn commit(
    State(state): State<AppState>,
    caller: ServiceCaller<StockReserve>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<ReservationView>> {
    owned(&state, &caller, id).await?;
    let outcome = state.0.store.commit(id, &actor(&caller, "shipped")).await?;
    settled(&state, id, outcome, ReservationStatus::Committed).await
}

/// The order is confirmed: the reservation's stock stays held until the
/// order ships (commit) or is cancelled (release), its `expires_at` moved to
/// now plus `reservations.kept_ttl_secs` (never earlier than it was).
/// Repeatable: keeping a kept reservation answers it again. Past its
/// `expires_at` it is never kept: 409 `reservation-expired`, and its stock is
/// released as the sweeper would; one released, expired, committed or
/// restocked → 409 `reservation-settled`.
#[utoipa::path(post, path = "/internal/v1/reservations/{id}/keep",
    responses((status = 200, body = ReservationView), (status = 404),
              (status = 409, description = "`reservation-expired`, or `reservation-settled` when no longer active")),
    security(("bearer" = [])))]
pub async fn keep(
    State(state): State<AppState>,
    caller: ServiceCaller<StockReserve>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<ReservationView>> {
    owned(&state, &caller, id).await?;
    let until = state.0.clock.now_ms() + state.0.kept_reservation_ttl.as_millis() as i64;
    let outcome = state
        .0
        .store
        .keep(id, until, &actor(&caller, "order confirmed"))
        .await?;
    settled(&state, id, outcome, ReservationStatus::Active).await
}

/// The goods of a committed reservation came back (a returned order): each
/// line's quantity is back on hand in the warehouse it left, journaled as
/// `restock`, and the reservation is `restocked`. Needs `stock:adjust`.
/// Repeatable: a restocked reservation is answered as it is, and nothing
/// moves again. One that never shipped (active, released, expired) → 409
/// `reservation-not-committed`.
#[utoipa::path(post, path = "/internal/v1/reservations/{id}/restock",
    responses((status = 200, body = ReservationView), (status = 404),
              (status = 409, description = "`reservation-not-committed`: it never shipped")),
    security(("bearer" = [])))]
pub async fn restock(
    State(state): State<AppState>,
    caller: ServiceCaller<StockAdjust>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<ReservationView>> {
    owned(&state, &caller, id).await?;
    let outcome = state
        .0
        .store
        .restock(id, &actor(&caller, "returned"))
        .await?;
    match outcome {
        RestockOutcome::NotFound => return Err(ApiError::NotFound("reservation")),
        RestockOutcome::NotCommitted(status) => {
            return Err(ApiError::Conflict(
                problems::NOT_COMMITTED,
                format!("The reservation is {status}: nothing of it left a warehouse."),
            ));
        }
        RestockOutcome::Done => {
            metrics::counter!("stock_reservations_restocked_total").increment(1);
        }
        RestockOutcome::AlreadyRestocked => {}
    }
    let r = state
        .0
        .store
        .reservation(id)
        .await?
        .ok_or(ApiError::NotFound("reservation"))?;
    Ok(AppJson(view(&r)))
}
