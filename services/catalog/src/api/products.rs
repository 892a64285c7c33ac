//! Products as documents.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use emporium_auth::Admin;
use emporium_http::text;
use emporium_http::{AppJson, AppPath, FieldError, RequestContext};
use emporium_messaging::outbox::Commit;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::categories::effective_defs;
use super::{ApiError, ApiResult, AppState, rfc3339};
use crate::domain::{Money, validate_attributes};
use crate::events;
use crate::store::{ProductRecord, ProductUpdate, ProductWrite, StoreError};
use emporium_http::precondition::IfMatch;

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

/// An image URL others will fetch: `https://`, at most 2,000 bytes, no
/// `user:password@`, and a public host — not `localhost` nor an IP literal in
/// a loopback, private, link-local, unspecified or unique-local range.
fn image_url_ok(raw: &str) -> bool {
    const SCHEME: &str = "https://";
    // Stored as sent, so only printable ASCII: no spaces, line breaks, controls
    // or look-alike characters (an international host goes in its xn-- form).
    // A backslash is a slash to some parsers and not to others.
    if raw.len() > 2000
        || !raw.starts_with(SCHEME)
        || !raw.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    {
        return false;
    }
    // Userinfo is refused however the parser would read it.
    let rest = &raw[SCHEME.len()..];
    let authority = rest
        .find(['/', '\\', '?', '#'])
        .map_or(rest, |end| &rest[..end]);
    if authority.contains('@') {
        return false;
    }
    let Ok(url) = reqwest::Url::parse(raw) else {
        return false;
    };
    if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    // Names that only a local network resolves, and single labels (`intranet`).
    let local_name = [
        "localhost",
        "local",
        "internal",
        "lan",
        "home.arpa",
        "localdomain",
    ]
    .iter()
    .any(|suffix| host == *suffix || host.ends_with(&format!(".{suffix}")));
    let single_label = !host.contains('.') && !host.starts_with('[');
    if host.is_empty() || local_name || single_label {
        return false;
    }
    // The parser writes IP hosts in their canonical form (`127.1` → `127.0.0.1`, `[::1]`).
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => !internal_ip(ip),
        Err(_) => true,
    }
}

/// Loopback, private, link-local, unspecified, unique-local and the like:
/// addresses that reach the service's own network rather than the internet.
fn internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_ipv4(v4),
        IpAddr::V6(v6) => internal_ipv6(v6),
    }
}

fn internal_ipv4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 0.0.0.0/8 ("this network"), 100.64.0.0/10 (shared address space),
        // 198.18.0.0/15 (benchmarking) and 240.0.0.0/4 (reserved).
        || a == 0
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 198 && (b & 0xfe) == 18)
        || a >= 240
}

fn internal_ipv6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let o = ip.octets();
    let last_32_bits = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 (old site-local).
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        // ::/96 (IPv4-compatible, including :: and ::1).
        || segments[..6].iter().all(|s| *s == 0)
        // ::ffff:a.b.c.d (IPv4-mapped) and 64:ff9b::a.b.c.d (NAT64) carry an IPv4 address.
        || ip.to_ipv4_mapped().is_some_and(internal_ipv4)
        || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && internal_ipv4(last_32_bits))
        // 64:ff9b:1::/48 (local-use NAT64) and 2001::/32 (Teredo: the client's
        // address, obfuscated) lead wherever their operator points them.
        || segments[..3] == [0x64, 0xff9b, 1]
        || segments[..2] == [0x2001, 0]
        // 2002::/16 (6to4) carries an IPv4 address in its next 32 bits.
        || (segments[0] == 0x2002
            && internal_ipv4(Ipv4Addr::new(o[2], o[3], o[4], o[5])))
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
    if !text::shows_something(&p.name) || p.name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    } else if let Err(why) = text::refuse_hidden(&p.name) {
        errors.push(FieldError::new("name", why));
    }
    if p.description.chars().count() > 10_000 {
        errors.push(FieldError::new(
            "description",
            "must be at most 10,000 characters",
        ));
    } else if let Err(why) = text::refuse_hidden_in_prose(&p.description) {
        errors.push(FieldError::new("description", why));
    }
    let money = Money {
        amount: p.price_amount,
        currency: p.price_currency.clone(),
    };
    if let Err(e) = money.validate() {
        errors.push(FieldError::new("price", e));
    }
    if images.len() > 20 || !images.iter().all(|u| image_url_ok(u)) {
        errors.push(FieldError::new(
            "images",
            "at most 20 https:// URLs of public hosts, without user:password@",
        ));
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
        StoreError::Conflict { .. } => {
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
        .insert_product(&write, Commit::now(&state.0.clock, &[event]))
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

impl ProductChange {
    /// Whether the body names no field that can change (`{}`, or only unknown fields).
    fn is_empty(&self) -> bool {
        self.sku.is_none()
            && self.name.is_none()
            && self.description.is_none()
            && self.price.is_none()
            && self.category_id.is_none()
            && self.attributes.is_none()
            && self.images.is_none()
            && self.low_stock_below.is_none()
    }
}

/// Changes a product (admins). With `If-Match`, only if nobody changed it since (else 412);
/// `If-Match: *` only asks that it exists. A body with no known field answers 422.
#[utoipa::path(patch, path = "/api/v1/products/{id}", request_body = ProductChange,
    responses((status = 200, body = ProductView), (status = 404), (status = 409), (status = 412), (status = 422)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
    if_match: IfMatch,
    ctx: Option<Extension<RequestContext>>,
    AppJson(body): AppJson<ProductChange>,
) -> ApiResult<Response> {
    if if_match == IfMatch::Nothing {
        // A weak tag never matches under the strong comparison; saying which
        // version is current would read as if the client's were stale.
        return Err(ApiError::WeakTag);
    }
    let expected = if_match.expected_version();
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
    // Nothing to change is a mistake (a misspelt field, say), not a new version.
    if body.is_empty() {
        return Err(ApiError::field(
            "body",
            "must hold at least one of sku, name, description, price, category_id, \
             attributes, images, low_stock_below",
        ));
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
            Commit::now(&state.0.clock, &events),
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
    if state
        .0
        .store
        .delete_product(id, Commit::now(&state.0.clock, &[event]))
        .await?
    {
        state.0.relay.wake();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("product"))
    }
}
