//! The layers every listener wears, outermost first:
//! request context (request id, trace context, span, metrics, problem safety
//! net) → panic catcher → timeout → body-size limit → the service's routes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use emporium_telemetry::{Span, SpanKind, TraceParent};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::problem::{PROBLEM_JSON, Problem};
use crate::server::HttpSettings;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Which service a listener belongs to; the `service` label of its metrics.
#[derive(Debug, Clone, Copy)]
pub struct ServiceName(pub &'static str);

/// Identity of the request being served, for logs and for calls made on its behalf.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The caller's `x-request-id` if it sent a sane one, else a new UUID.
    pub request_id: String,
    /// This hop's span in the caller's trace (or a new trace).
    pub trace: TraceParent,
    /// The service serving it (whose spans the calls made for it are).
    pub service: &'static str,
}

tokio::task_local! {
    /// The request the current task serves (set by the standard layers).
    static CURRENT: RequestContext;
}

impl RequestContext {
    /// The request the current task is serving, if any: for a call made
    /// deep inside a handler that was not handed the context (it becomes a
    /// span of that request all the same). Tasks spawned from it have none.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Work of `service` that no request started (a recovery pass, a
    /// timer): a new request id and a new trace.
    pub fn background(service: &'static str) -> Self {
        Self {
            request_id: uuid::Uuid::now_v7().to_string(),
            trace: TraceParent::generate(),
            service,
        }
    }

    /// Work of `service` caused by an event carrying `traceparent` (its
    /// producer's span): a new span in that trace, or a new trace.
    pub fn caused_by(service: &'static str, traceparent: Option<&str>) -> Self {
        let trace = traceparent
            .and_then(TraceParent::parse)
            .map_or_else(TraceParent::generate, |t| t.child());
        Self {
            request_id: uuid::Uuid::now_v7().to_string(),
            trace,
            service,
        }
    }

    /// Another span of the same request, one level further down: for a part of the work that
    /// is its own span (a saga step), whose calls are its children.
    pub fn child(&self) -> Self {
        Self {
            request_id: self.request_id.clone(),
            trace: self.trace.child(),
            service: self.service,
        }
    }
}

/// A handler's request context: the one the standard layers set (a route
/// outside them, which no service has, gets a new trace of its own).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| RequestContext::background("emporium")))
    }
}

/// Wraps a service's routes in the standard layers.
pub fn standard_layers(router: Router, service: ServiceName, settings: &HttpSettings) -> Router {
    // The recorder must exist before the first request records anything.
    emporium_telemetry::metrics_handle();
    router
        .fallback(|uri: axum::http::Uri| async move { crate::path::unrouted(uri.path()) })
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(settings.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(settings.request_timeout_ms),
        ))
        .layer(axum::middleware::from_fn_with_state(
            BodyLimits {
                max: settings.body_limit_bytes,
                linger_bytes: settings.body_limit_bytes.saturating_mul(8).max(8 << 20),
                linger: Duration::from_secs(2),
                read_within: Duration::from_millis(settings.request_timeout_ms),
                budget: Arc::new(Semaphore::new(
                    settings.max_buffered_body_bytes.min(Semaphore::MAX_PERMITS),
                )),
                per_client_max: settings.max_buffered_body_bytes_per_client,
                per_client_held: ClientHeld::default(),
            },
            buffer_body,
        ))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("Handler panicked.");
                Problem::internal().into_response()
            },
        ))
        .layer(axum::middleware::from_fn_with_state(
            service,
            request_context,
        ))
}

fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

async fn request_context(
    State(service): State<ServiceName>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let caller = request
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let trace = caller.map_or_else(TraceParent::generate, |parent| parent.child());
    let method = request.method().clone();
    let method_label = method_label(&method);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        service = service.0,
        request_id = %request_id,
        trace_id = %trace.trace_id_hex(),
        span_id = %trace.span_id_hex(),
        method = %method,
        path = %path,
    );
    let mut otel = Span::start(
        service.0,
        SpanKind::Server,
        &trace,
        caller.map(|c| c.parent_id),
        || match &route {
            Some(route) => format!("{method_label} {route}").into(),
            None => method_label.into(),
        },
    );
    if otel.is_recording() {
        otel.set("http.request.method", method_label);
        otel.set_text("url.path", &path);
        if let Some(route) = &route {
            otel.set("http.route", route.clone());
        }
        otel.set("http.request.id", request_id.clone());
    }
    let context = RequestContext {
        request_id: request_id.clone(),
        trace,
        service: service.0,
    };
    request.extensions_mut().insert(context.clone());

    let mut response = CURRENT
        .scope(context, next.run(request))
        .instrument(span.clone())
        .await;
    if response.status().is_client_error() || response.status().is_server_error() {
        response = ensure_problem(response);
    }
    let status = response.status();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    security_headers(response.headers_mut());
    let elapsed = started.elapsed();
    // The route template keeps the label set small; unmatched paths share one label.
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let labels = [
        ("service", service.0.to_owned()),
        ("method", method_label.to_owned()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    if status.is_server_error() {
        metrics::counter!("http_server_errors_total", &labels).increment(1);
    }
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    otel.set("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        otel.set("error.type", status.as_str().to_owned());
        otel.fail(status.to_string());
    }
    drop(otel);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "Request finished."
        );
    });
    response
}

