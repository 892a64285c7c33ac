//! The service client against a small HTTPS server whose routes misbehave on
//! purpose: what is passed on, what is retried and how often, what is not.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use emporium_client::{CallError, ClientSettings, Reply, ServiceClient, StaticToken, TokenSource};
use emporium_http::tls::CertDir;
use emporium_http::{
    HttpServer, HttpSettings, Problem, RequestContext, ServiceName, Shutdown, ShutdownTrigger,
    standard_layers,
};
use emporium_telemetry::TraceParent;
use serde_json::{Value, json};

#[derive(Default)]
struct Seen {
    hits: AtomicUsize,
    headers: Mutex<Vec<HeaderMap>>,
}

type Shared = Arc<Seen>;

fn record(seen: &Seen, headers: &HeaderMap) -> usize {
    seen.headers.lock().unwrap().push(headers.clone());
    seen.hits.fetch_add(1, Ordering::SeqCst) + 1
}

async fn echo(State(seen): State<Shared>, headers: HeaderMap, body: String) -> Response {
    record(&seen, &headers);
    axum::Json(json!({"body": body})).into_response()
}

/// 503 twice, then 201.
async fn flaky(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    if record(&seen, &headers) <= 2 {
        return Problem::from_status(StatusCode::SERVICE_UNAVAILABLE).into_response();
    }
    (StatusCode::CREATED, axum::Json(json!({"ok": true}))).into_response()
}

async fn down(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    record(&seen, &headers);
    Problem::from_status(StatusCode::BAD_GATEWAY).into_response()
}

async fn conflict(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    record(&seen, &headers);
    Problem::conflict("out-of-stock", "Not enough stock of: lantern.").into_response()
}

async fn slow(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    record(&seen, &headers);
    tokio::time::sleep(Duration::from_secs(3)).await;
    "late".into_response()
}

/// 429 with `Retry-After: 1` once, then 200.
async fn busy(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    if record(&seen, &headers) == 1 {
        let mut r = Problem::from_status(StatusCode::TOO_MANY_REQUESTS).into_response();
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return r;
    }
    axum::Json(json!({"ok": true})).into_response()
}

/// Refuses the token `stale`, accepts any other.
async fn picky(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    record(&seen, &headers);
    if headers["authorization"] == "Bearer stale" {
        return Problem::unauthorized("expired").into_response();
    }
    axum::Json(json!({"ok": true})).into_response()
}

struct Upstream {
    base: String,
    seen: Shared,
    http: reqwest::Client,
    trigger: ShutdownTrigger,
}

impl Upstream {
    /// Requests the upstream received.
    fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.trigger.fire();
    }
}

fn certs() -> CertDir {
    static CERTS: std::sync::OnceLock<CertDir> = std::sync::OnceLock::new();
    CERTS
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("emporium-client-tests-{}", std::process::id()));
            let certs = CertDir(dir);
            certs.ensure(&["svc"], &[]).unwrap();
            certs
        })
        .clone()
}

async fn upstream() -> Upstream {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certs = certs();
    let settings = HttpSettings::loopback(&certs.cert("svc"), &certs.key("svc"));
    let server = HttpServer::bind(&settings).unwrap();
    let base = server.base_url();
    let seen = Shared::default();
    let routes = Router::new()
        .route("/echo", post(echo).get(echo))
        .route("/flaky", post(flaky).get(flaky))
        .route("/down", get(down).post(down))
        .route("/conflict", post(conflict))
        .route("/slow", get(slow))
        .route("/busy", get(busy))
        .route("/picky", post(picky))
        .with_state(seen.clone());
    let app = standard_layers(routes, ServiceName("upstream"), &settings);
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(server.run_until_stopped(app, shutdown));
    Upstream {
        base,
        seen,
        http: emporium_http::tls::client(Some(&certs.ca()), Duration::from_secs(10)).unwrap(),
        trigger,
    }
}

fn client_with(
    up: &Upstream,
    tokens: Arc<dyn TokenSource>,
    settings: ClientSettings,
) -> ServiceClient {
    ServiceClient::new(
        up.http.clone(),
        reqwest::Url::parse(&up.base).unwrap(),
        tokens,
        settings,
    )
}

fn client(up: &Upstream) -> ServiceClient {
    client_with(
        up,
        Arc::new(StaticToken::new("token")),
        ClientSettings {
            backoff_base_ms: 10,
            backoff_max_ms: 1_000,
            ..ClientSettings::default()
        },
    )
}

/// POSTs to `path` with an idempotency key, which lets the call be retried.
async fn post_keyed(up: &Upstream, path: &str, key: &str) -> Result<Reply<Value>, CallError> {
    client(up)
        .post(path)
        .idempotency_key(key)
        .unwrap()
        .send::<Value>()
        .await
}

