//! `emporium loadgen`: an open-model load generator. Requests are started on
//! a fixed schedule whatever the answers do (a constant arrival rate), and
//! each latency is measured from the moment its request was *due*, so a slow
//! server cannot hide its slowness by slowing the generator down
//! (coordinated omission).
//!
//! The read scenarios need nothing but products. The checkout scenario first
//! prepares its customers (registered when missing, logged in, one card token
//! each) and the products in stock, then places orders at the rate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Scenario {
    /// `GET /api/v1/products/{id}` over the first 100 products.
    Product,
    /// `GET /api/v1/products?q=<word>` over a handful of words.
    Search,
    /// `POST /api/v1/orders`: one unit of a product in stock, paid with the
    /// customer's card token, by `--customers` customers in turn.
    Checkout,
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
    /// Requests started per second [default: 200; checkout: 20].
    #[arg(long)]
    rate: Option<u32>,
    /// Seconds of load (after one second of warm-up that is not counted).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests allowed in flight before new ones count as failures.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Checkout: how many customers order in turn (`loadgen-<n>@emporium.test`,
    /// registered when missing, else logged in).
    #[arg(long, default_value_t = 10)]
    customers: usize,
    /// Checkout: the card number each customer tokenizes once and pays every
    /// order with (a sandbox test card; docs/api.md lists them).
    #[arg(long, default_value = "4242424242424242")]
    card: String,
}

/// Search words that match the demo catalog, and match the same products
/// on both engines (SQLite's and PostgreSQL's full-text search stem some
/// words differently: "garden" and "jacket" do not qualify), so search
/// figures can be compared.
const WORDS: &[&str] = &[
    "tea",
    "sencha",
    "knife",
    "green tea",
    "socks",
    "beanie",
    "nordic",
    "mug",
];

/// The password of the load generator's customers (they are test accounts).
const PASSWORD: &str = "emporium load generator passphrase";

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    // A checkout answers within `checkout.answer_within_ms` (9 s) behind the
    // gateway's own limits; reads are quick.
    let timeout = match args.scenario {
        Scenario::Checkout => Duration::from_secs(30),
        Scenario::Product | Scenario::Search => Duration::from_secs(10),
    };
    let client = emporium_http::tls::client(args.ca.as_deref(), timeout)?;
    let base = args.url.trim_end_matches('/').to_owned();
    let rate = args.rate.unwrap_or(match args.scenario {
        Scenario::Checkout => 20,
        Scenario::Product | Scenario::Search => 200,
    });
    let tally = match args.scenario {
        Scenario::Product | Scenario::Search => {
            let targets = Arc::new(read_targets(&client, &base, args.scenario).await?);
            drive(rate, args.seconds, args.max_in_flight, move |n: u64| {
                let (client, targets) = (client.clone(), targets.clone());
                async move {
                    let url = &targets[(n as usize) % targets.len()];
                    let ok = match client.get(url).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    Outcome { ok, label: None }
                }
            })
            .await
        }
        Scenario::Checkout => {
            anyhow::ensure!(args.customers > 0, "--customers must be at least 1");
            let planned = u64::from(rate) * (1 + args.seconds);
            let checkout = Arc::new(Checkout::prepare(&client, &base, &args, planned).await?);
            drive(rate, args.seconds, args.max_in_flight, move |n: u64| {
                let (client, checkout) = (client.clone(), checkout.clone());
                async move { checkout.place(&client, n).await }
            })
            .await
        }
    };
    report(args.scenario, rate, args.seconds, tally);
    Ok(())
}

/// The URLs the read scenarios cycle through.
async fn read_targets(
    client: &reqwest::Client,
    base: &str,
    scenario: Scenario,
) -> anyhow::Result<Vec<String>> {
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
    Ok(match scenario {
        Scenario::Search => WORDS
            .iter()
            .map(|w| format!("{base}/api/v1/products?q={}", w.replace(' ', "+")))
            .collect(),
        Scenario::Product | Scenario::Checkout => ids
            .iter()
            .map(|id| format!("{base}/api/v1/products/{id}"))
            .collect(),
    })
}

/// What one request came to.
struct Outcome {
    /// A 2xx answer: its latency counts; anything else is a failure.
    ok: bool,
    /// What the checkout's outcomes line counts it under.
    label: Option<String>,
}

/// What the counted requests (after the warm-up) came to.
#[derive(Default)]
struct Tally {
    /// Latencies of the `ok` requests, in microseconds from when each was due.
    latencies: Vec<u64>,
    failed: u64,
    outcomes: BTreeMap<String, u64>,
    /// Seconds from the end of the warm-up to the last answer.
    elapsed_secs: f64,
}

impl Tally {
    fn count(&mut self, outcome: Outcome, latency: Duration) {
        if outcome.ok {
            self.latencies.push(latency.as_micros() as u64);
        } else {
            self.failed += 1;
        }
        if let Some(label) = outcome.label {
            *self.outcomes.entry(label).or_default() += 1;
        }
    }
}

