//! The gateway through HTTPS, in front of stand-in upstreams: each echoes what
//! it received and names itself, so a path routed to the wrong service shows.
//! (The real services behind it are exercised by the `emporium up`
//! end-to-end test.)

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use emporium_config::Loader;
use emporium_gateway::{Application, GatewaySettings};
use emporium_http::tls::CertDir;
use emporium_http::{HttpServer, HttpSettings, Shutdown, ShutdownTrigger};
use serde_json::{Value, json};

struct Harness {
    gateway: String,
    /// The catalog upstream's base URL, as the gateway is configured with it.
    catalog_upstream: String,
    /// Requests any upstream received.
    hits: Hits,
    ops: String,
    ca: std::path::PathBuf,
    client: reqwest::Client,
    _triggers: Vec<ShutdownTrigger>,
    /// Sockets bound (never listening) to keep a refusing upstream's port closed.
    _held: Vec<tokio::net::TcpSocket>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Requests the upstreams received.
type Hits = std::sync::Arc<std::sync::atomic::AtomicUsize>;

/// What stands behind the gateway as one service.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// Echoes the request over HTTPS (HTTP/2 from the gateway).
    Echo,
    /// Echoes over plain HTTP/1.1, where nothing but the gateway's own code
    /// removes hop-by-hop headers (hyper's HTTP/2 layer strips most of them
    /// by itself, which would hide a gateway that forwards them).
    PlainEcho,
    /// Accepts the connection and the request, and never answers.
    Hang,
    /// Nothing listens: connecting is refused.
    Refusing,
}

#[derive(Clone)]
struct Echo {
    name: &'static str,
    hits: Hits,
}

/// Asks the echo to answer with hop-by-hop headers of its own.
const WANT_HOP_HEADERS: &str = "x-test-want-hop-headers";

/// The hop-by-hop headers the echo answers with when asked (besides a
/// `Connection` naming `x-answer-hop`): none may reach the client.
const ANSWER_HOP_HEADERS: [(&str, &str); 7] = [
    ("x-answer-hop", "upstream-only"),
    ("keep-alive", "timeout=5, max=100"),
    ("proxy-authenticate", "Basic realm=\"upstream\""),
    ("proxy-connection", "keep-alive"),
    ("upgrade", "h2c"),
    ("trailer", "x-checksum"),
    ("te", "trailers"),
];

/// The hop-by-hop headers (`x-hop` named in its `Connection`) and forwarding
/// claims a client sends that must not reach the upstream.
const DROPPED_REQUEST_HEADERS: [(&str, &str); 9] = [
    ("x-hop", "secret"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("proxy-authorization", "Basic Z2F0ZXdheTpvbmx5"),
    ("te", "trailers"),
    ("trailer", "x-checksum"),
    ("upgrade", "websocket"),
    ("forwarded", "for=6.6.6.6"),
    ("x-forwarded-host", "evil.example"),
];

async fn echo(
    axum::extract::State(upstream): axum::extract::State<Echo>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    upstream
        .hits
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    let all: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let seen = axum::Json(json!({
        "upstream": upstream.name,
        "method": method.as_str(),
        "uri": uri.path_and_query().map(|p| p.to_string()),
        "body": body,
        "x_forwarded_for": h("x-forwarded-for"),
        "x_request_id": h("x-request-id"),
        "traceparent": h("traceparent"),
        "authorization": h("authorization"),
        "connection": h("connection"),
        "x_hop": h("x-hop"),
        "headers": all,
    }));
    let mut answer = HeaderMap::new();
    if headers.contains_key(WANT_HOP_HEADERS) {
        answer.append("connection", HeaderValue::from_static("x-answer-hop"));
        for (name, value) in ANSWER_HOP_HEADERS {
            answer.append(name, HeaderValue::from_static(value));
        }
        answer.append("x-end-to-end", HeaderValue::from_static("kept"));
    }
    (answer, seen).into_response()
}

async fn never_answers() -> &'static str {
    std::future::pending::<()>().await;
    "never"
}

