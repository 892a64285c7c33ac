//! `/api/v1/orders`: placing an order (the checkout saga), reading orders and
//! their history, and moving them on (cancel, ship, deliver, refund).

use std::collections::HashSet;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use emporium_auth::{Admin, AuthUser};
use emporium_http::idempotency::{fingerprint, key_of, problems as key_problems};
use emporium_http::paging::{self, CursorKey};
use emporium_http::{AppJson, AppPath, AppQuery, FieldError, Problem, RequestContext};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cart::MAX_QUANTITY;
use super::{ApiResult, AppState, problems, visible};
use crate::domain::{Actor, Line, OrderEvent, OrderStatus, ShippingAddress, Totals, Transition};
use crate::saga::{Driven, Loaded};
use crate::store::ListFilter;
use emporium_contracts::payments::MAX_AMOUNT;

/// The most lines one order holds.
pub const MAX_ITEMS: usize = 100;

/// One product to order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemRequest {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// `{token}`: a card token from `POST /api/v1/payments/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentRequest {
    #[serde(default)]
    pub token: String,
}

/// `POST /api/v1/orders`: the items (or, without them, the cart), where to
/// ship and what to pay with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlaceOrder {
    #[serde(default)]
    pub items: Option<Vec<ItemRequest>>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub shipping_address: Option<ShippingAddress>,
    #[serde(default)]
    pub payment: Option<PaymentRequest>,
}

/// The order's id for a customer's `Idempotency-Key`: the same key from the
/// same customer is the same order, so concurrent retries meet at one
/// stream and the event store lets only one of them start it.
fn order_id(customer: Uuid, key: &str) -> Uuid {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    digest.update(b"emporium order\n");
    digest.update(customer.as_bytes());
    digest.update(key.as_bytes());
    let hash = digest.finish();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A card token as payments issues them: 1–255 visible ASCII characters.
fn is_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 255 && token.bytes().all(|b| b.is_ascii_graphic())
}

/// What a valid request orders: `(product, quantity)` items, where to, and
/// the card token.
struct Checked {
    items: Vec<(Uuid, i64)>,
    address: ShippingAddress,
    token: String,
}

/// Every field error of the request, or what it orders.
fn checked(request: &PlaceOrder, cart: Vec<(Uuid, i64)>) -> Result<Checked, Vec<FieldError>> {
    let mut errors = Vec::new();
    let items = match &request.items {
        Some(items) => {
            if items.is_empty() || items.len() > MAX_ITEMS {
                errors.push(FieldError::new("items", "must hold 1 to 100 items"));
            }
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                    errors.push(FieldError::new(
                        format!("items[{i}].quantity"),
                        "must be 1 to 100",
                    ));
                }
                if !seen.insert(item.product_id) {
                    errors.push(FieldError::new(
                        format!("items[{i}].product_id"),
                        "is listed twice; order it once with the whole quantity",
                    ));
                }
            }
            items.iter().map(|i| (i.product_id, i.quantity)).collect()
        }
        None => {
            if cart.is_empty() {
                errors.push(FieldError::new(
                    "items",
                    "the cart is empty: send items, or fill the cart first",
                ));
            }
            cart
        }
    };
    let address = match &request.shipping_address {
        None => {
            errors.push(FieldError::new("shipping_address", "is required"));
            ShippingAddress::default()
        }
        Some(address) => {
            if let Err(fields) = address.check() {
                errors.extend(fields.into_iter().map(|(f, m)| FieldError::new(f, m)));
            }
            address.normalized()
        }
    };
    let token = match &request.payment {
        None => {
            errors.push(FieldError::new("payment", "is required"));
            String::new()
        }
        Some(p) if !is_token(&p.token) => {
            errors.push(FieldError::new(
                "payment.token",
                "must be a card token from POST /api/v1/payments/tokens",
            ));
            String::new()
        }
        Some(p) => p.token.clone(),
    };
    if errors.is_empty() {
        Ok(Checked {
            items,
            address,
            token,
        })
    } else {
        Err(errors)
    }
}

/// Places an order: the checkout saga runs before the answer.
#[utoipa::path(post, path = "/api/v1/orders", request_body = PlaceOrder,
    params(("Idempotency-Key" = String, Header, description = "required; the same key and body answer the same order")),
    responses((status = 201, description = "the order, confirmed or rejected with its reason"),
              (status = 200, description = "the order this key placed before"),
              (status = 202, description = "still pending (a service it needs is slow); it ends confirmed or rejected within checkout.pending_timeout_ms"),
              (status = 400, description = "no or a malformed Idempotency-Key"),
              (status = 422, description = "invalid fields, or the key used with another body")),
    security(("bearer" = [])))]
