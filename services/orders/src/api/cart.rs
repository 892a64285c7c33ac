//! `/api/v1/cart`: each customer's cart, priced by the catalog as it is now.

use axum::extract::State;
use axum::http::StatusCode;
use emporium_auth::AuthUser;
use emporium_http::{AppJson, AppPath, FieldError, Problem, RequestContext};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiResult, AppState};
use crate::store::{CartChange, MAX_LINES};

/// The most of one product a cart line (and an order line) holds.
pub const MAX_QUANTITY: i64 = 100;

/// `{quantity}`: 1 to 100 sets the line, 0 removes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetQuantity {
    pub quantity: i64,
}

/// One cart line as the catalog prices it now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartLine {
    pub product_id: Uuid,
    pub quantity: i64,
    /// Absent when the product is gone.
    pub name: Option<String>,
    /// `{amount, currency}`, the catalog's price now; absent when the product is gone.
    pub unit_price: Option<Value>,
    /// `unit_price × quantity`.
    pub line_total: Option<Value>,
    /// How many the catalog has on sale now.
    pub available: i64,
    /// `product_unavailable` (deleted or unknown: it cannot be ordered) or
    /// `insufficient_stock` (fewer on sale than the line asks for).
    pub problem: Option<&'static str>,
}

/// The cart answer: its lines and what they cost together (absent when the
/// lines are priced in more than one currency).
pub async fn cart_view(state: &AppState, customer: Uuid, ctx: &RequestContext) -> ApiResult<Value> {
    let lines = state.0.carts.lines(customer).await?;
    let ids = lines.iter().map(|(id, _)| *id).collect();
    let products = state.0.products(ids, ctx).await?;
    let mut items = Vec::with_capacity(lines.len());
    let mut currencies = std::collections::BTreeSet::new();
    let mut total: i64 = 0;
    for (product_id, quantity) in lines {
        let item = match products.get(&product_id) {
            None => CartLine {
                product_id,
                quantity,
                name: None,
                unit_price: None,
                line_total: None,
                available: 0,
                problem: Some("product_unavailable"),
            },
            Some(p) => {
                let line = p.price.amount.saturating_mul(quantity);
                total = total.saturating_add(line);
                currencies.insert(p.price.currency.clone());
                CartLine {
                    product_id,
                    quantity,
                    name: Some(p.name.clone()),
                    unit_price: Some(
                        json!({"amount": p.price.amount, "currency": p.price.currency}),
                    ),
                    line_total: Some(json!({"amount": line, "currency": p.price.currency})),
                    available: p.available,
                    problem: (p.available < quantity).then_some("insufficient_stock"),
                }
            }
        };
        items.push(item);
    }
    let total = match currencies.len() {
        0 => None,
        1 => currencies
            .first()
            .map(|currency| json!({"amount": total, "currency": currency})),
        _ => None,
    };
    Ok(json!({"items": items, "total": total}))
}

#[utoipa::path(get, path = "/api/v1/cart",
    responses((status = 200, description = "`{items: [{product_id, quantity, name, unit_price, line_total, available, problem}], total}`")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    user: AuthUser,
) -> ApiResult<AppJson<Value>> {
    Ok(AppJson(cart_view(&state, user.id, &ctx).await?))
}

#[utoipa::path(put, path = "/api/v1/cart/items/{product_id}", request_body = SetQuantity,
    responses((status = 200, description = "the cart"), (status = 404, description = "no such product"),
              (status = 422, description = "quantity not 0 to 100, or a 101st line")),
    security(("bearer" = [])))]
pub async fn set_item(
    State(state): State<AppState>,
    ctx: RequestContext,
    user: AuthUser,
    AppPath(product_id): AppPath<Uuid>,
    AppJson(body): AppJson<SetQuantity>,
) -> ApiResult<AppJson<Value>> {
    if !(0..=MAX_QUANTITY).contains(&body.quantity) {
        let error = FieldError::new("quantity", "must be 0 (remove) to 100");
        return Err(Problem::validation(vec![error]).into());
    }
    if body.quantity > 0 && state.0.products(vec![product_id], &ctx).await?.is_empty() {
        return Err(Problem::not_found("No such product.").into());
    }
    let now = state.0.saga.clock.now_ms();
    let change = state
        .0
        .carts
        .set(user.id, product_id, body.quantity, now)
        .await?;
    if change == CartChange::Full {
        let error = FieldError::new(
            "product_id",
            format!("the cart holds {MAX_LINES} lines already"),
        );
        return Err(Problem::validation(vec![error]).into());
    }
    Ok(AppJson(cart_view(&state, user.id, &ctx).await?))
}

#[utoipa::path(delete, path = "/api/v1/cart", responses((status = 204)), security(("bearer" = [])))]
pub async fn clear(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    state.0.carts.clear(user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
