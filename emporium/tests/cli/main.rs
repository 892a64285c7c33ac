//! The `emporium` binary as a newcomer and an operator run it: `up` on a fresh
//! data directory and again after a restart, and `serve` on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod events;
mod monitoring;
mod orders;
mod payments;
mod process;
mod traces;
mod walkthrough;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use process::Proc;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "owner@shop.test";
const ADMIN_PASSWORD: &str = "the owner's long passphrase";
/// A fixed key-encryption key for the served accounts (32 bytes, base64).
const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn client(ca: &std::path::Path) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    emporium_http::tls::client(Some(ca), Duration::from_secs(30)).unwrap()
}

struct TempDir(std::path::PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("emporium-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_up(data: &std::path::Path) -> (Proc, String) {
    let data = data.to_str().unwrap();
    let mut up = Proc::spawn(
        &["up", "--data-dir", data, "--port", "0"],
        &[
            ("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL),
            ("EMPORIUM_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    );
    let url = shop_url(&mut up, Duration::from_secs(60));
    (up, url)
}

/// The shop's base URL from `up`'s "shop:" line, once printed within `timeout`.
fn shop_url(up: &mut Proc, timeout: Duration) -> String {
    let line = up.wait_for(|l| l.trim_start().starts_with("shop:"), timeout);
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches("/api/v1")
        .to_owned()
}

/// `emporium up` on the data directory `dir`, on any free port, with
/// nothing set for its admin.
/// `emporium loadgen --scenario checkout` against `base` (trusting `ca`) by
/// two customers of its own, at `rate` orders a second for `seconds`.
fn checkout_load(base: &str, ca: &std::path::Path, rate: u32, seconds: u32) -> Proc {
    let (rate, seconds) = (rate.to_string(), seconds.to_string());
    Proc::spawn(
        &[
            "loadgen",
            "--url",
            base,
            "--ca",
            ca.to_str().unwrap(),
            "--scenario",
            "checkout",
            "--customers",
            "2",
            "--rate",
            &rate,
            "--seconds",
            &seconds,
        ],
        &[],
    )
}

fn up_on(dir: &str) -> Proc {
    Proc::spawn(&["up", "--data-dir", dir, "--port", "0"], &[])
}

/// `up`'s "admin:" line, once printed (within a minute).
fn admin_line(up: &mut Proc) -> String {
    up.wait_for(
        |l| l.trim_start().starts_with("admin:"),
        Duration::from_secs(60),
    )
}

/// The generated password an "admin:" line shows.
fn shown_password(line: &str) -> &str {
    line.split(" / ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
}

/// Logs in, which must succeed, and returns the token pair.
async fn tokens(client: &reqwest::Client, base: &str, email: &str, password: &str) -> Value {
    let r = login(client, base, email, password).await;
    assert_eq!(r.status(), 200, "login of {email}");
    r.json().await.unwrap()
}

/// Logs in, which must succeed, and returns the access token.
async fn access_token(client: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let pair = tokens(client, base, email, password).await;
    pair["access_token"].as_str().unwrap().to_owned()
}

/// GETs `url` with `token`.
async fn get(client: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    client.get(url).bearer_auth(token).send().await.unwrap()
}

/// GETs `url` with `token` and reads the JSON answer.
async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    get(client, url, token).await.json().await.unwrap()
}

async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let body = json!({"email": email, "password": password});
    post(
        client,
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(&body),
    )
    .await
}

/// POSTs to `url`, with `token` and with `body` as JSON when given.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = client.post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

/// Registers a customer, which must succeed, and returns the new user.
async fn register(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
    name: &str,
) -> Value {
    let body = json!({"email": email, "password": password, "name": name});
    let r = post(
        client,
        &format!("{base}/api/v1/auth/register"),
        None,
        Some(&body),
    )
    .await;
    assert_eq!(r.status(), 201, "registration of {email}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_shop_over_https_and_keeps_data_across_restarts() {
    let data = TempDir::new("up");
    let (mut up, base) = start_up(&data.0);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = data.0.join("certs").join("ca.pem");
    assert!(ca.exists(), "the CA is generated under the data directory");
    let client = client(&ca);

    let (newcomer, password) = ("newcomer@example.com", "a walk in the park");
    register(&client, &base, newcomer, password, "New").await;
    let pair = tokens(&client, &base, newcomer, password).await;
    let me = get_json(
        &client,
        &format!("{base}/api/v1/users/me"),
        pair["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(me["email"], "newcomer@example.com");
    // The admin from the environment exists and is an admin.
    let admin_token = access_token(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let users = format!("{base}/api/v1/users");
    assert_eq!(status(&client, &users, &admin_token).await, 200);
    // The catalog behind the same origin trusts the same tokens.
    let admin = Some(admin_token.as_str());
    let categories = format!("{base}/api/v1/categories");
    let tea = json!({"name": "Tea"});
    let r = post(&client, &categories, admin, Some(&tea)).await;
    let category: Value = r.json().await.unwrap();
    let product = json!({"sku": "TEA-1", "name": "Green tea", "price": {"amount": 450, "currency": "EUR"},
                         "category_id": category["id"]});
    let products = format!("{base}/api/v1/products");
    let r = post(&client, &products, admin, Some(&product)).await;
    assert_eq!(r.status(), 201);
    let product: Value = r.json().await.unwrap();
    let r = client
        .get(format!(
            "{base}/api/v1/products/{}",
            product["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "anyone can read products");
    // Plain HTTP is not served.
    let plain = reqwest::Client::new()
        .get(base.replace("https://", "http://") + "/healthz")
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // The load generator reads the seeded catalog through the gateway.
    let mut load = Proc::spawn(
        &[
            "loadgen",
            "--url",
            &base,
            "--ca",
            ca.to_str().unwrap(),
            "--rate",
            "50",
            "--seconds",
            "1",
        ],
        &[],
    );
    assert!(load.wait_exit(Duration::from_secs(30)));
    let report = load.output().join("\n");
    assert!(report.contains("50 ok, 0 failed"), "{report}");
    // And checks out through it: two customers of its own (registered,
    // logged in, a card each), one unit of a product in stock per order.
    let mut load = checkout_load(&base, &ca, 5, 1);
    assert!(load.wait_exit(Duration::from_secs(60)));
    // Its last line may still be on its way from the pipe.
    let printed = within(Duration::from_secs(5), || {
        std::future::ready(load.output().iter().any(|l| l.starts_with("outcomes:")))
    })
    .await;
    let report = load.output().join("\n");
    assert!(printed, "{report}");
    assert!(report.contains("5 ok, 0 failed"), "{report}");
    assert!(report.contains("outcomes: 201 confirmed: 5"), "{report}");

    assert!(up.terminate(Duration::from_secs(30)), "up stops on SIGTERM");
    up.assert_printed("Emporium stopped.");

    // Restart on the same data directory: same CA, same accounts, same refresh session.
    let ca_before = std::fs::read(&ca).unwrap();
    let (mut up, base) = start_up(&data.0);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before);
    let r = login(&client, &base, newcomer, password).await;
    assert_eq!(r.status(), 200);
    let refresh = json!({"refresh_token": pair["refresh_token"]});
    let r = post(
        &client,
        &format!("{base}/api/v1/auth/refresh"),
        None,
        Some(&refresh),
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "a refresh token from before the restart still works"
    );
    assert!(up.terminate(Duration::from_secs(30)));
}

/// The mode bits a local user other than the owner could use.
#[cfg(unix)]
fn others_bits(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o077
}

async fn status(client: &reqwest::Client, url: &str, token: &str) -> u16 {
    get(client, url, token).await.status().as_u16()
}

/// Polls `check` until it holds, for at most `timeout`; false if it never did.
async fn within<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `url` answers `want` with `token`, for at most five seconds.
async fn answers_within(client: &reqwest::Client, url: &str, token: &str, want: u16) -> bool {
    answers_within_for(client, url, token, want, Duration::from_secs(5)).await
}

/// Polls until `url` answers `want` with `token`, for at most `timeout`.
async fn answers_within_for(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    want: u16,
    timeout: Duration,
) -> bool {
    within(timeout, || async {
        status(client, url, token).await == want
    })
    .await
}

/// The key id in a JWT's header.
fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The key ids the shop publishes at `/.well-known/jwks.json`.
async fn published_kids(client: &reqwest::Client, base: &str) -> Vec<String> {
    let jwks: Value = client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts the shop publishes exactly the key ids `want` (in this order)
/// within thirty seconds; `what` names the failure.
async fn publishes_within(client: &reqwest::Client, base: &str, want: &[String], what: &str) {
    assert!(
        within(Duration::from_secs(30), || async {
            published_kids(client, base).await == want
        })
        .await,
        "{what}: {:?}",
        published_kids(client, base).await
    );
}

/// Through the whole shop: a demoted admin's and an ended session's tokens
/// are refused by every service within seconds; the data directory is
/// private; signing keys survive a key-encryption-key rotation; metrics stay
/// off the public port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_revokes_tokens_everywhere_and_keeps_its_secrets() {
    let data = TempDir::new("up-secure");
    let (mut up, base) = start_up(&data.0);
    let ca = data.0.join("certs").join("ca.pem");
    let client = client(&ca);

    #[cfg(unix)]
    {
        assert_eq!(others_bits(&data.0), 0, "the data directory is private");
        // Every secret below it, the TLS private keys under certs/ included.
        let mut dirs = vec![data.0.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    dirs.push(path);
                } else if !name.ends_with(".pem") || name.ends_with("-key.pem") {
                    // Public certificates (`*.pem` but keys) may be read by anyone.
                    assert_eq!(
                        others_bits(&path),
                        0,
                        "{} is readable by others",
                        path.display()
                    );
                }
            }
        }
    }

    let admin = access_token(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (deputy_email, deputy_password) = ("deputy@example.com", "a deputy's passphrase");
    let deputy = register(&client, &base, deputy_email, deputy_password, "Deputy").await;
    let deputy_id = deputy["id"].as_str().unwrap().to_owned();
    let promote = |roles: Value| {
        client
            .patch(format!("{base}/api/v1/users/{deputy_id}"))
            .bearer_auth(&admin)
            .json(&json!({ "roles": roles }))
            .send()
    };
    assert_eq!(
        promote(json!(["customer", "admin"]))
            .await
            .unwrap()
            .status(),
        200
    );
    let deputy_token = || access_token(&client, &base, deputy_email, deputy_password);
    let token = deputy_token().await;
    let users = format!("{base}/api/v1/users");
    let warehouses = format!("{base}/api/v1/warehouses");
    assert_eq!(status(&client, &users, &token).await, 200);
    assert_eq!(status(&client, &warehouses, &token).await, 200);

    // Demoted: accounts refuses at once, the catalog within seconds.
    assert_eq!(promote(json!(["customer"])).await.unwrap().status(), 200);
    assert_eq!(status(&client, &users, &token).await, 403);
    assert!(
        answers_within(&client, &warehouses, &token, 401).await,
        "the catalog still takes the demoted admin's token"
    );

    // A session ended by logout: refused by accounts and by the catalog.
    let token = deputy_token().await;
    assert_eq!(
        status(&client, &warehouses, &token).await,
        403,
        "a customer now"
    );
    let logout = format!("{base}/api/v1/auth/logout");
    let r = post(&client, &logout, Some(token.as_str()), None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        status(&client, &format!("{base}/api/v1/users/me"), &token).await,
        401
    );
    assert!(answers_within(&client, &warehouses, &token, 401).await);

    // Metrics: not on the public origin, on the operations port.
    assert_eq!(status(&client, &format!("{base}/metrics"), "x").await, 404);
    let ops = up
        .output()
        .iter()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix("metrics:")
                .and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
        })
        .unwrap();
    let metrics = client.get(&ops).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("http_requests_total")
    );

    // A key-encryption-key rotation while stopped: a new kek, the old kept
    // aside, and the shop signs and verifies as before.
    assert!(up.terminate(Duration::from_secs(30)));
    let kek_before = std::fs::read(data.0.join("kek")).unwrap();
    let mut rotate = Proc::spawn(
        &[
            "accounts",
            "rotate-kek",
            "--data-dir",
            data.0.to_str().unwrap(),
        ],
        &[],
    );
    assert!(rotate.wait_exit(Duration::from_secs(30)));
    assert_ne!(std::fs::read(data.0.join("kek")).unwrap(), kek_before);
    assert_eq!(
        std::fs::read(data.0.join("kek.previous")).unwrap(),
        kek_before
    );
    #[cfg(unix)]
    assert_eq!(others_bits(&data.0.join("kek")), 0);
    rotate.assert_printed("signing keys re-wrapped");
    // Without the old key at hand, the keys must open with the new one alone.
    std::fs::rename(data.0.join("kek.previous"), data.0.join("kek.old")).unwrap();
    let (mut up, base) = start_up(&data.0);
    let admin = access_token(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let users = format!("{base}/api/v1/users");
    assert_eq!(status(&client, &users, &admin).await, 200);
    assert!(up.terminate(Duration::from_secs(30)));

    // `serve accounts` refuses to start without a key-encryption key.
    let db = data.0.join("served.db");
    let url = format!("sqlite://{}", db.display());
    let mut served = Proc::spawn_without(
        &["serve", "accounts", "--port", "0", "--insecure-http"],
        &[("EMPORIUM_DATABASE_URL", &url)],
        &["EMPORIUM_KEYS_KEK", "EMPORIUM_KEYS_KEK_FILE"],
    );
    served.assert_fails_saying("no key-encryption key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_generates_and_shows_an_admin_password_once() {
    let data = TempDir::new("up-generated");
    let dir = data.0.to_str().unwrap();
    let mut up = up_on(dir);
    let line = admin_line(&mut up);
    assert!(line.contains("generated now and shown once"), "{line}");
    let password = shown_password(&line).to_owned();
    let base = shop_url(&mut up, Duration::from_secs(5));
    let client = client(&data.0.join("certs").join("ca.pem"));
    tokens(&client, &base, "admin@emporium.test", &password).await;
    assert!(up.terminate(Duration::from_secs(30)));
    let mut again = up_on(dir);
    let line = admin_line(&mut again);
    assert!(!line.contains(&password), "the password is shown only once");
    assert!(again.terminate(Duration::from_secs(30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_each_service_as_its_own_process_on_postgres() {
    let db = emporium_db::testing::TestDatabase::postgres()
        .await
        .unwrap();
    let dir = TempDir::new("serve");
    let certs = dir.0.join("certs");
    let certs_s = certs.to_str().unwrap();
    let mut certs_cmd = Proc::spawn(&["certs", "--dir", certs_s], &[]);
    assert!(certs_cmd.wait_exit(Duration::from_secs(30)));
    let pem = |name: &str| certs.join(name).to_str().unwrap().to_owned();

    let mut migrate = Proc::spawn(
        &["migrate", "accounts"],
        &[("EMPORIUM_DATABASE_URL", &db.url)],
    );
    assert!(migrate.wait_exit(Duration::from_secs(30)));

    // Listen on RabbitMQ (on an exchange of this test's own) before accounts starts.
    let exchange = format!("emporium-test.events.{}", uuid::Uuid::now_v7().simple());
    // Declared before the listener and the processes: dropped after them, even on failure.
    let _forget = events::RabbitCleanup::listener(&exchange);
    let (recorder, _listening) = events::listen_on_rabbitmq(&exchange).await;

    let (mut accounts, accounts_url) = serve(
        "accounts",
        &certs,
        Some(exchange.as_str()),
        &[
            ("EMPORIUM_ADMIN_EMAIL", ADMIN_EMAIL),
            ("EMPORIUM_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("EMPORIUM_DATABASE_URL", &db.url),
            ("EMPORIUM_KEYS_KEK", KEK),
            // Re-read the signing keys every second, so a rotation shows at once.
            ("EMPORIUM_TOKENS_KEY_RELOAD_SECS", "1"),
        ],
    );

    let catalog_db = emporium_db::testing::TestDatabase::postgres()
        .await
        .unwrap();
    let jwks_url = format!("{accounts_url}/.well-known/jwks.json");
    let (mut catalog, catalog_url) = serve(
        "catalog",
        &certs,
        Some(exchange.as_str()),
        &[
            ("EMPORIUM_DATABASE_URL", &catalog_db.url),
            ("EMPORIUM_AUTH_JWKS_URL", &jwks_url),
            ("EMPORIUM_AUTH_CA_CERT", &pem("ca.pem")),
        ],
    );

    // The card provider and payments, which calls it with its key.
    let sandbox_db = emporium_db::testing::TestDatabase::postgres()
        .await
        .unwrap();
    let api_key = "sk_test_serve_0123456789";
    let (mut sandbox, sandbox_url) = serve(
        "sandbox-provider",
        &certs,
        None,
        &[
            ("EMPORIUM_DATABASE_URL", &sandbox_db.url),
            ("EMPORIUM_SANDBOX_API_KEY", api_key),
        ],
    );
    let payments_db = emporium_db::testing::TestDatabase::postgres()
        .await
        .unwrap();
    let (mut payments, payments_url) = serve(
        "payments",
        &certs,
        Some(exchange.as_str()),
        &[
            ("EMPORIUM_DATABASE_URL", &payments_db.url),
            ("EMPORIUM_AUTH_JWKS_URL", &jwks_url),
            ("EMPORIUM_AUTH_CA_CERT", &pem("ca.pem")),
            ("EMPORIUM_PROVIDER_URL", &sandbox_url),
            ("EMPORIUM_PROVIDER_API_KEY", api_key),
            ("EMPORIUM_PROVIDER_CA_CERT", &pem("ca.pem")),
            (
                "EMPORIUM_WEBHOOKS_SECRET",
                "whsec_serve_0123456789abcdef0123456789",
            ),
        ],
    );

    // Orders calls catalog and payments as a service client made for it.
    let mut create = Proc::spawn(
        &[
            "accounts",
            "create-client",
            "--id",
            "orders",
            "--scopes",
            &emporium_contracts::scopes::ORDERS.join(" "),
        ],
        &[
            ("EMPORIUM_DATABASE_URL", &db.url),
            ("EMPORIUM_KEYS_KEK", KEK),
        ],
    );
    assert!(create.wait_exit(Duration::from_secs(30)));
    let secret = create
        .output()
        .into_iter()
        .find(|l| !l.trim().is_empty() && !l.starts_with('{'))
        .unwrap();
    let orders_db = emporium_db::testing::TestDatabase::postgres()
        .await
        .unwrap();
    let (mut orders, orders_url) = serve(
        "orders",
        &certs,
        Some(exchange.as_str()),
        &[
            ("EMPORIUM_DATABASE_URL", &orders_db.url),
            ("EMPORIUM_AUTH_JWKS_URL", &jwks_url),
            ("EMPORIUM_AUTH_CA_CERT", &pem("ca.pem")),
            (
                "EMPORIUM_CLIENT_TOKEN_URL",
                &format!("{accounts_url}/api/v1/auth/token"),
            ),
            ("EMPORIUM_CLIENT_CLIENT_SECRET", secret.trim()),
            ("EMPORIUM_CLIENT_CA_CERT", &pem("ca.pem")),
            ("EMPORIUM_CATALOG_URL", &catalog_url),
            ("EMPORIUM_PAYMENTS_URL", &payments_url),
        ],
    );

    let (mut gateway, base) = serve(
        "gateway",
        &certs,
        None,
        &[
            ("EMPORIUM_OPS_PORT", "0"),
            ("EMPORIUM_UPSTREAMS_ACCOUNTS", &accounts_url),
            ("EMPORIUM_UPSTREAMS_CATALOG", &catalog_url),
            ("EMPORIUM_UPSTREAMS_PAYMENTS", &payments_url),
            ("EMPORIUM_UPSTREAMS_ORDERS", &orders_url),
            ("EMPORIUM_UPSTREAMS_CA_CERT", &pem("ca.pem")),
        ],
    );

    let client = client(&certs.join("ca.pem"));
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let old_token = access_token(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let users = get_json(&client, &format!("{base}/api/v1/users"), &old_token).await;
    assert_eq!(users["items"][0]["email"], ADMIN_EMAIL);
    // The catalog, its own process on its own database, trusts accounts' tokens.
    let berlin = json!({"code": "BER-1", "name": "Berlin"});
    let warehouses = format!("{base}/api/v1/warehouses");
    let r = post(
        &client,
        &warehouses,
        Some(old_token.as_str()),
        Some(&berlin),
    )
    .await;
    assert_eq!(r.status(), 201);
    let warehouse: serde_json::Value = r.json().await.unwrap();
    // A card tokenized through the gateway, by payments, at the sandbox:
    // three processes, HTTPS on every hop.
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"});
    let r = post(
        &client,
        &format!("{base}/api/v1/payments/tokens"),
        None,
        Some(&card),
    )
    .await;
    assert_eq!(r.status(), 201);
    let token: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (&token["brand"], &token["last4"]),
        (&json!("visa"), &json!("4242"))
    );

    // An order placed through the gateway: orders prices it at the catalog,
    // reserves there and authorizes at payments, each its own process.
    let category = json!({"name": "Mugs", "attributes": []});
    let r = post(
        &client,
        &format!("{base}/api/v1/categories"),
        Some(old_token.as_str()),
        Some(&category),
    )
    .await;
    assert_eq!(r.status(), 201);
    let category: serde_json::Value = r.json().await.unwrap();
    let product = json!({"sku": "MUG-1", "name": "Mug", "description": "A mug.",
        "price": {"amount": 1200, "currency": "EUR"}, "category_id": category["id"], "attributes": {}});
    let r = post(
        &client,
        &format!("{base}/api/v1/products"),
        Some(old_token.as_str()),
        Some(&product),
    )
    .await;
    assert_eq!(r.status(), 201);
    let product: serde_json::Value = r.json().await.unwrap();
    let stock = format!(
        "{base}/api/v1/warehouses/{}/stock/{}",
        warehouse["id"].as_str().unwrap(),
        product["id"].as_str().unwrap()
    );
    let r = client
        .put(&stock)
        .bearer_auth(&old_token)
        .json(&json!({"on_hand": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let order = json!({"items": [{"product_id": product["id"], "quantity": 2}],
        "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Berlin",
                             "postal_code": "10117", "country": "DE"},
        "payment": {"token": token["token"]}});
    let r = client
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&old_token)
        .header("idempotency-key", "serve-order-1")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let placed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(placed["status"], "confirmed", "{placed}");
    assert_eq!(placed["payment"]["status"], "authorized", "{placed}");

    // A signing-key rotation by another process (the command line, on the
    // same database) reaches the running accounts service, which publishes
    // and signs with the new key, and the catalog, which accepts its tokens;
    // tokens signed with the old key stay good until they expire.
    let old_kid = kid_of(&old_token);
    assert_eq!(published_kids(&client, &base).await, vec![old_kid.clone()]);
    let mut rotate = Proc::spawn(
        &["accounts", "rotate-key"],
        &[
            ("EMPORIUM_DATABASE_URL", &db.url),
            ("EMPORIUM_KEYS_KEK", KEK),
        ],
    );
    assert!(rotate.wait_exit(Duration::from_secs(30)));
    let mut new_kid = None;
    let printed = within(Duration::from_secs(5), || {
        new_kid = rotate.output().iter().find_map(|l| {
            l.split_once("new signing key ")
                .and_then(|(_, rest)| rest.split(';').next())
                .map(|kid| kid.trim().to_owned())
        });
        std::future::ready(new_kid.is_some())
    })
    .await;
    assert!(printed, "{:?}", rotate.output());
    let new_kid = new_kid.unwrap();
    assert_ne!(new_kid, old_kid);
    let both = [new_kid.clone(), old_kid.clone()];
    publishes_within(
        &client,
        &base,
        &both,
        "the JWKS never held the new key next to the old",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_token = loop {
        let token = access_token(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        if kid_of(&token) == new_kid {
            break token;
        }
        assert!(
            Instant::now() < deadline,
            "accounts still signs with {}",
            kid_of(&token)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The catalog looks the unknown key up (at most every ten seconds).
    assert!(
        answers_within_for(
            &client,
            &warehouses,
            &new_token,
            200,
            Duration::from_secs(30)
        )
        .await,
        "the catalog refuses a token signed with the new key"
    );
    assert_eq!(
        status(&client, &format!("{base}/api/v1/users"), &new_token).await,
        200,
        "accounts takes its own new tokens"
    );
    assert_eq!(
        status(&client, &warehouses, &old_token).await,
        200,
        "a token signed with the old key is still good"
    );

    // The old key leaves the JWKS once tokens it signed must have expired:
    // an access token's lifetime (15 minutes) plus a minute after its
    // successor appeared. Rather than wait that long, move the keys' birth
    // back two hours in the database; the next reload sees the old key retired.
    let pool = emporium_db::connect_postgres(&db.url, 1).await.unwrap();
    sqlx::query("UPDATE signing_keys SET created_at = created_at - $1")
        .bind(2 * 60 * 60 * 1000_i64)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let only_new = [new_kid.clone()];
    publishes_within(&client, &base, &only_new, "the old key is still published").await;
    let token = access_token(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(kid_of(&token), new_kid);

    // The admin created at start-up was announced on RabbitMQ through the outbox.
    let registered = recorder
        .wait_for_email(ADMIN_EMAIL, Duration::from_secs(30))
        .await;
    assert_eq!(registered.source, "/emporium/accounts");

    assert!(gateway.terminate(Duration::from_secs(30)));
    assert!(orders.terminate(Duration::from_secs(30)));
    assert!(payments.terminate(Duration::from_secs(30)));
    assert!(sandbox.terminate(Duration::from_secs(30)));
    assert!(catalog.terminate(Duration::from_secs(30)));
    assert!(accounts.terminate(Duration::from_secs(30)));
}

/// `emporium serve <service>` on any free port of 127.0.0.1, with its
/// certificate and key from `certs`, publishing on the test broker's
/// `exchange` if given, and with `env` besides; returns it and the URL it
/// logs once listening.
fn serve(
    service: &str,
    certs: &std::path::Path,
    exchange: Option<&str>,
    env: &[(&str, &str)],
) -> (Proc, String) {
    let pem = |name: String| certs.join(name).to_str().unwrap().to_owned();
    let (cert, key) = (
        pem(format!("{service}.pem")),
        pem(format!("{service}-key.pem")),
    );
    let amqp_url = events::amqp_url();
    let mut all = vec![
        ("EMPORIUM_HTTP_HOST", "127.0.0.1"),
        ("EMPORIUM_HTTP_TLS_CERT", cert.as_str()),
        ("EMPORIUM_HTTP_TLS_KEY", key.as_str()),
    ];
    if let Some(exchange) = exchange {
        all.push(("EMPORIUM_EVENTS_AMQP_URL", amqp_url.as_str()));
        all.push(("EMPORIUM_EVENTS_EXCHANGE", exchange));
    }
    all.extend_from_slice(env);
    let mut process = Proc::spawn(&["serve", service, "--port", "0"], &all);
    // Each logs "<Service> listening.", its name capitalised (a dash a space).
    let mut name = service.replace('-', " ");
    name[..1].make_ascii_uppercase();
    let url = process.listening_url(&name);
    (process, url)
}

/// `up` writes readable lines for a person and JSON for a collector: JSON when
/// its output is not a terminal (as here), readable text when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_logs_json_to_a_pipe_and_readable_lines_when_asked() {
    let data = TempDir::new("up-logs");
    let dir = data.0.to_str().unwrap();
    let mut piped = up_on(dir);
    let line = piped.wait_for(
        |l| l.contains("Catalog listening."),
        Duration::from_secs(60),
    );
    // Lines in the Elastic Common Schema's names, so shippers take them as they are.
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(event["message"], "Catalog listening.");
    assert_eq!(event["log.level"], "INFO");
    assert_eq!(event["service.name"], "emporium");
    assert!(
        event["@timestamp"].as_str().unwrap().ends_with('Z'),
        "{event}"
    );
    // A request's line names its service, trace, span, method, path, status
    // and duration; a card sent through it appears in no line.
    let gateway = piped.listening_url("Gateway");
    let client = client(&data.0.join("certs").join("ca.pem"));
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "737"});
    let r = post(
        &client,
        &format!("{gateway}/api/v1/payments/tokens"),
        None,
        Some(&card),
    )
    .await;
    assert_eq!(r.status(), 201);
    let token: serde_json::Value = r.json().await.unwrap();
    let line = piped.wait_for(
        |l| {
            l.contains("Request finished.")
                && l.contains("/api/v1/payments/tokens")
                && l.contains("\"gateway\"")
        },
        Duration::from_secs(10),
    );
    let request: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(request["service.name"], "gateway");
    assert_eq!(request["http.request.method"], "POST");
    assert_eq!(request["url.path"], "/api/v1/payments/tokens");
    assert_eq!(request["http.response.status_code"], 201);
    assert!(request["event.duration"].as_i64().unwrap() > 0, "{request}");
    assert_eq!(request["trace.id"].as_str().unwrap().len(), 32, "{request}");
    assert_eq!(request["span.id"].as_str().unwrap().len(), 16, "{request}");
    let token = token["token"].as_str().unwrap();
    let last4_free = token.trim_start_matches("tok_");
    for line in piped.output() {
        for secret in ["4242424242424242", "\"cvc\"", last4_free] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
    }
    assert!(piped.terminate(Duration::from_secs(30)));

    let mut pretty = Proc::spawn(
        &[
            "up",
            "--data-dir",
            dir,
            "--port",
            "0",
            "--log-format",
            "pretty",
        ],
        &[],
    );
    let line = pretty.wait_for(
        |l| l.contains("Catalog listening."),
        Duration::from_secs(60),
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "a readable line, not JSON: {line}"
    );
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("url="),
        "fields are shown as key=value: {line}"
    );
    assert!(pretty.terminate(Duration::from_secs(30)));

    let mut refused = Proc::spawn(&["up", "--data-dir", dir, "--log-format", "xml"], &[]);
    refused.assert_fails_saying("possible values: json, pretty");
}

/// A first start that fails after the admin was created still shows its
/// generated password (it is never shown again), and a second `up` on a data
/// directory in use is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_shows_the_password_of_a_failed_first_start_and_runs_once_per_data_dir() {
    let data = TempDir::new("up-once");
    let dir = data.0.to_str().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut failed = Proc::spawn(&["up", "--data-dir", dir, "--port", &port], &[]);
    assert!(failed.wait_failure(Duration::from_secs(60)));
    let output = failed.output().join("\n");
    assert!(
        output.contains("Emporium did not start (gateway failed)"),
        "{output}"
    );
    let admin = output
        .lines()
        .find(|l| l.trim_start().starts_with("admin:"))
        .unwrap_or_else(|| panic!("no admin line: {output}"));
    assert!(admin.contains("generated now and shown once"), "{admin}");
    let password = shown_password(admin);
    drop(taken);

    let mut up = up_on(dir);
    let base = shop_url(&mut up, Duration::from_secs(60));
    let client = client(&data.0.join("certs").join("ca.pem"));
    // The password shown by the failed start opens the admin account.
    tokens(&client, &base, "admin@emporium.test", password).await;
    let mut second = up_on(dir);
    second.assert_fails_saying("another emporium up is running");
    assert!(up.terminate(Duration::from_secs(30)));
}

/// The TCP addresses (`/proc/net/tcp` form, e.g. `0100007F:20FB`) process
/// `pid` listens on, IPv4 and IPv6.
fn listening(pid: u32) -> Vec<String> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?.to_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        // Columns: sl, local, remote, state (0A: listening), …, inode (10th).
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) == Some(&"0A") && cols.get(9).is_some_and(|i| inodes.contains(*i)) {
                found.push(cols[1].to_owned());
            }
        }
    }
    found
}

/// A plain HTTP server answering every request with `status` (and a
/// `Location`), on a free loopback port; its base URL.
async fn answering(status: u16) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let to = format!("{url}/healthz");
    let app = axum::Router::new().fallback(move || {
        let to = to.clone();
        async move {
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// `emporium healthcheck ARGS…`: its exit code (`None`: still running after
/// 20 seconds), what it printed, and how long it took.
fn healthcheck(args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut p = Proc::spawn(&[&["healthcheck"], args].concat(), &[]);
    let code = p.wait_code(Duration::from_secs(20));
    (code, p.output().join("\n"), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_on_2xx_only_and_up_listens_where_told() {
    // Not in the development certificates, or not where the card sandbox's
    // webhooks go.
    for host in ["10.1.2.3", "127.0.0.2", "::1", "localhost"] {
        let mut refused = Proc::spawn(&["up", "--host", host], &[]);
        refused.assert_fails_saying("--host");
    }

    // By default every port of `up` is on loopback.
    let default = TempDir::new("up-default-host");
    let mut up = Proc::spawn(
        &[
            "up",
            "--data-dir",
            default.0.to_str().unwrap(),
            "--port",
            "0",
        ],
        &[],
    );
    let base = shop_url(&mut up, Duration::from_secs(60));
    let ports = listening(up.pid());
    assert!(ports.len() >= 6, "{ports:?}");
    assert!(
        ports.iter().all(|a| a.starts_with("0100007F:")),
        "{ports:?}"
    );
    assert!(up.terminate(Duration::from_secs(30)), "{base}");

    // With --host 0.0.0.0 the gateway, and only it, listens everywhere.
    let data = TempDir::new("up-host");
    let dir = data.0.to_str().unwrap();
    let mut up = Proc::spawn(
        &["up", "--data-dir", dir, "--port", "0", "--host", "0.0.0.0"],
        &[],
    );
    let base = shop_url(&mut up, Duration::from_secs(60));
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let ports = listening(up.pid());
    let everywhere: Vec<&String> = ports
        .iter()
        .filter(|a| !a.starts_with("0100007F:"))
        .collect();
    assert_eq!(everywhere, [&format!("00000000:{port:04X}")], "{ports:?}");
    assert!(ports.len() >= 6, "{ports:?}");

    let ca = data.0.join("certs").join("ca.pem");
    let ca = ca.to_str().unwrap();
    for path in ["/healthz", "/readyz"] {
        let (code, out, _) = healthcheck(&[&format!("{base}{path}"), "--ca-cert", ca]);
        assert_eq!(code, Some(0), "{path}: {out}");
    }
    // Any other answer is a failure (exit 1, as a container runtime counts
    // unhealthy), and says what was answered: a redirect is not followed.
    let (code, out, _) = healthcheck(&[&format!("{base}/metrics"), "--ca-cert", ca]);
    assert!(code == Some(1) && out.contains("answered 404"), "{out}");
    for status in [301, 503] {
        let url = answering(status).await;
        let (code, out, _) = healthcheck(&[&format!("{url}/moved")]);
        assert!(
            code == Some(1) && out.contains(&format!("answered {status}")),
            "{status}: {code:?} {out}"
        );
    }
    // A password in the URL is never printed.
    let url = answering(503)
        .await
        .replace("http://", "http://probe:s3cret@");
    let (code, out, _) = healthcheck(&[&format!("{url}/healthz")]);
    assert!(code == Some(1) && !out.contains("s3cret"), "{out}");
    assert!(out.contains("probe@127.0.0.1"), "{out}");
    // A certificate the system's roots do not know.
    let (code, out, _) = healthcheck(&[&format!("{base}/healthz")]);
    assert!(code == Some(1) && out.contains("certificate"), "{out}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, out, _) = healthcheck(&[
        &format!("https://127.0.0.1:{closed_port}/healthz"),
        "--ca-cert",
        ca,
    ]);
    assert_eq!(code, Some(1), "{out}");
    // A server that takes the connection and never answers: --timeout holds.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/healthz", silent.local_addr().unwrap());
    let (code, out, took) = healthcheck(&[&silent_url, "--timeout", "1"]);
    assert!(
        code == Some(1) && took < Duration::from_secs(5),
        "{took:?} {out}"
    );
    drop(silent);
    let (code, out, _) = healthcheck(&["file:///etc/passwd"]);
    assert!(
        code == Some(1) && out.contains("only http and https"),
        "{out}"
    );
    assert!(up.terminate(Duration::from_secs(30)));
}