#[tokio::test]
async fn request_id_trace_key_and_token_go_along() {
    let up = upstream().await;
    let trace = TraceParent::generate();
    let context = RequestContext {
        request_id: "req-42".into(),
        trace,
        service: "orders",
    };
    let reply = client(&up)
        .post("/echo")
        .json(&json!({"a": 1}))
        .unwrap()
        .idempotency_key("order-1:reserve")
        .unwrap()
        .context(&context)
        .send::<Value>()
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["body"], r#"{"a":1}"#);
    let headers = up.seen.headers.lock().unwrap()[0].clone();
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["idempotency-key"], "order-1:reserve");
    assert_eq!(headers["authorization"], "Bearer token");
    assert_eq!(headers["content-type"], "application/json");
    let passed = TraceParent::parse(headers["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(passed.trace_id, trace.trace_id, "the same trace");
    assert_ne!(passed.parent_id, trace.parent_id, "a new span of it");
}

#[tokio::test]
async fn a_keyed_call_is_retried_through_transient_failures() {
    let up = upstream().await;
    let context = RequestContext::background("orders");
    let reply = client(&up)
        .post("/flaky")
        .idempotency_key("k1")
        .unwrap()
        .context(&context)
        .send::<Value>()
        .await
        .unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(up.hits(), 3);
    let headers = up.seen.headers.lock().unwrap().clone();
    assert!(
        headers.iter().all(|h| h["idempotency-key"] == "k1"),
        "every attempt carries the same key"
    );
    // Each attempt is a span of its own in the request's trace.
    let traces: Vec<TraceParent> = headers
        .iter()
        .map(|h| TraceParent::parse(h["traceparent"].to_str().unwrap()).unwrap())
        .collect();
    assert!(traces.iter().all(|t| t.trace_id == context.trace.trace_id));
    let spans: std::collections::BTreeSet<[u8; 8]> = traces.iter().map(|t| t.parent_id).collect();
    assert_eq!(spans.len(), 3, "{traces:?}");
    assert!(!spans.contains(&context.trace.parent_id));
}

#[tokio::test]
async fn retries_are_bounded() {
    let up = upstream().await;
    let error = client(&up).get("/down").send::<Value>().await.unwrap_err();
    assert_eq!(error.status(), Some(502));
    assert!(error.is_retryable(), "the caller may come back later");
    assert_eq!(up.hits(), 3, "max_attempts = 3");
}

#[tokio::test]
async fn an_unkeyed_post_is_never_repeated() {
    let up = upstream().await;
    let error = client(&up)
        .post("/flaky")
        .send::<Value>()
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_definite_problem_is_decoded_and_not_retried() {
    let up = upstream().await;
    let error = post_keyed(&up, "/conflict", "k2").await.unwrap_err();
    let CallError::Problem(problem) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(problem.status, 409);
    assert_eq!(problem.kind(), "out-of-stock");
    assert_eq!(
        problem.detail.as_deref(),
        Some("Not enough stock of: lantern.")
    );
    assert!(!error.is_retryable());
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn each_attempt_has_its_own_timeout() {
    let up = upstream().await;
    let started = Instant::now();
    let error = client(&up)
        .get("/slow")
        .timeout(Duration::from_millis(200))
        .send::<Value>()
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Timeout(_)), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(up.hits(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up long before the upstream answered"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let up = upstream().await;
    let started = Instant::now();
    let reply = client(&up).get("/busy").send::<Value>().await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(up.hits(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "came back after {:?}, before Retry-After",
        started.elapsed()
    );
}

/// Hands out `stale` first and a fresh token once told the first was refused.
#[derive(Debug, Default)]
struct Rotating {
    invalidated: AtomicUsize,
}

#[async_trait]
impl TokenSource for Rotating {
    async fn token(&self) -> Result<Arc<str>, CallError> {
        Ok(Arc::from(if self.invalidated.load(Ordering::SeqCst) == 0 {
            "stale"
        } else {
            "fresh"
        }))
    }
    fn invalidate(&self, token: &str) {
        assert_eq!(token, "stale");
        self.invalidated.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_refused_token_is_replaced_once() {
    let up = upstream().await;
    let tokens = Arc::new(Rotating::default());
    let client = client_with(&up, tokens.clone(), ClientSettings::default());
    let reply = client.post("/picky").send::<Value>().await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 1);
    assert_eq!(up.hits(), 2);

    // A token refused again is a definite answer, not a loop.
    let always_stale = client_with(
        &up,
        Arc::new(StaticToken::new("stale")),
        ClientSettings::default(),
    );
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        always_stale.post("/picky").send::<Value>(),
    )
    .await
    .expect("no loop")
    .unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert!(!error.is_retryable());
    assert_eq!(up.hits(), 4);
}

#[tokio::test]
async fn an_unreachable_service_is_a_retryable_error() {
    // A listener that is bound but never accepts would hang; a port nothing
    // listens on is refused at once. Bind, read the port, and keep the socket
    // unlistened so no one else can take it during the test.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let up = upstream().await;
    let client = ServiceClient::new(
        up.http.clone(),
        reqwest::Url::parse(&format!("https://127.0.0.1:{port}")).unwrap(),
        Arc::new(StaticToken::new("t")),
        ClientSettings {
            backoff_base_ms: 1,
            ..ClientSettings::default()
        },
    );
    let started = std::time::Instant::now();
    let error = client.get("/echo").send::<Value>().await.unwrap_err();
    // No attempt connected: the other side surely never saw it.
    assert!(matches!(error, CallError::NotSent(_)), "{error:?}");
    assert!(error.never_sent());
    assert!(error.is_retryable());
    // Three attempts in all, each refused at once, then given up.
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(socket);
}