/// Starts one stand-in upstream; returns its base URL.
fn start_upstream(
    kind: Upstream,
    name: &'static str,
    certs: &CertDir,
    hits: &Hits,
    triggers: &mut Vec<ShutdownTrigger>,
    held: &mut Vec<tokio::net::TcpSocket>,
) -> String {
    if kind == Upstream::Refusing {
        // A port that stays closed for the whole test: a socket bound to it
        // (without SO_REUSEADDR) but never listening. Nobody else can bind or
        // be handed that port while it is held, and with no listener a
        // connection is refused at once. (Binding a listener and dropping it
        // frees the port for anyone to take in the meantime.)
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        held.push(socket);
        return format!("https://127.0.0.1:{port}");
    }
    let mut settings = HttpSettings::loopback(&certs.cert(name), &certs.key(name));
    settings.insecure_http = kind == Upstream::PlainEcho;
    let server = HttpServer::bind(&settings).unwrap();
    let url = server.base_url();
    let router = if kind == Upstream::Hang {
        Router::new().route("/{*path}", any(never_answers))
    } else {
        Router::new().route("/{*path}", any(echo)).with_state(Echo {
            name,
            hits: hits.clone(),
        })
    };
    let (t, s) = Shutdown::new();
    triggers.push(t);
    tokio::spawn(server.run_until_stopped(router, s));
    url
}

/// Both upstreams echoing, each under its own name.
async fn spawn() -> Harness {
    spawn_with(Upstream::Echo, Upstream::Echo, &[]).await
}

/// The gateway in front of these upstreams, with gateway settings overridden.
async fn spawn_with(accounts: Upstream, catalog: Upstream, overrides: &[(&str, &str)]) -> Harness {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("emporium-gateway-test-{}", uuid_like()));
    let certs = CertDir(dir.clone());
    certs
        .ensure(
            &["accounts", "catalog", "payments", "orders", "gateway"],
            &[],
        )
        .unwrap();
    let mut triggers = Vec::new();
    let mut held = Vec::new();
    let hits = Hits::default();
    let accounts_url = start_upstream(
        accounts,
        "accounts",
        &certs,
        &hits,
        &mut triggers,
        &mut held,
    );
    let catalog_url = start_upstream(catalog, "catalog", &certs, &hits, &mut triggers, &mut held);
    let payments = Upstream::Echo;
    let payments_url = start_upstream(
        payments,
        "payments",
        &certs,
        &hits,
        &mut triggers,
        &mut held,
    );
    let orders_url = start_upstream(
        Upstream::Echo,
        "orders",
        &certs,
        &hits,
        &mut triggers,
        &mut held,
    );

    let (cert, key, ca) = (certs.cert("gateway"), certs.key("gateway"), certs.ca());
    let standard: [(&str, &str); 11] = [
        ("http.host", "127.0.0.1"),
        ("http.port", "0"),
        ("http.tls_cert", cert.to_str().unwrap()),
        ("http.tls_key", key.to_str().unwrap()),
        ("http.body_limit_bytes", "65536"),
        ("upstreams.accounts", &accounts_url),
        ("upstreams.catalog", &catalog_url),
        ("upstreams.payments", &payments_url),
        ("upstreams.orders", &orders_url),
        ("upstreams.ca_cert", ca.to_str().unwrap()),
        ("ops.port", "0"),
    ];
    // The overrides come last, so they win.
    let defaults = Loader::new(emporium_gateway::config::DEFAULTS).unwrap();
    let settings: GatewaySettings = standard
        .iter()
        .chain(overrides)
        .fold(defaults, |l, (k, v)| l.set(k, v).unwrap())
        .build()
        .unwrap();
    let gateway = Application::build(settings).await.unwrap();
    let gateway_url = gateway.base_url();
    let ops_url = gateway.ops_url();
    let (t, s) = Shutdown::new();
    triggers.push(t);
    tokio::spawn(gateway.run_until_stopped(s));
    let client = emporium_http::tls::client(Some(&certs.ca()), Duration::from_secs(30)).unwrap();
    Harness {
        gateway: gateway_url,
        catalog_upstream: catalog_url,
        hits,
        ops: ops_url,
        ca: certs.ca(),
        client,
        _triggers: triggers,
        _held: held,
        _dir: TempDir(dir),
    }
}

