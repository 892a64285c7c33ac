//! `emporium loadgen`: an open-model load generator. Requests are started on
//! a fixed schedule whatever the answers do (a constant arrival rate), and
//! each latency is measured from the moment its request was *due*, so a slow
//! server cannot hide its slowness by slowing the generator down
//! (coordinated omission).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use tokio::sync::Mutex;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Scenario {
    /// `GET /api/v1/products/{id}` over the first 100 products.
    Product,
    /// `GET /api/v1/products?q=<word>` over a handful of words.
    Search,
}

#[derive(clap::Args)]
pub struct LoadgenArgs {
    /// Base URL: the gateway, or a service directly.
    #[arg(long)]
    url: String,
    /// The CA to trust (the shop's `certs/ca.pem`).
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "product")]
    scenario: Scenario,
    /// Requests started per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds of load (after one second of warm-up that is not counted).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests allowed in flight before new ones count as failures.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
}

const WORDS: &[&str] = &[
    "tea",
    "sencha",
    "knife",
    "garden",
    "jacket",
    "green tea",
    "oak",
    "lamp",
];

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let client = emporium_http::tls::client(args.ca.as_deref(), Duration::from_secs(10))?;
    let base = args.url.trim_end_matches('/').to_owned();
    let first: Value = client
        .get(format!("{base}/api/v1/products?limit=100"))
        .send()
        .await
        .context("cannot reach the shop")?
        .json()
        .await?;
    let ids: Vec<String> = first["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        !ids.is_empty(),
        "the shop has no products to read (run `emporium seed`)"
    );
    let targets: Vec<String> = match args.scenario {
        Scenario::Product => ids
            .iter()
            .map(|id| format!("{base}/api/v1/products/{id}"))
            .collect(),
        Scenario::Search => WORDS
            .iter()
            .map(|w| format!("{base}/api/v1/products?q={}", w.replace(' ', "+")))
            .collect(),
    };
    let targets = Arc::new(targets);
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let warmup = u64::from(args.rate);
    let total = warmup + u64::from(args.rate) * args.seconds;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if n >= warmup {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            continue;
        };
        let (client, targets, latencies, failures) = (
            client.clone(),
            targets.clone(),
            latencies.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            let url = &targets[(n as usize) % targets.len()];
            let ok = match client.get(url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            let latency = due.elapsed();
            drop(permit);
            if n >= warmup {
                if ok {
                    latencies.lock().await.push(latency.as_micros() as u64);
                } else {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64() - 1.0;
    let mut lat = latencies.lock().await.clone();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "scenario {:?}, target {}/s for {} s: {} ok, {} failed, {:.0}/s achieved; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        args.scenario,
        args.rate,
        args.seconds,
        lat.len(),
        failed,
        lat.len() as f64 / elapsed.max(0.001),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
    Ok(())
}
