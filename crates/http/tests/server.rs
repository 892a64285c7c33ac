//! The shared server through a real HTTPS connection: graceful shutdown drains
//! in-flight requests, and the standard layers answer errors as problems.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use emporium_http::tls::CertDir;
use emporium_http::{AppJson, HttpServer, HttpSettings, ServiceName, Shutdown, standard_layers};

/// One set of certificates for the whole binary (tests run in parallel).
fn certs() -> CertDir {
    static CERTS: std::sync::OnceLock<CertDir> = std::sync::OnceLock::new();
    CERTS
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("emporium-http-tests-{}", std::process::id()));
            let certs = CertDir(dir);
            certs.ensure(&["svc"], &[]).unwrap();
            certs
        })
        .clone()
}

fn settings(certs: &CertDir) -> HttpSettings {
    let mut s = HttpSettings::loopback(&certs.cert("svc"), &certs.key("svc"));
    s.request_timeout_ms = 300;
    s.body_limit_bytes = 1024;
    s
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(150)).await;
    "done"
}

async fn echo(AppJson(v): AppJson<serde_json::Value>) -> AppJson<serde_json::Value> {
    AppJson(v)
}

async fn very_slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late"
}

async fn panics() -> &'static str {
    panic!("a bug")
}

fn app(settings: &HttpSettings) -> Router {
    let routes = Router::new()
        .route("/slow", get(slow))
        .route("/very-slow", get(very_slow))
        .route("/panic", get(panics))
        .route("/echo", post(echo));
    standard_layers(routes, ServiceName("test"), settings)
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let certs = certs();
    let settings = settings(&certs);
    let server = HttpServer::bind(&settings).unwrap();
    let url = server.base_url();
    let (trigger, shutdown) = Shutdown::new();
    let running = tokio::spawn(server.run_until_stopped(app(&settings), shutdown));
    let client = emporium_http::tls::client(Some(&certs.ca()), Duration::from_secs(5)).unwrap();

    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/slow")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    trigger.fire();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the server stops once drained")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/slow"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn errors_from_every_layer_are_problems() {
    let certs = certs();
    let settings = settings(&certs);
    let server = HttpServer::bind(&settings).unwrap();
    let url = server.base_url();
    let (_trigger, shutdown) = Shutdown::new();
    tokio::spawn(server.run_until_stopped(app(&settings), shutdown));
    let client = emporium_http::tls::client(Some(&certs.ca()), Duration::from_secs(5)).unwrap();
    let check = |r: reqwest::Response, status: u16| {
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{status}"
        );
    };
    check(
        client.get(format!("{url}/very-slow")).send().await.unwrap(),
        503,
    );
    check(
        client.get(format!("{url}/panic")).send().await.unwrap(),
        500,
    );
    check(
        client
            .post(format!("{url}/echo"))
            .header("content-type", "application/json")
            .body(vec![b' '; 4096])
            .send()
            .await
            .unwrap(),
        413,
    );
    check(
        client
            .post(format!("{url}/echo"))
            .body("{}")
            .send()
            .await
            .unwrap(),
        415,
    );
    check(client.get(format!("{url}/echo")).send().await.unwrap(), 405);
    check(
        client.get(format!("{url}/nothing")).send().await.unwrap(),
        404,
    );
    let r = client
        .post(format!("{url}/echo"))
        .json(&serde_json::json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
