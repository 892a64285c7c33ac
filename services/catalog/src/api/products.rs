//! Products as documents.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use emporium_auth::Admin;
use emporium_http::{AppJson, AppPath, AppQuery, FieldError, RequestContext};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::categories::effective_defs;
use super::{
    ApiError, ApiResult, AppState, Page, decode_cursor, encode_cursor, now_ms, page_limit, rfc3339,
};
use crate::domain::{Money, validate_attributes};
use crate::events;
use crate::store::{ProductRecord, ProductUpdate, ProductWrite, StoreError};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub category_id: Uuid,
    pub attributes: Value,
    pub images: Value,
    /// Sum over warehouses of `on_hand - reserved`.
    pub available: i64,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

impl From<&ProductRecord> for ProductView {
    fn from(p: &ProductRecord) -> Self {
        Self {
            id: p.id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            price: Money {
                amount: p.price_amount,
                currency: p.price_currency.clone(),
            },
            category_id: p.category_id,
            attributes: p.attributes.0.clone(),
            images: p.images.0.clone(),
            available: p.available,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
            version: p.version,
        }
    }
}

fn with_etag(p: &ProductRecord, status: StatusCode) -> Response {
    let mut response = (status, AppJson(ProductView::from(p))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", p.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// Search, price, stock, attribute filters and sorts are not built yet; asking
/// for them is refused rather than silently ignored.
const NOT_YET: &[&str] = &["q", "min_price", "max_price", "in_stock", "sort"];

/// Products, in creation order, optionally within a category and its sub-categories.
#[utoipa::path(get, path = "/api/v1/products",
    params(("category" = Option<Uuid>, Query), ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = Page<ProductView>), (status = 501, description = "search and other filters are not built yet")))]
pub async fn list(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<HashMap<String, String>>,
) -> ApiResult<AppJson<Page<ProductView>>> {
    if let Some(key) = query
        .keys()
        .find(|k| NOT_YET.contains(&k.as_str()) || k.starts_with("attr."))
    {
        return Err(ApiError::NotImplemented(format!(
            "The `{key}` parameter is not supported yet."
        )));
    }
    let limit = page_limit(match query.get("limit") {
        None => None,
        Some(l) => Some(
            l.parse()
                .map_err(|_| ApiError::field("limit", "must be a number"))?,
        ),
    })?;
    let after = decode_cursor(query.get("cursor").map(String::as_str))?;
    let path = match query.get("category") {
        None => None,
        Some(raw) => {
            let id = Uuid::parse_str(raw)
                .map_err(|_| ApiError::field("category", "must be a category id"))?;
            let category = state
                .0
                .store
                .category(id)
                .await?
                .ok_or(ApiError::NotFound("category"))?;
            Some(category.path)
        }
    };
    let mut rows = state
        .0
        .store
        .products(path.as_deref(), after, limit + 1)
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|p| encode_cursor(p.id))
    } else {
        None
    };
    Ok(AppJson(Page {
        items: rows.iter().map(ProductView::from).collect(),
        next_cursor,
    }))
}