/// The `method` label: the methods the routes know, and one label for every
/// other spelling, so made-up methods cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Headers every answer carries: HTTPS only from now on, no content sniffing,
/// no referrer leaks, and no caching unless the handler allowed it (answers
/// carry tokens and personal data; RFC 6749 §5.1).
fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Every request body is read here, before the routes, so that three limits
/// hold whatever the route does with it:
///
/// - Size: over `body_limit_bytes` the answer is 413: at once when
///   `Content-Length` says so, else after reading and discarding a bounded
///   amount more, as nginx lingers (closing while the client is still sending
///   would reset the connection before it reads the 413).
/// - Memory: the bytes held by all bodies being read on the listener share
///   one budget (`max_buffered_body_bytes`), and one client address may hold
///   at most a share of it (`max_buffered_body_bytes_per_client`); a chunk
///   that does not fit answers 503 with `Retry-After` instead of growing
///   memory with every stream an attacker opens, or letting one client starve
///   the others. The bytes stay counted until the answer is made.
/// - Time: the body must arrive within the request timeout (503).
async fn buffer_body(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if length == Some(0) || (length.is_none() && !chunked) {
        return next.run(request).await;
    }
    if length.is_some_and(|n| n > limits.max as u64) {
        return Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response();
    }
    let deadline = tokio::time::Instant::now() + limits.read_within;
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let mut share = ClientShare {
        held: limits.per_client_held.clone(),
        client,
        bytes: 0,
    };
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut buffered = Vec::with_capacity(length.unwrap_or(0) as usize);
    let mut held: Option<OwnedSemaphorePermit> = None;
    let overflow = loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break 0,
            Ok(Some(Err(_))) => {
                return Problem::bad_request("The request body could not be read.").into_response();
            }
            Err(_) => {
                return Problem::from_status(StatusCode::SERVICE_UNAVAILABLE)
                    .with_detail("The request body did not arrive in time.")
                    .into_response();
            }
        };
        if buffered.len() + chunk.len() > limits.max {
            break chunk.len();
        }
        let permit = share
            .take(chunk.len(), limits.per_client_max)
            .then(|| u32::try_from(chunk.len()).ok())
            .flatten()
            .and_then(|n| limits.budget.clone().try_acquire_many_owned(n).ok());
        let Some(permit) = permit else {
            metrics::counter!("http_bodies_refused_total").increment(1);
            return Problem::from_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("Too many request bodies are being received; try again shortly.")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
                .into_response();
        };
        match held.as_mut() {
            Some(all) => all.merge(permit),
            None => held = Some(permit),
        }
        buffered.extend_from_slice(&chunk);
    };
    if overflow > 0 {
        drop(held);
        drop(share);
        drop(buffered);
        let mut discarded = overflow;
        let linger_until = tokio::time::Instant::now() + limits.linger;
        while discarded <= limits.linger_bytes {
            match tokio::time::timeout_at(linger_until, stream.next()).await {
                Ok(Some(Ok(chunk))) => discarded += chunk.len(),
                _ => break,
            }
        }
        let mut response = Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response();
        if discarded > limits.linger_bytes {
            // The rest is not worth reading: ask the client to go away.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return response;
    }
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(buffered)))
        .await;
    drop(held);
    drop(share);
    response
}

/// The bytes of request bodies one client address holds on the listener.
type ClientHeld = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

/// A request's part of its client's share; given back when dropped.
struct ClientShare {
    held: ClientHeld,
    client: Option<IpAddr>,
    bytes: usize,
}

impl ClientShare {
    /// Takes `n` more bytes if the client stays within `max`.
    fn take(&mut self, n: usize, max: usize) -> bool {
        let Some(client) = self.client else {
            return true;
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = held.entry(client).or_insert(0);
        if *mine + n > max {
            return false;
        }
        *mine += n;
        self.bytes += n;
        true
    }
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let Some(client) = self.client else {
            return;
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mine) = held.get_mut(&client) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                held.remove(&client);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct BodyLimits {
    max: usize,
    linger_bytes: usize,
    linger: Duration,
    read_within: Duration,
    /// Bytes of request bodies the listener may hold at once.
    budget: Arc<Semaphore>,
    /// Bytes one client address may hold at once, and what each holds.
    per_client_max: usize,
    per_client_held: ClientHeld,
}

/// Replaces the body of an error response that is not already a problem
/// (axum's 405, a length-limit 413, a timeout) with the problem for its status,
/// keeping headers such as `Allow`, `Retry-After` and `WWW-Authenticate`.
fn ensure_problem(response: Response) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = Problem::from_status(parts.status);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    for (name, value) in &problem.headers {
        parts.headers.entry(name).or_insert_with(|| value.clone());
    }
    Response::from_parts(parts, axum::body::Body::from(problem.body_json()))
}
