//! Warehouses, stock levels and the stock-movement journal (admins).

use axum::extract::State;
use axum::http::StatusCode;
use emporium_auth::Admin;
use emporium_http::{AppJson, AppPath, AppQuery, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::store::{
    Actor, MAX_ON_HAND, MovementRecord, StockChange, StockLevel, StockRecord, StockRow, StoreError,
    WarehouseRecord,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct WarehouseView {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub address: Value,
}

impl From<&WarehouseRecord> for WarehouseView {
    fn from(w: &WarehouseRecord) -> Self {
        Self {
            id: w.id,
            code: w.code.clone(),
            name: w.name.clone(),
            address: w.address.0.clone(),
        }
    }
}

/// Every warehouse (admins).
#[utoipa::path(get, path = "/api/v1/warehouses", responses((status = 200, body = [WarehouseView])), security(("bearer" = [])))]
pub async fn warehouses(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<AppJson<Vec<WarehouseView>>> {
    let all = state.0.store.warehouses().await?;
    Ok(AppJson(all.iter().map(WarehouseView::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewWarehouse {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: serde_json::Map<String, Value>,
}

/// Adds a warehouse (admins).
#[utoipa::path(post, path = "/api/v1/warehouses", request_body = NewWarehouse,
    responses((status = 201, body = WarehouseView), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn create_warehouse(
    State(state): State<AppState>,
    _admin: Admin,
    AppJson(body): AppJson<NewWarehouse>,
) -> ApiResult<(StatusCode, AppJson<WarehouseView>)> {
    let mut errors = Vec::new();
    if body.code.is_empty()
        || body.code.len() > 32
        || !body
            .code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        errors.push(FieldError::new(
            "code",
            "must be 1 to 32 of A-Z, a-z, 0-9 and -",
        ));
    }
    if !emporium_http::text::shows_something(&body.name) || body.name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    } else if let Err(why) = emporium_http::text::refuse_hidden(&body.name) {
        errors.push(FieldError::new("name", why));
    }
    // An address is a flat object of short lines: `{"line1": …, "city": …}`.
    let address_ok = body.address.len() <= 20
        && body.address.iter().all(|(key, value)| {
            key.len() <= 50
                && emporium_http::text::refuse_hidden(key).is_ok()
                && value.as_str().is_some_and(|line| {
                    line.chars().count() <= 200 && emporium_http::text::refuse_hidden(line).is_ok()
                })
        });
    if !address_ok {
        errors.push(FieldError::new(
            "address",
            "must be an object of at most 20 lines, each text of at most 200 characters without control, invisible or bidirectional characters",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let record = WarehouseRecord {
        id: Uuid::now_v7(),
        code: body.code,
        name: body.name.trim().to_owned(),
        address: Json(Value::Object(body.address)),
        created_at: state.0.clock.now_ms(),
    };
    state
        .0
        .store
        .insert_warehouse(&record)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => {
                ApiError::Conflict("code-taken", "A warehouse with this code exists.".into())
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, AppJson(WarehouseView::from(&record))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockView {
    pub warehouse_id: Uuid,
    pub on_hand: i64,
    pub reserved: i64,
}

impl From<&StockRecord> for StockView {
    fn from(s: &StockRecord) -> Self {
        Self {
            warehouse_id: s.warehouse_id,
            on_hand: s.on_hand,
            reserved: s.reserved,
        }
    }
}

/// A product's stock in each warehouse (admins).
#[utoipa::path(get, path = "/api/v1/products/{id}/stock", responses((status = 200, body = [StockView]), (status = 404)),
    security(("bearer" = [])))]
pub async fn of_product(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<Vec<StockView>>> {
    state
        .0
        .store
        .product(id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    let rows = state.0.store.stock_of(id).await?;
    Ok(AppJson(rows.iter().map(StockView::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetStock {
    pub on_hand: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Adjustment {
    pub delta: Option<i64>,
    #[serde(default)]
    pub reason: String,
}

fn actor(admin: &Admin, reason: &str) -> Actor {
    Actor {
        who: format!("user:{}", admin.0.id),
        reason: reason.to_owned(),
    }
}

/// The longest reason a stock change gives, in characters.
const MAX_REASON_CHARS: usize = 500;

fn stock_result(change: StockChange) -> ApiResult<AppJson<StockView>> {
    match change {
        StockChange::Done(row) => Ok(AppJson(StockView::from(&row))),
        StockChange::NotFound => Err(ApiError::NotFound("warehouse or product")),
        StockChange::OutOfRange => Err(ApiError::field(
            "delta",
            "would take on hand above 1,000,000,000",
        )),
        StockChange::BelowReserved { reserved } => Err(ApiError::Conflict(
            "below-reserved",
            format!("On hand cannot go below what is reserved ({reserved}) or below zero."),
        )),
    }
}

/// Sets what a warehouse holds of a product (admins); never below what is
/// reserved. The optional `reason` holds at most 500 characters.
#[utoipa::path(put, path = "/api/v1/warehouses/{wid}/stock/{pid}", request_body = SetStock,
    responses((status = 200, body = StockView), (status = 404), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn set(
    State(state): State<AppState>,
    admin: Admin,
    AppPath((warehouse, product)): AppPath<(Uuid, Uuid)>,
    AppJson(body): AppJson<SetStock>,
) -> ApiResult<AppJson<StockView>> {
    let on_hand = body
        .on_hand
        .ok_or_else(|| ApiError::field("on_hand", "is required"))?;
    if !(0..=MAX_ON_HAND).contains(&on_hand) {
        return Err(ApiError::field(
            "on_hand",
            "must be between 0 and 1,000,000,000",
        ));
    }
    let reason = match body.reason.as_deref().map(str::trim) {
        None | Some("") => "stock count",
        Some(r) if r.chars().count() > MAX_REASON_CHARS => {
            return Err(ApiError::field("reason", "must be at most 500 characters"));
        }
        Some(r) if emporium_http::text::refuse_hidden(r).is_err() => {
            return Err(ApiError::field(
                "reason",
                "must not contain control, invisible or bidirectional characters",
            ));
        }
        Some(r) => r,
    };
    let actor = actor(&admin, reason);
    stock_result(
        state
            .0
            .store
            .change_stock(
                StockRow { warehouse, product },
                StockLevel::Set(on_hand),
                &actor,
            )
            .await?,
    )
}

/// Adds to or takes from what a warehouse holds (admins), with a reason. A
/// change that would take on hand above 1,000,000,000 answers 422.
#[utoipa::path(post, path = "/api/v1/warehouses/{wid}/stock/{pid}/adjustments", request_body = Adjustment,
    responses((status = 200, body = StockView), (status = 404), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn adjust(
    State(state): State<AppState>,
    admin: Admin,
    AppPath((warehouse, product)): AppPath<(Uuid, Uuid)>,
    AppJson(body): AppJson<Adjustment>,
) -> ApiResult<AppJson<StockView>> {
    let mut errors = Vec::new();
    // `unsigned_abs`, not `abs`: i64::MIN has no positive counterpart.
    match body.delta {
        None => errors.push(FieldError::new("delta", "is required")),
        Some(d) if d == 0 || d.unsigned_abs() > MAX_ON_HAND.unsigned_abs() => {
            errors.push(FieldError::new(
                "delta",
                "must be non-zero and at most 1,000,000,000 either way",
            ))
        }
        Some(_) => {}
    }
    if body.reason.trim().is_empty() || body.reason.chars().count() > MAX_REASON_CHARS {
        errors.push(FieldError::new("reason", "must be 1 to 500 characters"));
    } else if let Err(why) = emporium_http::text::refuse_hidden(&body.reason) {
        errors.push(FieldError::new("reason", why));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let actor = actor(&admin, body.reason.trim());
    stock_result(
        state
            .0
            .store
            .change_stock(
                StockRow { warehouse, product },
                StockLevel::Adjust(body.delta.unwrap_or(0)),
                &actor,
            )
            .await?,
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementView {
    pub seq: i64,
    pub product_id: Uuid,
    pub warehouse_id: Uuid,
    pub kind: String,
    pub delta_on_hand: i64,
    pub delta_reserved: i64,
    pub on_hand_after: i64,
    pub reserved_after: i64,
    pub reason: String,
    pub actor: String,
    pub reservation_id: Option<Uuid>,
    pub at: String,
}

impl From<&MovementRecord> for MovementView {
    fn from(m: &MovementRecord) -> Self {
        Self {
            seq: m.seq,
            product_id: m.product_id,
            warehouse_id: m.warehouse_id,
            kind: m.kind.clone(),
            delta_on_hand: m.delta_on_hand,
            delta_reserved: m.delta_reserved,
            on_hand_after: m.on_hand_after,
            reserved_after: m.reserved_after,
            reason: m.reason.clone(),
            actor: m.actor.clone(),
            reservation_id: m.reservation_id,
            at: rfc3339(m.at),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct MovementQuery {
    pub product_id: Option<Uuid>,
    /// The `seq` of the last movement already seen.
    pub after: Option<i64>,
    /// Text, checked by `paging::limit_within`: a bad value is a 422 naming `limit`.
    pub limit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementPage {
    pub items: Vec<MovementView>,
    /// Pass as `after` for the next page.
    pub next_after: Option<i64>,
}

/// The append-only journal of every stock change, oldest first (admins).
#[utoipa::path(get, path = "/api/v1/stock/movements",
    params(("product_id" = Option<Uuid>, Query), ("after" = Option<i64>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = MovementPage)), security(("bearer" = [])))]
pub async fn movements(
    State(state): State<AppState>,
    _admin: Admin,
    AppQuery(q): AppQuery<MovementQuery>,
) -> ApiResult<AppJson<MovementPage>> {
    let limit = emporium_http::paging::limit_within(q.limit.as_deref(), 100, 1000)?;
    let rows = state
        .0
        .store
        .movements(q.product_id, q.after.unwrap_or(0), limit)
        .await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|m| m.seq))
        .flatten();
    Ok(AppJson(MovementPage {
        items: rows.iter().map(MovementView::from).collect(),
        next_after,
    }))
}