/// Starts `request(n)` for n = 0, 1, … on a fixed schedule, `rate` a second:
/// one second of warm-up (not counted), then `seconds` of load. A request
/// that would exceed `max_in_flight` is not started and counts as failed.
async fn drive<F, Fut>(rate: u32, seconds: u64, max_in_flight: usize, request: F) -> Tally
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let warmup = u64::from(rate);
    let total = warmup + u64::from(rate) * seconds;
    let tally = Arc::new(Mutex::new(Tally {
        latencies: Vec::with_capacity(total as usize),
        ..Tally::default()
    }));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if n >= warmup {
                let over = Outcome {
                    ok: false,
                    label: Some("not started (--max-in-flight reached)".into()),
                };
                tally.lock().await.count(over, Duration::ZERO);
            }
            continue;
        };
        let answer = request(n);
        let tally = tally.clone();
        tasks.spawn(async move {
            let outcome = answer.await;
            let latency = due.elapsed();
            drop(permit);
            if n >= warmup {
                tally.lock().await.count(outcome, latency);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut tally = std::mem::take(&mut *tally.lock().await);
    tally.elapsed_secs = started.elapsed().as_secs_f64() - 1.0;
    tally
}

/// The `p` quantile (0 to 1) of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn report(scenario: Scenario, rate: u32, seconds: u64, mut tally: Tally) {
    tally.latencies.sort_unstable();
    let lat = &tally.latencies;
    println!(
        "scenario {:?}, target {}/s for {} s: {} ok, {} failed, {:.0}/s achieved; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        scenario,
        rate,
        seconds,
        lat.len(),
        tally.failed,
        lat.len() as f64 / tally.elapsed_secs.max(0.001),
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        percentile(lat, 1.0),
    );
    if matches!(scenario, Scenario::Checkout) {
        let outcomes: Vec<String> = tally
            .outcomes
            .iter()
            .map(|(label, count)| format!("{label}: {count}"))
            .collect();
        println!(
            "outcomes: {}",
            if outcomes.is_empty() {
                "none".to_owned()
            } else {
                outcomes.join(", ")
            }
        );
    }
}

/// One prepared customer: signed in, with a card token of their own.
struct Customer {
    access_token: String,
    card_token: String,
}

/// What the checkout scenario orders with.
struct Checkout {
    orders_url: String,
    customers: Vec<Customer>,
    /// Ids of products with stock when the run began.
    products: Vec<String>,
}

impl Checkout {
    /// Customers and products for `planned` orders (warm-up included).
    async fn prepare(
        client: &reqwest::Client,
        base: &str,
        args: &LoadgenArgs,
        planned: u64,
    ) -> anyhow::Result<Self> {
        let (products, units) = products_in_stock(client, base).await?;
        // One after another: registering and logging in hash passwords, and
        // accounts answers 503 when its hashing queue is full.
        let mut customers = Vec::with_capacity(args.customers);
        for i in 0..args.customers {
            customers.push(prepare_customer(client, base, i, &args.card).await?);
        }
        eprintln!(
            "checkout: {} customers ready; {} products in stock ({units} units) for {planned} orders{}",
            customers.len(),
            products.len(),
            if units < planned as i64 {
                " (expect out_of_stock rejections)"
            } else {
                ""
            },
        );
        Ok(Self {
            orders_url: format!("{base}/api/v1/orders"),
            customers,
            products,
        })
    }

    /// Places order `n`: customer and product in turn, a fresh
    /// `Idempotency-Key`, one unit.
    async fn place(&self, client: &reqwest::Client, n: u64) -> Outcome {
        let n = n as usize;
        let customer = &self.customers[n % self.customers.len()];
        let product = &self.products[n % self.products.len()];
        let body = json!({
            "items": [{"product_id": product, "quantity": 1}],
            "shipping_address": {
                "name": "Load Test",
                "line1": "Main 1",
                "city": "Berlin",
                "postal_code": "10117",
                "country": "DE",
            },
            "payment": {"token": customer.card_token},
        });
        let sent = client
            .post(self.orders_url.as_str())
            .bearer_auth(&customer.access_token)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return failed(transport_error(&e)),
        };
        let status = response.status();
        let answer: Value = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) => return failed(transport_error(&e)),
        };
        let code = status.as_u16();
        if !status.is_success() {
            // A problem names its kind: `/problems/too-many-requests`.
            return failed(match answer["type"].as_str() {
                Some(kind) => format!("{code} {}", kind.rsplit('/').next().unwrap_or(kind)),
                None => code.to_string(),
            });
        }
        let order = answer["status"].as_str().unwrap_or("(no status)");
        let label = match (order, answer["rejection_reason"].as_str()) {
            ("rejected", Some(reason)) => format!("{code} rejected ({reason})"),
            (order, _) => format!("{code} {order}"),
        };
        Outcome {
            ok: true,
            label: Some(label),
        }
    }
}