/// One product, with what is available to sell.
#[utoipa::path(get, path = "/api/v1/products/{id}", responses((status = 200, body = ProductView), (status = 404)))]
pub async fn get_one(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Response> {
    let p = state
        .0
        .store
        .product(id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    Ok(with_etag(&p, StatusCode::OK))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProduct {
    #[serde(default)]
    pub sku: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: Option<Money>,
    pub category_id: Option<Uuid>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub images: Vec<String>,
    pub low_stock_below: Option<i64>,
}

/// Checks everything about a product but its attributes, naming each bad field.
fn check_fields(p: &ProductWrite, images: &[String]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let sku_ok = !p.sku.is_empty()
        && p.sku.len() <= 64
        && p.sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !sku_ok {
        errors.push(FieldError::new(
            "sku",
            "must be 1 to 64 of A-Z, a-z, 0-9, - _ .",
        ));
    }
    if p.name.trim().is_empty() || p.name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    if p.description.chars().count() > 10_000 {
        errors.push(FieldError::new(
            "description",
            "must be at most 10,000 characters",
        ));
    }
    let money = Money {
        amount: p.price_amount,
        currency: p.price_currency.clone(),
    };
    if let Err(e) = money.validate() {
        errors.push(FieldError::new("price", e));
    }
    if images.len() > 20
        || images
            .iter()
            .any(|u| !u.starts_with("https://") || u.len() > 2000)
    {
        errors.push(FieldError::new("images", "at most 20 https:// URLs"));
    }
    if !(0..=1_000_000).contains(&p.low_stock_below) {
        errors.push(FieldError::new(
            "low_stock_below",
            "must be between 0 and 1,000,000",
        ));
    }
    errors
}

/// Adds the category and attribute checks to `errors`, and fails if any.
async fn check_all(state: &AppState, p: &ProductWrite, images: &[String]) -> ApiResult<()> {
    let mut errors = check_fields(p, images);
    match state.0.store.category(p.category_id).await? {
        None => errors.push(FieldError::new("category_id", "is not a category")),
        Some(category) => {
            let defs = effective_defs(state.0.store.as_ref(), &category).await?;
            let attributes = p.attributes.as_object().cloned().unwrap_or_default();
            for (field, message) in validate_attributes(&defs, &attributes) {
                errors.push(FieldError::new(field, message));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

fn sku_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict => {
            ApiError::Conflict("sku-taken", "A product with this SKU exists.".into())
        }
        other => other.into(),
    }
}

/// Adds a product (admins).
#[utoipa::path(post, path = "/api/v1/products", request_body = NewProduct,
    responses((status = 201, body = ProductView), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    ctx: Option<Extension<RequestContext>>,
    AppJson(body): AppJson<NewProduct>,
) -> ApiResult<Response> {
    let mut missing = Vec::new();
    if body.price.is_none() {
        missing.push(FieldError::new("price", "is required"));
    }
    if body.category_id.is_none() {
        missing.push(FieldError::new("category_id", "is required"));
    }
    let (Some(price), Some(category_id)) = (body.price, body.category_id) else {
        return Err(ApiError::Invalid(missing));
    };
    let write = ProductWrite {
        id: Uuid::now_v7(),
        sku: body.sku,
        name: body.name.trim().to_owned(),
        description: body.description,
        price_amount: price.amount,
        price_currency: price.currency,
        category_id,
        attributes: Value::Object(body.attributes),
        images: serde_json::json!(body.images),
        low_stock_below: body.low_stock_below.unwrap_or(5),
    };
    check_all(&state, &write, &body.images).await?;
    let event = events::created(&write, ctx.map(|c| c.trace.header_value()));
    let record = state
        .0
        .store
        .insert_product(&write, now_ms(), &[event])
        .await
        .map_err(sku_taken)?;
    state.0.relay.wake();
    let mut response = with_etag(&record, StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/products/{}", record.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductChange {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub category_id: Option<Uuid>,
    /// Replaces the attributes as a whole.
    pub attributes: Option<Map<String, Value>>,
    pub images: Option<Vec<String>>,
    pub low_stock_below: Option<i64>,
}

/// `If-Match: "3"` (or `W/"3"`, or `3`) → 3.
fn expected_version(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::field("If-Match", "must be the product's version, as in its ETag"))
}

/// Changes a product (admins). With `If-Match`, only if nobody changed it since (else 412).
#[utoipa::path(patch, path = "/api/v1/products/{id}", request_body = ProductChange,
    responses((status = 200, body = ProductView), (status = 404), (status = 409), (status = 412), (status = 422)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
    ctx: Option<Extension<RequestContext>>,
    AppJson(body): AppJson<ProductChange>,
) -> ApiResult<Response> {
    let expected = expected_version(&headers)?;
    let current = state
        .0
        .store
        .product(id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(ApiError::Stale {
            current: current.version,
        });
    }
    let images: Vec<String> = match body.images {
        Some(i) => i,
        None => serde_json::from_value(current.images.0.clone()).unwrap_or_default(),
    };
    let price = body.price.unwrap_or(Money {
        amount: current.price_amount,
        currency: current.price_currency.clone(),
    });
    let write = ProductWrite {
        id,
        sku: body.sku.unwrap_or(current.sku.clone()),
        name: body
            .name
            .map(|n| n.trim().to_owned())
            .unwrap_or(current.name.clone()),
        description: body.description.unwrap_or(current.description.clone()),
        price_amount: price.amount,
        price_currency: price.currency,
        category_id: body.category_id.unwrap_or(current.category_id),
        attributes: body
            .attributes
            .map(Value::Object)
            .unwrap_or(current.attributes.0.clone()),
        images: serde_json::json!(images),
        low_stock_below: body.low_stock_below.unwrap_or(current.low_stock_below),
    };
    check_all(&state, &write, &images).await?;
    // The version check is repeated under the row lock: the read above may be stale.
    let events = events::updated(
        current.price_amount,
        &write,
        current.version + 1,
        ctx.map(|c| c.trace.header_value()),
    );
    match state
        .0
        .store
        .update_product(
            &write,
            Some(expected.unwrap_or(current.version)),
            now_ms(),
            &events,
        )
        .await
        .map_err(sku_taken)?
    {
        ProductUpdate::Done(record) => {
            state.0.relay.wake();
            Ok(with_etag(&record, StatusCode::OK))
        }
        ProductUpdate::NotFound => Err(ApiError::NotFound("product")),
        ProductUpdate::StaleVersion { current } if expected.is_some() => {
            Err(ApiError::Stale { current })
        }
        // No precondition was asked for, but the fields merged above were read
        // before someone else's change: refuse rather than overwrite it.
        ProductUpdate::StaleVersion { .. } => Err(ApiError::Conflict(
            "concurrent-change",
            "The product changed while this request ran; read it again and retry.".into(),
        )),
    }
}

/// Takes a product off sale (admins). It stays in history; its SKU stays taken.
#[utoipa::path(delete, path = "/api/v1/products/{id}", responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
    ctx: Option<Extension<RequestContext>>,
) -> ApiResult<StatusCode> {
    let event = events::deleted(id, ctx.map(|c| c.trace.header_value()));
    if state.0.store.delete_product(id, now_ms(), &[event]).await? {
        state.0.relay.wake();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("product"))
    }
}
