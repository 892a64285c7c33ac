//! What the service client adds per call: 10,000 keyed POSTs to a trivial
//! route over HTTPS, once with bare `reqwest` (the same pooled client, headers
//! and body) and once through [`ServiceClient`] with a client-credentials
//! token source. Prints p50/p99 per call and how many tokens were fetched.
//!
//! `cargo bench -p emporium-client --bench overhead` (release build).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use emporium_client::{ClientCredentials, ClientSettings, ServiceClient};
use emporium_http::tls::CertDir;
use emporium_http::{HttpServer, HttpSettings, ServiceName, Shutdown, standard_layers};

const CALLS: usize = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<28} p50 {:>7.1} µs   p99 {:>7.1} µs",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = std::env::temp_dir().join(format!("emporium-client-bench-{}", std::process::id()));
    let certs = CertDir(dir.clone());
    certs.ensure(&["svc"], &[]).unwrap();
    let settings = HttpSettings::loopback(&certs.cert("svc"), &certs.key("svc"));
    let server = HttpServer::bind(&settings).unwrap();
    let base = server.base_url();
    let token_requests = Arc::new(AtomicU64::new(0));
    let counted = token_requests.clone();
    let routes = Router::new()
        .route(
            "/things",
            post(|| async { ([("content-type", "application/json")], r#"{"ok":true}"#) }),
        )
        .route(
            "/token",
            post(move || {
                counted.fetch_add(1, Ordering::Relaxed);
                async {
                    (
                        [("content-type", "application/json")],
                        r#"{"access_token":"t","token_type":"Bearer","expires_in":900,"scope":""}"#,
                    )
                }
            }),
        );
    let app = standard_layers(routes, ServiceName("bench"), &settings);
    let (trigger, shutdown) = Shutdown::new();
    let running = tokio::spawn(server.run_until_stopped(app, shutdown));
    let http = emporium_http::tls::client(Some(&certs.ca()), Duration::from_secs(5)).unwrap();
    let body = serde_json::json!({"id": uuid::Uuid::nil(), "items": [{"product_id": uuid::Uuid::nil(), "quantity": 1}]});

    // Warm both paths (connection, TLS session) before measuring.
    let url = format!("{base}/things");
    let tokens = Arc::new(ClientCredentials::new(
        http.clone(),
        reqwest::Url::parse(&format!("{base}/token")).unwrap(),
        "bench",
        emporium_config::Secret::new("secret"),
        None,
    ));
    let client = ServiceClient::new(
        http.clone(),
        reqwest::Url::parse(&base).unwrap(),
        tokens.clone(),
        ClientSettings::default(),
    );

    for round in 0..2 {
        let mut bare = Vec::with_capacity(CALLS);
        for i in 0..CALLS {
            let started = Instant::now();
            let r = http
                .post(&url)
                .bearer_auth("t")
                .header("idempotency-key", format!("bare-{round}-{i}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            let _: serde_json::Value = r.json().await.unwrap();
            bare.push(started.elapsed());
        }
        let mut through = Vec::with_capacity(CALLS);
        for i in 0..CALLS {
            let started = Instant::now();
            let reply = client
                .post("/things")
                .json(&body)
                .unwrap()
                .idempotency_key(&format!("client-{round}-{i}"))
                .unwrap()
                .send::<serde_json::Value>()
                .await
                .unwrap();
            assert!(reply.status.is_success());
            through.push(started.elapsed());
        }
        if round == 1 {
            println!("{CALLS} keyed calls each, sequential, HTTPS on loopback:");
            report("bare reqwest", bare);
            report("ServiceClient", through);
            println!(
                "token requests for {} client calls: {}",
                2 * CALLS,
                token_requests.load(Ordering::Relaxed)
            );
        }
    }
    trigger.fire();
    let _ = running.await;
    let _ = std::fs::remove_dir_all(dir);
}
