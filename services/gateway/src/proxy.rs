//! Forwarding public requests to the service that owns the path.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use emporium_http::middleware::{REQUEST_ID, TRACEPARENT};
use emporium_http::{Problem, RequestContext};

/// Where each service lives, and the one pooled client that reaches them all.
pub struct Upstreams {
    pub client: reqwest::Client,
    pub accounts: String,
    pub catalog: String,
    pub payments: String,
    pub orders: String,
    pub body_limit: usize,
    /// Largest upstream answer relayed; a larger one is a 502, not memory spent.
    pub response_limit: usize,
}

impl Upstreams {
    /// Ready when every upstream answers its `/healthz`.
    pub async fn check(&self) -> Result<(), String> {
        let all = [
            ("accounts", &self.accounts),
            ("catalog", &self.catalog),
            ("payments", &self.payments),
            ("orders", &self.orders),
        ];
        for (name, base) in all {
            match self.client.get(format!("{base}/healthz")).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => return Err(format!("{name} answered {}", r.status())),
                Err(e) => return Err(format!("{name} unreachable: {e}")),
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Route {
    upstreams: Arc<Upstreams>,
    base: Arc<str>,
}

/// The public route table: path patterns and the service each belongs to.
/// Services' internal routes (`/internal/…`) are never exposed here.
pub fn router(upstreams: Arc<Upstreams>) -> Router {
    let to = |base: &str| Route {
        base: base.into(),
        upstreams: upstreams.clone(),
    };
    // `/api/v1/auth/token` (the client-credentials grant for services) is
    // deliberately absent: services ask accounts for tokens directly.
    let accounts = Router::new()
        .route("/api/v1/auth/register", any(forward))
        .route("/api/v1/auth/login", any(forward))
        .route("/api/v1/auth/refresh", any(forward))
        .route("/api/v1/auth/logout", any(forward))
        .route("/api/v1/users", any(forward))
        .route("/api/v1/users/{*rest}", any(forward))
        .route("/.well-known/jwks.json", any(forward))
        .with_state(to(&upstreams.accounts));
    let catalog = Router::new()
        .route("/api/v1/categories", any(forward))
        .route("/api/v1/categories/{*rest}", any(forward))
        .route("/api/v1/products", any(forward))
        .route("/api/v1/products/{*rest}", any(forward))
        .route("/api/v1/warehouses", any(forward))
        .route("/api/v1/warehouses/{*rest}", any(forward))
        .route("/api/v1/stock/{*rest}", any(forward))
        .with_state(to(&upstreams.catalog));
    // Tokens, a payment by its order, refunds, the ledger's check, and the
    // card provider's webhook (it calls the shop's public origin).
    let payments = Router::new()
        .route("/api/v1/payments", any(forward))
        .route("/api/v1/payments/{*rest}", any(forward))
        .with_state(to(&upstreams.payments));
    let orders = Router::new()
        .route("/api/v1/cart", any(forward))
        .route("/api/v1/cart/{*rest}", any(forward))
        .route("/api/v1/orders", any(forward))
        .route("/api/v1/orders/{*rest}", any(forward))
        .with_state(to(&upstreams.orders));
    accounts.merge(catalog).merge(payments).merge(orders)
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// and those the gateway sets itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "forwarded"
            | "x-request-id"
            | "traceparent"
    )
}

/// Headers named by the `Connection` header belong to this hop only (RFC 9110 §7.6.1).
fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

fn copy_end_to_end(from: &HeaderMap, capacity: usize) -> HeaderMap {
    let named = connection_named(from);
    let mut headers = HeaderMap::with_capacity(capacity);
    for (name, value) in from {
        if !is_hop_by_hop(name) && !named.iter().any(|n| n == name.as_str()) {
            headers.append(name, value.clone());
        }
    }
    headers
}

async fn forward(State(route): State<Route>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if !emporium_http::path::is_canonical(path) {
        metrics::counter!("gateway_paths_refused_total").increment(1);
        return Problem::bad_request("The path is not in canonical form.").into_response();
    }
    let is_head = parts.method == axum::http::Method::HEAD;
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{}", route.base, path_and_query);
    // Forward exactly the path that was routed: if the URL parser would spell
    // it differently (normalising anything), refuse rather than send that. The
    // URL checked is the one sent (parsed once).
    let target = match reqwest::Url::parse(&url) {
        Ok(parsed) if parsed.path() == path => parsed,
        _ => {
            metrics::counter!("gateway_paths_refused_total").increment(1);
            return Problem::bad_request("The path is not in canonical form.").into_response();
        }
    };
    let body = match axum::body::to_bytes(body, route.upstreams.body_limit).await {
        Ok(bytes) => bytes,
        Err(_) => return Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response(),
    };

    let mut headers = copy_end_to_end(&parts.headers, parts.headers.len() + 4);
    // The gateway is the edge: the peer is the client, whatever it claims.
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>()
        && let Ok(v) = HeaderValue::from_str(&peer.ip().to_string())
    {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Some(ctx) = parts.extensions.get::<RequestContext>() {
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            headers.insert(REQUEST_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(&ctx.trace.header_value()) {
            headers.insert(TRACEPARENT, v);
        }
    }

    let sent = route
        .upstreams
        .client
        .request(parts.method, target)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let mut upstream = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            tracing::warn!(error = %e, %url, "Upstream timed out.");
            return Problem::from_status(StatusCode::GATEWAY_TIMEOUT).into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, %url, "Upstream unreachable.");
            return Problem::from_status(StatusCode::BAD_GATEWAY).into_response();
        }
    };
    let status = upstream.status();
    let mut response_headers = copy_end_to_end(upstream.headers(), upstream.headers().len());
    // A HEAD answer has no body, but says how long the GET's would be.
    if is_head && let Some(length) = upstream.headers().get(axum::http::header::CONTENT_LENGTH) {
        response_headers.insert(axum::http::header::CONTENT_LENGTH, length.clone());
    }
    let limit = route.upstreams.response_limit;
    if upstream.content_length().is_some_and(|n| n > limit as u64) {
        tracing::warn!(%url, "Upstream response too large.");
        return Problem::from_status(StatusCode::BAD_GATEWAY).into_response();
    }
    let mut bytes = Vec::new();
    loop {
        match upstream.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= limit => {
                bytes.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => {
                tracing::warn!(%url, "Upstream response too large.");
                return Problem::from_status(StatusCode::BAD_GATEWAY).into_response();
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, %url, "Upstream response broke off.");
                return Problem::from_status(StatusCode::BAD_GATEWAY).into_response();
            }
        }
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

/// The gateway's own document: what it routes where. Each service publishes
/// the full description of its paths at its own `/openapi.json`.
pub fn openapi_json() -> String {
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Emporium gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The public origin. /api/v1/auth/{register,login,refresh,logout}, /api/v1/users* and \
                /.well-known/jwks.json are served by the accounts service; /api/v1/categories*, \
                /api/v1/products*, /api/v1/warehouses* and /api/v1/stock/* by the catalog \
                service; /api/v1/payments* by the payments service; /api/v1/cart* and /api/v1/orders* by \
                the orders service; see their documents. /metrics is served only on the operations port."
        },
        "paths": {
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"responses": {"200": {"description": "upstreams reachable"},
                                              "503": {"description": "an upstream is down"}}}}
        }
    })
    .to_string()
}