fn failed(label: String) -> Outcome {
    Outcome {
        ok: false,
        label: Some(label),
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transport error".into()
    }
}

/// The ids of listed products with stock (the newest 100), and their units.
async fn products_in_stock(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<(Vec<String>, i64)> {
    let list: Value = client
        .get(format!("{base}/api/v1/products?in_stock=true&limit=100"))
        .send()
        .await
        .context("cannot reach the shop")?
        .error_for_status()
        .context("listing the products in stock")?
        .json()
        .await?;
    let mut ids = Vec::new();
    let mut units = 0;
    for p in list["items"].as_array().into_iter().flatten() {
        let available = p["available"].as_i64().unwrap_or(0);
        let priced = p["price"]["amount"].as_i64().unwrap_or(0) > 0;
        if let (Some(id), true, true) = (p["id"].as_str(), available > 0, priced) {
            ids.push(id.to_owned());
            units += available;
        }
    }
    anyhow::ensure!(
        !ids.is_empty(),
        "the shop has no products in stock to order (run `emporium seed`, or restock)"
    );
    Ok((ids, units))
}

/// Customer `i`: registered (unless they exist, or registrations are
/// throttled), logged in, and a card tokenized by them. Tokens are not used
/// up by an authorization, so one serves every order of the run.
async fn prepare_customer(
    client: &reqwest::Client,
    base: &str,
    i: usize,
    card: &str,
) -> anyhow::Result<Customer> {
    let email = format!("loadgen-{i}@emporium.test");
    let url = format!("{base}/api/v1/auth/register");
    let body = json!({"email": email, "password": PASSWORD, "name": format!("Load Test {i}")});
    let r = send_retrying(|| client.post(url.as_str()).json(&body)).await?;
    // Taken: a customer from an earlier run. Throttled (10 registrations an
    // hour per client address by default): perhaps one too, as logging in tells.
    let throttled = match r.status().as_u16() {
        201 | 409 => false,
        429 => true,
        _ => anyhow::bail!("registering {email}: {}", problem_text(r).await),
    };
    let url = format!("{base}/api/v1/auth/login");
    let body = json!({"email": email, "password": PASSWORD});
    let r = send_retrying(|| client.post(url.as_str()).json(&body)).await?;
    let access_token = match r.status().as_u16() {
        200 => {
            let pair: Value = r.json().await.context("reading a login's answer")?;
            pair["access_token"]
                .as_str()
                .context("the login answered no access_token")?
                .to_owned()
        }
        401 if throttled => anyhow::bail!(
            "{email} does not exist and registrations from this address are throttled \
             (accounts' login.max_registrations_per_address, 10 an hour): use fewer \
             --customers, wait, or raise EMPORIUM_LOGIN_MAX_REGISTRATIONS_PER_ADDRESS \
             on a served accounts"
        ),
        401 => anyhow::bail!(
            "cannot log in as {email}: it has another password than the load generator's"
        ),
        _ => anyhow::bail!("logging in as {email}: {}", problem_text(r).await),
    };
    // Amex has four-digit codes.
    let cvc = if card.starts_with("34") || card.starts_with("37") {
        "1234"
    } else {
        "123"
    };
    let url = format!("{base}/api/v1/payments/tokens");
    let body = json!({"number": card, "exp_month": 12, "exp_year": 2040, "cvc": cvc});
    let r = send_retrying(|| {
        client
            .post(url.as_str())
            .bearer_auth(&access_token)
            .json(&body)
    })
    .await?;
    anyhow::ensure!(
        r.status() == 201,
        "tokenizing a card for {email}: {}",
        problem_text(r).await
    );
    let token: Value = r.json().await.context("reading a card token")?;
    let card_token = token["token"]
        .as_str()
        .context("the tokenization answered no token")?
        .to_owned();
    Ok(Customer {
        access_token,
        card_token,
    })
}

/// Sends what `make` builds, again after a 429 or 503 whose `Retry-After`
/// is at most ten seconds (password hashing saturated, a card tokenization
/// over the per-customer rate), up to five times in all.
async fn send_retrying<F>(make: F) -> anyhow::Result<reqwest::Response>
where
    F: Fn() -> reqwest::RequestBuilder,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = make().send().await.context("cannot reach the shop")?;
        let wait = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match wait {
            Some(wait)
                if attempts < 5
                    && matches!(r.status().as_u16(), 429 | 503)
                    && wait <= Duration::from_secs(10) =>
            {
                tokio::time::sleep(wait).await;
            }
            _ => return Ok(r),
        }
    }
}

/// A refusal for a person: the status, and the problem's detail or title.
async fn problem_text(r: reqwest::Response) -> String {
    let status = r.status();
    let problem: Value = r.json().await.unwrap_or(Value::Null);
    let said = problem["detail"]
        .as_str()
        .or_else(|| problem["title"].as_str())
        .unwrap_or("");
    format!("{status} {said}").trim_end().to_owned()
}