impl Harness {
    /// Sends a `method` request for `path` to the gateway.
    async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.client
            .request(method, format!("{}{path}", self.gateway))
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path).await
    }

    /// GETs `path`, which `upstream`'s echo must answer; returns what it saw.
    async fn echoed(&self, path: &str, upstream: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let seen: Value = r.json().await.unwrap();
        assert_eq!(
            seen["upstream"], upstream,
            "{path} went to the wrong service"
        );
        seen
    }

    /// Requests the upstreams received.
    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Asserts `r` is a problem document with this status.
fn assert_problem(r: &reqwest::Response, status: u16) {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

/// A client speaking HTTP/1.1 to the gateway, so the headers it sends and
/// receives are exactly those on the wire (HTTP/2 forbids hop-by-hop headers).
fn http1_client(ca: &std::path::Path) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap()
}

fn uuid_like() -> String {
    format!(
        "{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Each public path reaches the service that owns it, with the request's
/// context; the client's own forwarding claims are replaced.
#[tokio::test]
async fn forwards_each_path_to_its_own_service_with_context() {
    let h = spawn().await;
    let r = h
        .client
        .post(format!("{}/api/v1/auth/login?x=1", h.gateway))
        .header("x-request-id", "req-42")
        .header(
            "traceparent",
            // Not sampled, says the client.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .header("x-forwarded-for", "6.6.6.6")
        .header("authorization", "Bearer abc")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-42");
    // A relayed answer (a login's tokens, here echoed) is never cached.
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["upstream"], "accounts");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/api/v1/auth/login?x=1");
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["authorization"], "Bearer abc");
    assert_eq!(seen["x_request_id"], "req-42");
    // The client cannot choose its own address: the gateway writes the peer's.
    assert_eq!(seen["x_forwarded_for"], "127.0.0.1");
    // The edge starts the trace: the client's is not continued, and the
    // gateway's own span (a valid, sampled context) goes along.
    let tp = seen["traceparent"].as_str().unwrap();
    assert!(!tp.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{tp}");
    assert!(!tp.contains("00f067aa0ba902b7"), "{tp}");
    assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
    assert_eq!(tp.len(), 55, "{tp}");

    for (path, owner) in [
        ("/api/v1/auth/register", "accounts"),
        ("/api/v1/auth/refresh", "accounts"),
        ("/api/v1/auth/logout", "accounts"),
        ("/api/v1/users", "accounts"),
        ("/api/v1/users/me", "accounts"),
        ("/.well-known/jwks.json", "accounts"),
        ("/api/v1/categories", "catalog"),
        ("/api/v1/categories/x", "catalog"),
        ("/api/v1/products", "catalog"),
        ("/api/v1/products/x/stock", "catalog"),
        ("/api/v1/warehouses", "catalog"),
        ("/api/v1/warehouses/x", "catalog"),
        ("/api/v1/stock/movements", "catalog"),
        ("/api/v1/payments", "payments"),
        ("/api/v1/payments?order_id=x", "payments"),
        ("/api/v1/payments/tokens", "payments"),
        ("/api/v1/payments/ledger/verify", "payments"),
        ("/api/v1/payments/webhooks", "payments"),
        ("/api/v1/cart", "orders"),
        ("/api/v1/cart/items/x", "orders"),
        ("/api/v1/orders", "orders"),
        ("/api/v1/orders/x/history", "orders"),
        ("/api/v1/orders/x/cancel", "orders"),
    ] {
        let seen = h.echoed(path, owner).await;
        assert_eq!(seen["uri"], path, "{path}");
    }
}

#[tokio::test]
async fn refuses_what_it_does_not_route_and_what_is_too_big() {
    let h = spawn().await;
    assert_eq!(h.get("/api/v1/unknown").await.status(), 404);
    // Services' internal routes are not public.
    for internal in ["/internal/v1/reservations", "/internal/v1/payments"] {
        let r = h.send(reqwest::Method::POST, internal).await;
        assert_problem(&r, 404);
    }
    let r = h
        .client
        .post(format!("{}/api/v1/auth/register", h.gateway))
        .body(vec![b'x'; 70_000])
        .send()
        .await
        .unwrap();
    assert_problem(&r, 413);
    assert_eq!(h.hits(), 0, "nothing refused reached an upstream");
}

/// An upstream whose port refuses connections: its paths answer 502 at once,
/// the other service's paths still work, and the gateway is not ready.
#[tokio::test]
async fn an_unreachable_upstream_is_a_502_and_not_ready() {
    let h = spawn_with(Upstream::Refusing, Upstream::Echo, &[]).await;
    assert_problem(&h.get("/api/v1/users/me").await, 502);
    // The catalog is still served.
    h.echoed("/api/v1/products", "catalog").await;
    assert_eq!(h.get("/readyz").await.status(), 503);
    assert_eq!(h.get("/healthz").await.status(), 200);
}

/// An upstream that takes the request and never answers: the client gets a
/// 504 once `upstreams.timeout_ms` has passed, not a hang and not a 502; the
/// other service is unaffected.
#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_after_the_upstream_timeout() {
    let timeout = Duration::from_millis(1_000);
    let timeout_ms = timeout.as_millis().to_string();
    let h = spawn_with(
        Upstream::Echo,
        Upstream::Hang,
        &[("upstreams.timeout_ms", timeout_ms.as_str())],
    )
    .await;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), h.get("/api/v1/products"))
        .await
        .expect("the gateway answers long before the client gives up");
    let took = started.elapsed();
    assert_problem(&r, 504);
    assert!(
        took >= timeout && took < Duration::from_secs(8),
        "answered after {took:?}"
    );
    h.echoed("/api/v1/users/me", "accounts").await;
}

