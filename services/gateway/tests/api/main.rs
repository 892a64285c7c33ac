//! The gateway through HTTPS, in front of a stand-in upstream that echoes what
//! it received (the real accounts service behind it is exercised by the
//! `emporium up` end-to-end test).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use emporium_config::Loader;
use emporium_gateway::{Application, GatewaySettings};
use emporium_http::tls::CertDir;
use emporium_http::{HttpServer, HttpSettings, Shutdown, ShutdownTrigger};
use serde_json::{Value, json};

struct Harness {
    gateway: String,
    hits: Hits,
    ops: String,
    ca: std::path::PathBuf,
    client: reqwest::Client,
    _triggers: Vec<ShutdownTrigger>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Requests the upstream received.
type Hits = std::sync::Arc<std::sync::atomic::AtomicUsize>;

async fn echo(
    axum::extract::State(hits): axum::extract::State<Hits>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    axum::Json(json!({
        "method": method.as_str(),
        "uri": uri.path_and_query().map(|p| p.to_string()),
        "body": body,
        "x_forwarded_for": h("x-forwarded-for"),
        "x_request_id": h("x-request-id"),
        "traceparent": h("traceparent"),
        "authorization": h("authorization"),
        "connection": h("connection"),
        "x_hop": h("x-hop"),
    }))
}

/// Starts the echo upstream (unless `upstream_down`) and the gateway in front of it.
async fn spawn(upstream_down: bool) -> Harness {
    spawn_with(upstream_down, &[]).await
}

/// As [`spawn`], with gateway settings overridden.
async fn spawn_with(upstream_down: bool, overrides: &[(&str, &str)]) -> Harness {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("emporium-gateway-test-{}", uuid_like()));
    let certs = CertDir(dir.clone());
    certs.ensure(&["accounts", "gateway"], &[]).unwrap();
    let mut triggers = Vec::new();
    let hits = Hits::default();

    let upstream_settings = HttpSettings::loopback(&certs.cert("accounts"), &certs.key("accounts"));
    let upstream = HttpServer::bind(&upstream_settings).unwrap();
    let upstream_url = upstream.base_url();
    if upstream_down {
        drop(upstream);
    } else {
        let (t, s) = Shutdown::new();
        triggers.push(t);
        let router = Router::new()
            .route("/{*path}", any(echo))
            .with_state(hits.clone());
        tokio::spawn(upstream.run_until_stopped(router, s));
    }

    let settings = Loader::new(emporium_gateway::config::DEFAULTS)
        .unwrap()
        .set("http.host", "127.0.0.1")
        .unwrap()
        .set("http.port", "0")
        .unwrap()
        .set("http.tls_cert", certs.cert("gateway").to_str().unwrap())
        .unwrap()
        .set("http.tls_key", certs.key("gateway").to_str().unwrap())
        .unwrap()
        .set("http.body_limit_bytes", "65536")
        .unwrap()
        .set("upstreams.accounts", &upstream_url)
        .unwrap()
        .set("upstreams.catalog", &upstream_url)
        .unwrap()
        .set("upstreams.ca_cert", certs.ca().to_str().unwrap())
        .unwrap()
        .set("ops.port", "0")
        .unwrap();
    let settings: GatewaySettings = overrides
        .iter()
        .fold(settings, |l, (k, v)| l.set(k, v).unwrap())
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
        hits,
        ops: ops_url,
        ca: certs.ca(),
        client,
        _triggers: triggers,
        _dir: TempDir(dir),
    }
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

#[tokio::test]
async fn forwards_account_paths_with_context() {
    let h = spawn(false).await;
    let r = h
        .client
        .post(format!("{}/api/v1/auth/login?x=1", h.gateway))
        .header("x-request-id", "req-42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
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
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/api/v1/auth/login?x=1");
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["authorization"], "Bearer abc");
    assert_eq!(seen["x_request_id"], "req-42");
    // The client cannot choose its own address: the gateway writes the peer's.
    assert_eq!(seen["x_forwarded_for"], "127.0.0.1");
    // Same trace, new parent span.
    let tp = seen["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(!tp.contains("00f067aa0ba902b7"), "{tp}");

    for path in [
        "/api/v1/users/me",
        "/api/v1/users",
        "/.well-known/jwks.json",
        "/api/v1/categories",
        "/api/v1/products/x/stock",
        "/api/v1/warehouses",
        "/api/v1/stock/movements",
    ] {
        let r = h
            .client
            .get(format!("{}{path}", h.gateway))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn refuses_what_it_does_not_route_and_what_is_too_big() {
    let h = spawn(false).await;
    let r = h
        .client
        .get(format!("{}/api/v1/unknown", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Services' internal routes are not public.
    let r = h
        .client
        .post(format!("{}/internal/v1/reservations", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = h
        .client
        .post(format!("{}/api/v1/auth/register", h.gateway))
        .body(vec![b'x'; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_and_not_ready() {
    let h = spawn(true).await;
    let r = h
        .client
        .get(format!("{}/api/v1/users/me", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = h
        .client
        .get(format!("{}/readyz", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = h
        .client
        .get(format!("{}/healthz", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Every spelling of a path that leaves the public prefix is refused before
/// routing, over HTTP/1.1 and HTTP/2, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_of_a_path_never_reach_internal_routes() {
    let h = spawn(false).await;
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
            assert!(
                status == "400" || status == "404",
                "{path} over {version}: {status}"
            );
            assert_eq!(version == "2", http2, "{path}: {answer}");
        }
    }
    assert_eq!(
        h.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no spelling reached the upstream"
    );
    // The canonical spelling still goes through.
    let r = h
        .client
        .get(format!("{}/api/v1/products/abc", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `/metrics` is served on the operations port only; unknown methods share
/// one label; every answer carries the security headers.
#[tokio::test]
async fn metrics_stay_off_the_public_port_and_bounded() {
    let h = spawn(false).await;
    let r = h
        .client
        .get(format!("{}/metrics", h.gateway))
        .send()
        .await
        .unwrap();
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
        h.client
            .request(method, format!("{}/api/v1/products", h.gateway))
            .send()
            .await
            .unwrap();
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

/// Headers the client names in `Connection` belong to that hop and are not
/// forwarded; HEAD keeps the upstream's length; an upstream answer over the
/// cap is a 502, not buffered.
#[tokio::test]
async fn hop_headers_head_lengths_and_the_response_cap() {
    let h = spawn(false).await;
    let client = reqwest::Client::builder()
        .http1_only()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&h.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let seen: Value = client
        .get(format!("{}/api/v1/products", h.gateway))
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["x_hop"], Value::Null, "{seen}");
    assert_eq!(seen["connection"], Value::Null, "{seen}");

    let get = h
        .client
        .get(format!("{}/api/v1/products", h.gateway))
        .send()
        .await
        .unwrap();
    let length = get.bytes().await.unwrap().len();
    let head = h
        .client
        .head(format!("{}/api/v1/products", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    // The echo's answer names the method: "HEAD" is one letter longer than "GET".
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        (length + 1).to_string().as_str()
    );

    let small = spawn_with(false, &[("upstreams.max_response_bytes", "64")]).await;
    let r = small
        .client
        .get(format!("{}/api/v1/products", small.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