pub async fn place(
    State(state): State<AppState>,
    ctx: RequestContext,
    user: AuthUser,
    headers: HeaderMap,
    AppJson(request): AppJson<PlaceOrder>,
) -> ApiResult<(StatusCode, AppJson<Value>)> {
    let key = key_of(&headers)
        .map_err(|_| key_problems::invalid())?
        .ok_or_else(key_problems::missing)?;
    let api = &state.0;
    let id = order_id(user.id, &key);
    // The request as it will be stored (blank optional address fields are
    // absent), so that spellings of the same request are one request.
    let mut canonical = request.clone();
    canonical.shipping_address = canonical.shipping_address.map(|a| a.normalized());
    let body = serde_json::to_vec(&canonical).unwrap_or_default();
    let request_hash = fingerprint(&Method::POST, "/api/v1/orders", &body);
    if let Some(existing) = api.saga.load(id).await? {
        return again(&state, existing, &request_hash, &ctx).await;
    }
    let from_cart = request.items.is_none();
    let cart = if from_cart {
        api.carts.lines(user.id).await?
    } else {
        Vec::new()
    };
    let Checked {
        items,
        address,
        token,
    } = checked(&request, cart).map_err(Problem::validation)?;
    let products = api
        .products(items.iter().map(|(id, _)| *id).collect(), &ctx)
        .await?;
    let mut errors = Vec::new();
    let mut lines = Vec::with_capacity(items.len());
    let mut currency: Option<&str> = None;
    for (i, (product_id, quantity)) in items.iter().enumerate() {
        let field = || format!("items[{i}].product_id");
        let Some(p) = products.get(product_id) else {
            errors.push(FieldError::new(field(), "no such product"));
            continue;
        };
        if *currency.get_or_insert(&p.price.currency) != p.price.currency {
            errors.push(FieldError::new(
                field(),
                "is priced in another currency than the first item; order each currency apart",
            ));
            continue;
        }
        match Line::new(*product_id, &p.sku, &p.name, p.price.amount, *quantity) {
            Ok(line) => lines.push(line),
            Err(e) => errors.push(FieldError::new(field(), e.to_string())),
        }
    }
    let totals = match (errors.is_empty(), currency) {
        (true, Some(currency)) => match Totals::of(&lines, 0, currency) {
            Ok(totals) if totals.total.amount > MAX_AMOUNT => {
                errors.push(FieldError::new(
                    "items",
                    format!("the order's total is more than one payment may be ({MAX_AMOUNT} minor units)"),
                ));
                None
            }
            Ok(totals) if totals.total.amount > 0 => Some(totals),
            Ok(_) => {
                errors.push(FieldError::new("items", "the order must cost something"));
                None
            }
            Err(e) => {
                errors.push(FieldError::new("items", e.to_string()));
                None
            }
        },
        _ => None,
    };
    let Some(totals) = totals.filter(|_| errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let placed = OrderEvent::Placed {
        customer_id: user.id,
        lines: lines.clone(),
        totals: totals.clone(),
        shipping_address: address,
        payment_token: token,
        request: request_hash.clone(),
    };
    // Pricing is a step of its own (promotions, shipping and tax come
    // later); today it settles the placed prices, in the same append.
    let priced = OrderEvent::Priced { lines, totals };
    metrics::counter!("orders_placed_total").increment(1);
    let Some(created) = api.saga.create(id, placed, priced, &ctx).await? else {
        // A concurrent request with the same key placed it first.
        let existing = api
            .saga
            .load(id)
            .await?
            .ok_or_else(|| Problem::not_found("No such order."))?;
        return again(&state, existing, &request_hash, &ctx).await;
    };
    let driven = api.settle(id, Some(created), &ctx).await?;
    if from_cart && driven.loaded().order.status() == OrderStatus::Confirmed {
        api.carts.clear(user.id).await?;
    }
    Ok(answer(driven, StatusCode::CREATED))
}

/// A request with a key that placed an order before: the same request gets
/// that order (once its checkout has finished), another one 422.
async fn again(
    state: &AppState,
    existing: Loaded,
    request_hash: &str,
    ctx: &RequestContext,
) -> ApiResult<(StatusCode, AppJson<Value>)> {
    if existing.order.request() != request_hash {
        return Err(key_problems::reused().into());
    }
    let driven = state.0.settle(existing.order.id(), None, ctx).await?;
    Ok(answer(driven, StatusCode::OK))
}

/// The order as the answer: `status` when its saga has finished, else 202.
fn answer(driven: Driven, status: StatusCode) -> (StatusCode, AppJson<Value>) {
    match driven {
        Driven::Finished(loaded) => {
            metrics::counter!(
                "orders_answered_total",
                "status" => loaded.order.status().as_str(),
            )
            .increment(1);
            (status, AppJson(loaded.document()))
        }
        Driven::Pending(loaded) => (StatusCode::ACCEPTED, AppJson(loaded.document())),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// One status only (`pending`, `confirmed`, …).
    pub status: Option<String>,
    /// An admin's filter: one customer's orders.
    pub customer_id: Option<Uuid>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Where a page of orders ends: the last order's time and id.
struct After(i64, Uuid);

impl CursorKey for After {
    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.0.to_be_bytes().to_vec();
        bytes.extend_from_slice(self.1.as_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 24 {
            return None;
        }
        let (at, id) = bytes.split_at(8);
        Some(Self(
            i64::from_be_bytes(at.try_into().ok()?),
            Uuid::from_slice(id).ok()?,
        ))
    }
}

/// A page of orders, newest first: the caller's own, or anyone's for an admin.
#[utoipa::path(get, path = "/api/v1/orders", params(ListQuery),
    responses((status = 200, description = "`{items: [order], next_cursor}`"), (status = 422)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    AppQuery(query): AppQuery<ListQuery>,
) -> ApiResult<AppJson<Value>> {
    let mut errors = Vec::new();
    let limit = paging::limit(query.limit.as_deref()).unwrap_or_else(|e| {
        errors.push(e);
        paging::DEFAULT_LIMIT
    });
    let after = paging::decode_cursor::<After>(query.cursor.as_deref()).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    if let Some(status) = &query.status
        && OrderStatus::parse(status).is_none()
    {
        errors.push(FieldError::new(
            "status",
            "must be pending, confirmed, rejected, cancelled, shipped, delivered, refunded or needs_attention",
        ));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let filter = ListFilter {
        customer: if user.is_admin() {
            query.customer_id
        } else {
            Some(user.id)
        },
        status: query.status,
    };
    let rows = state
        .0
        .saga
        .store
        .list(&filter, after.map(|a| (a.0, a.1)), limit + 1)
        .await?;
    let (rows, next_cursor) = paging::page_of(rows, limit, |(at, id, _)| After(*at, *id));
    let items: Vec<Value> = rows.into_iter().map(|(_, _, document)| document).collect();
    Ok(AppJson(json!({"items": items, "next_cursor": next_cursor})))
}

/// One order: the caller's own, or anyone's for an admin (who also sees the
/// customer's name and email as orders last heard them).
#[utoipa::path(get, path = "/api/v1/orders/{id}",
    responses((status = 200, description = "the order"), (status = 404, description = "none, or not yours")),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<Value>> {
    let store = &state.0.saga.store;
    let (_, mut document) = store
        .projected(id)
        .await?
        .filter(|(_, d)| user.is_admin() || d["customer_id"] == json!(user.id))
        .ok_or_else(|| Problem::not_found("No such order."))?;
    if user.is_admin() {
        let customer = match document["customer_id"].as_str().map(Uuid::parse_str) {
            Some(Ok(customer)) => state.0.carts.customer(customer).await?,
            _ => None,
        };
        document["customer"] = customer.map_or(
            Value::Null,
            |(name, email)| json!({"name": name, "email": email}),
        );
    }
    Ok(AppJson(document))
}

/// What of an event's data its history shows: not the card token, nor the
/// request's fingerprint.
fn shown(mut data: Value) -> Value {
    if let Some(fields) = data.as_object_mut() {
        fields.remove("payment_token");
        fields.remove("request");
    }
    data
}

/// The order's events, as stored: `[{sequence, type, at, data}]`.
#[utoipa::path(get, path = "/api/v1/orders/{id}/history",
    responses((status = 200, description = "the events in order"), (status = 404)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<AppJson<Value>> {
    let stream = state.0.saga.store.stream(id).await?;
    let owner = stream
        .first()
        .and_then(|first| first.json["data"]["customer_id"].as_str())
        .and_then(|c| Uuid::parse_str(c).ok());
    if owner.is_none() || !(user.is_admin() || owner == Some(user.id)) {
        return Err(Problem::not_found("No such order.").into());
    }
    let events: Vec<Value> = stream
        .into_iter()
        .map(|r| {
            let data = shown(r.json.get("data").cloned().unwrap_or(Value::Null));
            json!({
                "sequence": r.seq,
                "type": r.event_type,
                "at": emporium_http::time::rfc3339(r.at),
                "data": data,
            })
        })
        .collect();
    Ok(AppJson(Value::Array(events)))
}

/// Asks for a transition: records `event` if the order's state allows it
/// (409 if not), then drives the saga it starts.
async fn transition(
    state: &AppState,
    ctx: &RequestContext,
    user: &AuthUser,
    id: Uuid,
    verb: &str,
    event: OrderEvent,
) -> ApiResult<(StatusCode, AppJson<Value>)> {
    let api = &state.0;
    let asked = match &event {
        OrderEvent::CancelRequested { .. } => Some(Transition::Cancel),
        OrderEvent::ShipRequested { .. } => Some(Transition::Ship),
        OrderEvent::RefundRequested { .. } => Some(Transition::Refund),
        _ => None,
    };
    for _ in 0..5 {
        let mut loaded = visible(api.saga.load(id).await?, user)?;
        // The same transition under way already (a retry after a timeout or
        // a crash): wait for it rather than refuse.
        if asked.is_some() && loaded.order.in_progress() == asked {
            let driven = api.settle(id, None, ctx).await?;
            return Ok(answer(driven, StatusCode::OK));
        }
        if !loaded.order.allows(&event) {
            let status = loaded.order.status();
            let detail = format!("An order that is {status} cannot be {verb}.");
            return Err(Problem::conflict(problems::STATUS_CONFLICT, detail).into());
        }
        if api
            .saga
            .record(&mut loaded, std::slice::from_ref(&event), ctx)
            .await?
        {
            let driven = api.settle(id, None, ctx).await?;
            return Ok(answer(driven, StatusCode::OK));
        }
    }
    // Five writers in a row moved the stream first: say so rather than spin.
    Err(Problem::conflict(
        problems::STATUS_CONFLICT,
        "The order is changing; read it and try again.",
    )
    .into())
}

fn actor(user: &AuthUser) -> Actor {
    if user.is_admin() {
        Actor::admin(user.id)
    } else {
        Actor::customer(user.id)
    }
}

/// Cancels: its customer before it ships, or an admin.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel",
    responses((status = 200, description = "cancelled: the authorization voided or the payment refunded, the stock released"),
              (status = 404), (status = 409, description = "not from the order's status")),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    ctx: RequestContext,
    user: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<(StatusCode, AppJson<Value>)> {
    let event = OrderEvent::CancelRequested { by: actor(&user) };
    transition(&state, &ctx, &user, id, "cancelled", event).await
}

/// Ships (admin): the payment is captured and the reservation committed.
#[utoipa::path(post, path = "/api/v1/orders/{id}/ship",
    responses((status = 200), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn ship(
    State(state): State<AppState>,
    ctx: RequestContext,
    Admin(user): Admin,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<(StatusCode, AppJson<Value>)> {
    let event = OrderEvent::ShipRequested { by: actor(&user) };
    transition(&state, &ctx, &user, id, "shipped", event).await
}

/// Marks a shipped order delivered (admin).
#[utoipa::path(post, path = "/api/v1/orders/{id}/deliver",
    responses((status = 200), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn deliver(
    State(state): State<AppState>,
    ctx: RequestContext,
    Admin(user): Admin,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<(StatusCode, AppJson<Value>)> {
    let event = OrderEvent::Delivered { by: actor(&user) };
    transition(&state, &ctx, &user, id, "delivered", event).await
}

/// Refunds a delivered order (admin): the goods go back in stock, the
/// money back to the card.
#[utoipa::path(post, path = "/api/v1/orders/{id}/refund",
    responses((status = 200), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn refund(
    State(state): State<AppState>,
    ctx: RequestContext,
    Admin(user): Admin,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<(StatusCode, AppJson<Value>)> {
    let event = OrderEvent::RefundRequested { by: actor(&user) };
    transition(&state, &ctx, &user, id, "refunded", event).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_is_one_order_per_customer() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(order_id(a, "k1"), order_id(a, "k1"));
        assert_ne!(order_id(a, "k1"), order_id(a, "k2"));
        assert_ne!(order_id(a, "k1"), order_id(b, "k1"));
    }

    #[test]
    fn cursors_round_trip() {
        let after = After(1_700_000_000_000, Uuid::from_u128(7));
        let back = After::from_bytes(&after.to_bytes()).map(|a| (a.0, a.1));
        assert_eq!(back, Some((after.0, after.1)));
        assert!(After::from_bytes(&[1, 2, 3]).is_none());
    }

    #[test]
    fn tokens_are_visible_ascii() {
        assert!(is_token("tok_abc"));
        assert!(!is_token(""));
        assert!(!is_token("tok abc"));
        assert!(!is_token(&"t".repeat(256)));
        assert!(!is_token("tok_\u{0430}"));
    }
}