/// Every other spelling of a path is refused (400) whether or not it would
/// match a route, over HTTP/1.1 and HTTP/2, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_of_a_path_never_reach_internal_routes() {
    let h = spawn().await;
    let spellings = [
        "/api/v1/products/../../../internal/v1/reservations",
        "/api/v1/products/%2e%2e/%2e%2e/%2e%2e/internal/v1/reservations",
        "/api/v1/products/%2E%2E/%2E%2E/%2E%2E/internal/v1/reservations",
        "/api/v1/products/.%2e/.%2e/.%2e/internal/v1/reservations",
        "/api/v1/products/..%2f..%2f..%2finternal/v1/reservations",
        "/api/v1/products/..%5c..%5c..%5cinternal/v1/reservations",
        "/api/v1/products/..\\..\\..\\internal/v1/reservations",
        "/api/v1/products/%252e%252e/%252e%252e/internal/v1/reservations",
        "/api/v1/categories/../../../openapi.json",
        "/api/v1/users/../../../metrics",
        "/api/v1/users/./me",
        "/api/v1/users//me",
        "/api/v1/./products",
        "/api/v1//products",
        "//api/v1/products",
        "/api/v1/products%2f",
        "/api/v1/products%5C",
        "/api/v1/products%25",
        "/api/v1/products\\x",
        // Canonical, but deliberately not routed (services ask accounts).
        "/api/v1/auth/token",
    ];
    for http2 in [false, true] {
        for path in spellings {
            // Sent as written: curl --path-as-is (off the runtime's threads,
            // which serve the gateway).
            let ca = h.ca.to_str().unwrap().to_owned();
            let url = format!("{}{path}", h.gateway);
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args([
                        "-s",
                        "--max-time",
                        "10",
                        "--path-as-is",
                        "--cacert",
                        &ca,
                        if http2 { "--http2" } else { "--http1.1" },
                        "-X",
                        "POST",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code} %{http_version}",
                        &url,
                    ])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let answer = String::from_utf8(out.stdout).unwrap();
            let (status, version) = answer.split_once(' ').unwrap();
            let expected = if path == "/api/v1/auth/token" {
                "404"
            } else {
                "400"
            };
            assert_eq!(status, expected, "{path} over {version}");
            assert_eq!(version == "2", http2, "{path}: {answer}");
        }
    }
    assert_eq!(h.hits(), 0, "no spelling reached an upstream");
    // The canonical spelling still goes through.
    h.echoed("/api/v1/products/abc", "catalog").await;
    assert_eq!(h.hits(), 1);
}

