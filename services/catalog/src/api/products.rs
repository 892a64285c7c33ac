//! Products as documents.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
use super::{ApiError, ApiResult, AppState, now_ms, page_limit, rfc3339};
use crate::domain::{AttributeDef, Money, validate_attributes};
use crate::events;
use crate::store::{ProductQuery, ProductRecord, ProductUpdate, ProductWrite, Sort, StoreError};

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

/// A page of products with facet counts: for every filterable attribute, how
/// many of all the matching products have each value.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    pub next_cursor: Option<String>,
    pub facets: BTreeMap<String, BTreeMap<String, u64>>,
}

/// How deep offset paging may go.
const MAX_OFFSET: i64 = 10_000;

fn encode_offset(offset: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_offset(cursor: Option<&String>) -> ApiResult<i64> {
    let Some(c) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(0);
    };
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse::<i64>().ok()))
        .filter(|n| (0..=MAX_OFFSET).contains(n))
        .ok_or_else(|| ApiError::field("cursor", "is not a cursor"))
}

fn price_param(
    query: &HashMap<String, String>,
    key: &str,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    let raw = query.get(key)?;
    match raw.parse::<i64>() {
        Ok(n) if n >= 0 => Some(n),
        _ => {
            errors.push(FieldError::new(
                key,
                "must be a whole number of minor units, 0 or more",
            ));
            None
        }
    }
}

/// `attr.colour=red` → ("colour", "red" typed as JSON where it reads as one, "red").
fn attribute_filter(name: &str, raw: &str) -> Option<(String, Value, String)> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return None;
    }
    let typed = match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(|n| {
                if raw.contains('.') {
                    Value::Number(n)
                } else {
                    raw.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::Number(n))
                }
            })
            .unwrap_or_else(|| Value::String(raw.to_owned())),
    };
    Some((name.to_owned(), typed, raw.to_owned()))
}

/// Products: full-text search ranked by relevance (`q`), filters (`category`
/// with its sub-categories, `min_price`, `max_price`, `in_stock`,
/// `attr.<name>=<value>`), `sort` (`relevance`, `price`, `-price`, `newest`),
/// paging by `cursor` and `limit`, and facet counts.
#[utoipa::path(get, path = "/api/v1/products",
    params(("q" = Option<String>, Query), ("category" = Option<Uuid>, Query), ("min_price" = Option<i64>, Query),
           ("max_price" = Option<i64>, Query), ("in_stock" = Option<bool>, Query), ("sort" = Option<String>, Query),
           ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = ProductPage), (status = 404, description = "unknown category"), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<HashMap<String, String>>,
) -> ApiResult<AppJson<ProductPage>> {
    let mut errors = Vec::new();
    let mut q = ProductQuery {
        text: query
            .get("q")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
        ..ProductQuery::default()
    };
    if q.text.as_ref().is_some_and(|t| t.chars().count() > 200) {
        errors.push(FieldError::new("q", "must be at most 200 characters"));
    }
    q.min_price = price_param(&query, "min_price", &mut errors);
    q.max_price = price_param(&query, "max_price", &mut errors);
    q.in_stock = match query.get("in_stock").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errors.push(FieldError::new("in_stock", "must be true or false"));
            false
        }
    };
    q.sort = match query.get("sort").map(String::as_str) {
        None if q.text.is_some() => Sort::Relevance,
        None | Some("newest") => Sort::Newest,
        Some("relevance") => Sort::Relevance,
        Some("price") => Sort::Price,
        Some("-price") => Sort::PriceDesc,
        Some(_) => {
            errors.push(FieldError::new(
                "sort",
                "must be relevance, price, -price or newest",
            ));
            Sort::Newest
        }
    };
    for (key, value) in &query {
        if let Some(name) = key.strip_prefix("attr.") {
            match attribute_filter(name, value) {
                Some(filter) => q.attributes.push(filter),
                None => errors.push(FieldError::new(key.clone(), "is not an attribute name")),
            }
        }
    }
    q.attributes.sort_by(|a, b| a.0.cmp(&b.0));
    q.limit = match query.get("limit").map(|l| l.parse::<i64>()) {
        None => page_limit(None)?,
        Some(Ok(l)) => page_limit(Some(l))?,
        Some(Err(_)) => return Err(ApiError::field("limit", "must be a number")),
    };
    q.offset = decode_offset(query.get("cursor"))?;
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    if let Some(raw) = query.get("category") {
        let id = Uuid::parse_str(raw)
            .map_err(|_| ApiError::field("category", "must be a category id"))?;
        let category = state
            .0
            .store
            .category(id)
            .await?
            .ok_or(ApiError::NotFound("category"))?;
        q.category_path = Some(category.path);
    }

    let mut page = q.clone();
    page.limit = q.limit + 1;
    let mut rows = state.0.store.search(&page).await?;
    let next_cursor = if rows.len() as i64 > q.limit && q.offset + q.limit <= MAX_OFFSET {
        rows.truncate(q.limit as usize);
        Some(encode_offset(q.offset + q.limit))
    } else {
        rows.truncate(q.limit as usize);
        None
    };
    let facets = facets(&state, &q).await?;
    Ok(AppJson(ProductPage {
        items: rows.iter().map(ProductView::from).collect(),
        next_cursor,
        facets,
    }))
}

/// Counts, over every match, the values of each filterable attribute.
async fn facets(
    state: &AppState,
    q: &ProductQuery,
) -> ApiResult<BTreeMap<String, BTreeMap<String, u64>>> {
    let filterable: BTreeSet<String> = state
        .0
        .store
        .categories()
        .await?
        .iter()
        .flat_map(|c| {
            serde_json::from_value::<Vec<AttributeDef>>(c.attributes.0.clone()).unwrap_or_default()
        })
        .filter(|d| d.filterable)
        .map(|d| d.name)
        .collect();
    let mut facets: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    if filterable.is_empty() {
        return Ok(facets);
    }
    for attributes in state.0.store.search_attributes(q).await? {
        let Value::Object(map) = attributes else {
            continue;
        };
        for (name, value) in map {
            if !filterable.contains(&name) {
                continue;
            }
            let label = match value {
                Value::String(s) => s,
                Value::Null => continue,
                other => other.to_string(),
            };
            *facets.entry(name).or_default().entry(label).or_default() += 1;
        }
    }
    Ok(facets)
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
