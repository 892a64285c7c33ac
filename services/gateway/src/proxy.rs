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
    pub body_limit: usize,
}

impl Upstreams {
    /// Ready when every upstream answers its `/healthz`.
    pub async fn check(&self) -> Result<(), String> {
        for (name, base) in [("accounts", &self.accounts), ("catalog", &self.catalog)] {
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
    let accounts = Router::new()
        .route("/api/v1/auth/{*rest}", any(forward))
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
    accounts.merge(catalog)
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

async fn forward(State(route): State<Route>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{}", route.base, path_and_query);
    let body = match axum::body::to_bytes(body, route.upstreams.body_limit).await {
        Ok(bytes) => bytes,
        Err(_) => return Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response(),
    };

    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            headers.append(name, value.clone());
        }
    }
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
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
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
    let mut response_headers = HeaderMap::with_capacity(upstream.headers().len());
    for (name, value) in upstream.headers() {
        if !is_hop_by_hop(name) {
            response_headers.append(name, value.clone());
        }
    }
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, %url, "Upstream response broke off.");
            return Problem::from_status(StatusCode::BAD_GATEWAY).into_response();
        }
    };
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
            "description": "The public origin. /api/v1/auth/*, /api/v1/users* and \
                /.well-known/jwks.json are served by the accounts service; /api/v1/categories*, \
                /api/v1/products*, /api/v1/warehouses* and /api/v1/stock/* by the catalog \
                service; see their documents."
        },
        "paths": {
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"responses": {"200": {"description": "upstreams reachable"},
                                              "503": {"description": "an upstream is down"}}}},
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}}
        }
    })
    .to_string()
}