/// `/metrics` is served on the operations port only; unknown methods share
/// one label; every answer carries the security headers.
#[tokio::test]
async fn metrics_stay_off_the_public_port_and_bounded() {
    let h = spawn().await;
    let r = h.get("/metrics").await;
    assert_eq!(r.status(), 404);
    for header in [
        "strict-transport-security",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert!(r.headers().contains_key(header), "{header}");
    }
    assert_eq!(r.headers()["cache-control"], "no-store");
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("M{i}X").as_bytes()).unwrap();
        h.send(method, "/api/v1/products").await;
    }
    let text = h
        .client
        .get(format!("{}/metrics", h.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(!text.contains("M7X"), "made-up methods are not labels");
    assert!(text.contains("method=\"other\""));
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) stay on their hop in both
/// directions: those the gateway's `is_hop_by_hop` lists and those named in
/// `Connection`; the forwarding headers a client sends are replaced by the
/// gateway's own; end-to-end headers pass. Both hops are HTTP/1.1, so
/// nothing but the gateway removes them.
#[tokio::test]
async fn hop_by_hop_headers_stay_on_their_hop_both_ways() {
    let h = spawn_with(Upstream::PlainEcho, Upstream::PlainEcho, &[]).await;
    let client = http1_client(&h.ca);

    // The control: straight to the upstream, every one of these headers
    // travels both ways, so only the gateway can be what removes them below.
    let mut direct = client
        .get(format!("{}/api/v1/products", h.catalog_upstream))
        .header("connection", "x-hop, keep-alive");
    for (name, value) in DROPPED_REQUEST_HEADERS {
        direct = direct.header(name, value);
    }
    let r = direct.header(WANT_HOP_HEADERS, "1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    for (name, _) in ANSWER_HOP_HEADERS {
        assert!(
            r.headers().contains_key(name),
            "control: the upstream sent no {name}"
        );
    }
    let seen: Value = r.json().await.unwrap();
    for (name, _) in DROPPED_REQUEST_HEADERS {
        assert!(
            seen["headers"].get(name).is_some(),
            "control: {name} never left the client"
        );
    }

    let mut request = client
        .get(format!("{}/api/v1/products", h.gateway))
        .header("connection", "x-hop, keep-alive");
    for (name, value) in DROPPED_REQUEST_HEADERS {
        request = request.header(name, value);
    }
    let r = request
        .header("x-forwarded-proto", "http")
        .header("x-end-to-end", "kept")
        .header(WANT_HOP_HEADERS, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = r.headers().clone();
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["upstream"], "catalog");
    let got = seen["headers"].as_object().unwrap();

    // Towards the upstream.
    for (name, _) in DROPPED_REQUEST_HEADERS {
        assert!(
            !got.contains_key(name),
            "{name} was forwarded upstream: {got:?}"
        );
    }
    let connection = got.get("connection").and_then(Value::as_str).unwrap_or("");
    assert!(
        !connection.contains("x-hop"),
        "the client's Connection was forwarded: {connection}"
    );
    // The upstream is addressed as itself, not by the name the client used.
    let upstream_authority = h
        .catalog_upstream
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    assert_eq!(got["host"], upstream_authority, "{got:?}");
    assert_eq!(got["x-forwarded-proto"], "https");
    assert_eq!(got["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got["x-end-to-end"], "kept", "end-to-end headers pass");

    // Back towards the client.
    for (name, _) in ANSWER_HOP_HEADERS {
        assert!(
            !answer.contains_key(name),
            "{name} was relayed to the client: {answer:?}"
        );
    }
    let connection = answer
        .get("connection")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        !connection.contains("x-answer-hop"),
        "the upstream's Connection was relayed: {connection}"
    );
    assert_eq!(answer["x-end-to-end"], "kept", "end-to-end headers pass");
}

/// HEAD keeps the upstream's length; an upstream answer over the cap is a
/// 502, not buffered.
#[tokio::test]
async fn head_lengths_and_the_response_cap() {
    let h = spawn().await;
    let length = h.get("/api/v1/products").await.bytes().await.unwrap().len();
    let head = h.send(reqwest::Method::HEAD, "/api/v1/products").await;
    assert_eq!(head.status(), 200);
    // The echo's answer names the method: "HEAD" is one letter longer than "GET".
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        (length + 1).to_string().as_str()
    );

    let small = spawn_with(
        Upstream::Echo,
        Upstream::Echo,
        &[("upstreams.max_response_bytes", "64")],
    )
    .await;
    assert_problem(&small.get("/api/v1/products").await, 502);
}
