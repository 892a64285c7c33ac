#![allow(clippy::unwrap_used, dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use emporium_auth::testing::{MemoryJwks, TestKey};
use emporium_client::{StaticToken, TokenSource};
use emporium_db::ShiftedClock;
use emporium_db::testing::TestDatabase;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_orders::api::AppState;
use emporium_orders::{Application, OrdersSettings};
use emporium_payments::provider::LateProvider;
use emporium_testkit::{
    Backend, Endpoint, Running, TestService, certs, database, embedded_bus, run_in_background,
    service_settings,
};
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

pub use emporium_testkit::{problem_fields as fields, problem_of};

const API_KEY: &str = "sk_test_orders_0123456789";
const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef0123456789abcdef";

/// The key the test signs every token with; all three services trust it.
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("orders-tests"))
}

pub fn user_token(user: Uuid, admin: bool) -> String {
    key().user_token(user, admin)
}

/// The orders service client's token: every scope it is granted.
fn orders_token() -> String {
    key().service_token("orders", &emporium_contracts::scopes::ORDERS.join(" "))
}

/// The test cards (docs/api.md).
pub mod cards {
    pub const APPROVES: &str = "4242424242424242";
    pub const DECLINES: &str = "4000000000000002";
    pub const INSUFFICIENT: &str = "4000000000009995";
    pub const GATEWAY_ERROR: &str = "4000000000000119";
    pub const LATE_CAPTURE_FAILURE: &str = "4000000000000259";
}

/// The whole checkout's cast, each over HTTPS with its own database on the
/// test's engine: orders, catalog, payments and the sandbox card provider.
pub struct TestApp {
    orders: Option<Running>,
    catalog_running: Option<Running>,
    payments_running: Option<Running>,
    _sandbox: Running,
    http: Endpoint,
    pub state: AppState,
    pub catalog: Endpoint,
    pub payments: Endpoint,
    pub faults: emporium_sandbox::faults::FaultSwitch,
    pub customer_id: Uuid,
    pub customer: String,
    pub other_id: Uuid,
    pub other: String,
    pub admin: String,
    pub bus: Arc<EmbeddedBus>,
    pub clock: Arc<ShiftedClock>,
    /// Orders' settings, for replicas and restarts.
    pub settings: OrdersSettings,
    pub orders_db: Arc<TestDatabase>,
    /// The catalog's and payments' settings, their port fixed, to start them again.
    catalog_settings: emporium_catalog::CatalogSettings,
    payments_settings: emporium_payments::PaymentsSettings,
    late: Arc<LateProvider>,
    pub catalog_db: String,
    pub payments_db: String,
    _dbs: Vec<TestDatabase>,
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

async fn migrate_orders(url: String) -> anyhow::Result<()> {
    emporium_db::open_service_db(&url, 1, &emporium_orders::ALL_MIGRATIONS)
        .await
        .map(drop)
}

async fn migrate_catalog(url: String) -> anyhow::Result<()> {
    emporium_catalog::store::connect(&url, 1).await.map(drop)
}

async fn migrate_payments(url: String) -> anyhow::Result<()> {
    emporium_db::open_service_db(&url, 1, &emporium_payments::ALL_MIGRATIONS)
        .await
        .map(drop)
}

async fn migrate_sandbox(url: String) -> anyhow::Result<()> {
    emporium_sandbox::store::Store::open(&url, 1)
        .await
        .map(drop)
}

/// An orders service on `settings`, calling the others with the test's token.
async fn start_orders(
    settings: OrdersSettings,
    bus: Arc<EmbeddedBus>,
    clock: Arc<ShiftedClock>,
) -> Application {
    let http = emporium_orders::upstream_http(&settings).unwrap();
    let token: Arc<dyn TokenSource> = Arc::new(StaticToken::new(orders_token()));
    Application::build_with_token(
        settings,
        bus,
        MemoryJwks::with(&[key()]),
        clock,
        (http, token),
    )
    .await
    .unwrap()
}

impl TestService for TestApp {
    type Settings = OrdersSettings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut OrdersSettings) + Send) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let here = env!("CARGO_MANIFEST_DIR");
        let orders_db = database(backend, "orders", here, migrate_orders).await;
        let catalog_dir = format!("{here}/../catalog");
        let catalog_db = database(backend, "catalog", &catalog_dir, migrate_catalog).await;
        let payments_dir = format!("{here}/../payments");
        let payments_db = database(backend, "payments", &payments_dir, migrate_payments).await;
        let sandbox_dir = format!("{here}/../sandbox");
        let sandbox_db = database(backend, "sandbox", &sandbox_dir, migrate_sandbox).await;
        let (bus, bus_file) = embedded_bus().await;
        let bus_path = bus_file.url.trim_start_matches("sqlite://").to_owned();
        let embedded = [
            ("events.bus", "embedded"),
            ("events.embedded_path", bus_path.as_str()),
        ];
        let ca = certs().ca();
        let ca = ca.to_str().unwrap();
        let clock = ShiftedClock::new();
        let jwks = || MemoryJwks::with(&[key()]);

        let catalog_settings: emporium_catalog::CatalogSettings = service_settings(
            "catalog",
            emporium_catalog::config::DEFAULTS,
            &catalog_db.url,
            &embedded,
        );
        let mut catalog_settings = catalog_settings;
        let catalog = emporium_catalog::Application::build_at(
            catalog_settings.clone(),
            bus.clone(),
            jwks(),
            clock.clone(),
        )
        .await
        .unwrap();

        let mut payments_settings: emporium_payments::PaymentsSettings = service_settings(
            "payments",
            emporium_payments::config::DEFAULTS,
            &payments_db.url,
            &[
                embedded[0],
                embedded[1],
                ("provider.api_key", API_KEY),
                ("provider.ca_cert", ca),
                ("provider.timeout_ms", "1000"),
                ("provider.max_attempts", "3"),
                ("provider.backoff_base_ms", "10"),
                ("provider.backoff_max_ms", "50"),
                ("webhooks.secret", WEBHOOK_SECRET),
                ("tokens.per_minute", "100000"),
                ("tokens.burst", "1000"),
                ("recovery.scan_every_ms", "50"),
                ("recovery.retry_after_ms", "100"),
                ("recovery.retry_max_ms", "400"),
            ],
        );
        let late = Arc::new(LateProvider::default());
        let payments = emporium_payments::Application::build_with_provider(
            payments_settings.clone(),
            bus.clone(),
            jwks(),
            clock.clone(),
            late.clone(),
        )
        .await
        .unwrap();
        let mut sandbox_settings: emporium_sandbox::SandboxSettings = service_settings(
            "sandbox-provider",
            emporium_sandbox::config::DEFAULTS,
            &sandbox_db.url,
            &[
                ("sandbox.api_key", API_KEY),
                ("sandbox.webhook_secret", WEBHOOK_SECRET),
                ("sandbox.ca_cert", ca),
                ("sandbox.notify_after_ms", "50"),
                ("sandbox.retry_base_ms", "20"),
                ("sandbox.hang_ms", "3000"),
            ],
        );
        sandbox_settings.sandbox.webhook_url =
            format!("{}/api/v1/payments/webhooks", payments.base_url());
        let sandbox = emporium_sandbox::Application::build(sandbox_settings)
            .await
            .unwrap();
        let faults = sandbox.faults();
        payments_settings.provider.url = sandbox.base_url();
        late.set(emporium_payments::card_provider(&payments_settings).unwrap());

        catalog_settings.http.port = catalog.port();
        payments_settings.http.port = payments.port();
        let mut settings: OrdersSettings = service_settings(
            "orders",
            emporium_orders::config::DEFAULTS,
            &orders_db.url,
            &[
                embedded[0],
                embedded[1],
                ("client.client_secret", "unused-in-tests"),
                ("client.ca_cert", ca),
                ("catalog.url", &catalog.base_url()),
                ("payments.url", &payments.base_url()),
                ("catalog.backoff_base_ms", "10"),
                ("payments.backoff_base_ms", "10"),
                ("checkout.retry_after_ms", "50"),
                ("checkout.retry_max_ms", "200"),
                ("checkout.scan_every_ms", "100"),
                ("checkout.lease_ms", "2000"),
            ],
        );
        tweak(&mut settings);
        let app = start_orders(settings.clone(), bus.clone(), clock.clone()).await;
        let customer_id = Uuid::now_v7();
        let other_id = Uuid::now_v7();
        let catalog_endpoint = Endpoint::new(catalog.base_url());
        let payments_endpoint = Endpoint::new(payments.base_url());
        Self {
            http: Endpoint::new(app.base_url()),
            state: app.state(),
            orders: Some(run_in_background(|s| app.run_until_stopped(s))),
            catalog_running: Some(run_in_background(|s| catalog.run_until_stopped(s))),
            payments_running: Some(run_in_background(|s| payments.run_until_stopped(s))),
            _sandbox: run_in_background(|s| sandbox.run_until_stopped(s)),
            catalog: catalog_endpoint,
            payments: payments_endpoint,
            faults,
            customer: user_token(customer_id, false),
            customer_id,
            other: user_token(other_id, false),
            other_id,
            admin: user_token(Uuid::now_v7(), true),
            bus,
            clock,
            settings,
            orders_db: Arc::new(orders_db),
            catalog_settings,
            payments_settings,
            late,
            catalog_db: catalog_db.url.clone(),
            payments_db: payments_db.url.clone(),
            _dbs: vec![catalog_db, payments_db, sandbox_db, bus_file],
        }
    }
}

/// The gateway, running until dropped.
pub struct Gateway {
    _running: Running,
    http: Endpoint,
}

impl std::ops::Deref for Gateway {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

/// A second orders service on the same database and upstreams.
pub struct Replica {
    _running: Running,
    pub http: Endpoint,
    pub state: AppState,
}

impl TestApp {
    /// Another orders replica on the same database (a second process).
    pub async fn replica(&self, tweak: impl FnOnce(&mut OrdersSettings)) -> Replica {
        let mut settings = self.settings.clone();
        tweak(&mut settings);
        let app = start_orders(settings, self.bus.clone(), self.clock.clone()).await;
        Replica {
            http: Endpoint::new(app.base_url()),
            state: app.state(),
            _running: run_in_background(|s| app.run_until_stopped(s)),
        }
    }

    /// Stops the catalog service; its port is refused from now on.
    pub async fn stop_catalog(&mut self) {
        self.catalog_running = None;
        gone(&self.catalog).await;
    }

    /// Starts the catalog again on its port.
    pub async fn start_catalog(&mut self) {
        let catalog = emporium_catalog::Application::build_at(
            self.catalog_settings.clone(),
            self.bus.clone(),
            MemoryJwks::with(&[key()]),
            self.clock.clone(),
        )
        .await
        .unwrap();
        self.catalog_running = Some(run_in_background(|s| catalog.run_until_stopped(s)));
    }

    /// Starts payments again on its port.
    pub async fn start_payments(&mut self) {
        let payments = emporium_payments::Application::build_with_provider(
            self.payments_settings.clone(),
            self.bus.clone(),
            MemoryJwks::with(&[key()]),
            self.clock.clone(),
            self.late.clone(),
        )
        .await
        .unwrap();
        self.payments_running = Some(run_in_background(|s| payments.run_until_stopped(s)));
    }

    /// Stops the payments service; its port is refused from now on.
    pub async fn stop_payments(&mut self) {
        self.payments_running = None;
        gone(&self.payments).await;
    }

    /// Stops the orders service (as a crash would: its claims stay until
    /// they run out) and starts a new one on the same database.
    pub async fn restart(&mut self) {
        self.orders = None;
        let app = start_orders(self.settings.clone(), self.bus.clone(), self.clock.clone()).await;
        self.http = Endpoint::new(app.base_url());
        self.state = app.state();
        self.orders = Some(run_in_background(|s| app.run_until_stopped(s)));
    }

    /// The gateway in front of orders, catalog and payments (accounts is not
    /// needed here: it is pointed at orders, and never called).
    pub async fn gateway(&self) -> Gateway {
        let cert = certs().cert("gateway");
        let key = certs().key("gateway");
        let ca = certs().ca();
        let settings: emporium_gateway::GatewaySettings = [
            ("http.host", "127.0.0.1"),
            ("http.port", "0"),
            ("http.tls_cert", cert.to_str().unwrap()),
            ("http.tls_key", key.to_str().unwrap()),
            ("upstreams.accounts", self.http.url("").as_str()),
            ("upstreams.catalog", self.catalog.url("").as_str()),
            ("upstreams.payments", self.payments.url("").as_str()),
            ("upstreams.orders", self.http.url("").as_str()),
            ("upstreams.ca_cert", ca.to_str().unwrap()),
            ("ops.port", "0"),
        ]
        .iter()
        .fold(
            emporium_config::Loader::new(emporium_gateway::config::DEFAULTS).unwrap(),
            |l, (k, v)| l.set(k, v).unwrap(),
        )
        .build()
        .unwrap();
        let gateway = emporium_gateway::Application::build(settings)
            .await
            .unwrap();
        Gateway {
            http: Endpoint::new(gateway.base_url()),
            _running: run_in_background(|s| gateway.run_until_stopped(s)),
        }
    }

    fn admin_request(
        &self,
        at: &Endpoint,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        at.request(method, path).bearer_auth(&self.admin)
    }

    /// A product priced `price` EUR cents with `on_hand` in one warehouse.
    pub async fn product(&self, on_hand: i64, price: i64) -> Uuid {
        self.product_in("EUR", on_hand, price).await
    }

    pub async fn product_in(&self, currency: &str, on_hand: i64, price: i64) -> Uuid {
        let tag = Uuid::now_v7().simple().to_string();
        let tag = &tag[tag.len() - 10..];
        let post = |path: &str, body: Value| {
            self.admin_request(&self.catalog, reqwest::Method::POST, path)
                .json(&body)
                .send()
        };
        let category: Value = ok(
            post(
                "/api/v1/categories",
                json!({"name": format!("Cat {tag}"), "attributes": []}),
            )
            .await
            .unwrap(),
            201,
        )
        .await;
        let product: Value = ok(
            post(
                "/api/v1/products",
                json!({"sku": format!("SKU-{tag}"), "name": format!("Thing {tag}"),
                   "description": "A thing.", "price": {"amount": price, "currency": currency},
                   "category_id": category["id"], "attributes": {}}),
            )
            .await
            .unwrap(),
            201,
        )
        .await;
        let warehouse: Value = ok(
            post(
                "/api/v1/warehouses",
                json!({"code": format!("W{tag}"), "name": format!("Warehouse {tag}")}),
            )
            .await
            .unwrap(),
            201,
        )
        .await;
        let id = product["id"].as_str().unwrap();
        let path = format!(
            "/api/v1/warehouses/{}/stock/{id}",
            warehouse["id"].as_str().unwrap()
        );
        let r = self
            .admin_request(&self.catalog, reqwest::Method::PUT, &path)
            .json(&json!({"on_hand": on_hand, "reason": "delivery"}))
            .send()
            .await
            .unwrap();
        ok(r, 200).await;
        id.parse().unwrap()
    }

    /// `[{warehouse_id, on_hand, reserved}]` of a product, from the catalog.
    pub async fn stock(&self, product: Uuid) -> (i64, i64) {
        let path = format!("/api/v1/products/{product}/stock");
        let r = self
            .admin_request(&self.catalog, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        let rows: Value = ok(r, 200).await;
        rows.as_array().unwrap().iter().fold((0, 0), |(h, r), row| {
            (
                h + row["on_hand"].as_i64().unwrap(),
                r + row["reserved"].as_i64().unwrap(),
            )
        })
    }

    /// The stock-movement journal of a product: its kinds, oldest first.
    pub async fn movements(&self, product: Uuid) -> Vec<String> {
        let path = format!("/api/v1/stock/movements?product_id={product}&limit=100");
        let r = self
            .admin_request(&self.catalog, reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        let page: Value = ok(r, 200).await;
        let mut kinds: Vec<(i64, String)> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["seq"].as_i64().unwrap_or(0),
                    m["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        kinds.sort();
        kinds.into_iter().map(|(_, k)| k).collect()
    }

    /// The payment of an order as payments holds it (`None`: there is none).
    pub async fn payment(&self, order: &str) -> Option<Value> {
        let r = self
            .admin_request(
                &self.payments,
                reqwest::Method::GET,
                &format!("/api/v1/payments?order_id={order}"),
            )
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            404 => None,
            _ => Some(ok(r, 200).await),
        }
    }

    /// Payments' ledger check.
    pub async fn ledger_valid(&self) -> bool {
        let r = self
            .admin_request(
                &self.payments,
                reqwest::Method::GET,
                "/api/v1/payments/ledger/verify",
            )
            .send()
            .await
            .unwrap();
        let v: Value = ok(r, 200).await;
        v["valid"] == json!(true)
    }

    /// A card token, tokenized by the customer.
    pub async fn card(&self, number: &str) -> String {
        self.card_for(&self.customer, number).await
    }

    /// A card token, tokenized by `bearer`.
    pub async fn card_for(&self, bearer: &str, number: &str) -> String {
        let card = json!({"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
        let r = self
            .payments
            .post("/api/v1/payments/tokens")
            .bearer_auth(bearer)
            .json(&card)
            .send()
            .await
            .unwrap();
        let v: Value = ok(r, 201).await;
        v["token"].as_str().unwrap().to_owned()
    }

    /// A whole order request for `items` paid with `token`.
    pub fn order_body(items: &[(Uuid, i64)], token: &str) -> Value {
        let items: Vec<Value> = items
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        json!({"items": items, "shipping_address": address(), "payment": {"token": token}})
    }

    /// Places an order as `bearer` with `key`.
    pub async fn place_as(&self, bearer: &str, key: &str, body: &Value) -> Response {
        self.post("/api/v1/orders")
            .bearer_auth(bearer)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Places an order as the customer with a fresh key; the answer's body.
    pub async fn order(&self, items: &[(Uuid, i64)], card: &str) -> Value {
        let token = self.card(card).await;
        let body = Self::order_body(items, &token);
        let r = self
            .place_as(&self.customer, &Uuid::now_v7().to_string(), &body)
            .await;
        ok(r, 201).await
    }

    /// `GET /api/v1/orders{query}` as `bearer`: the page.
    pub async fn orders_list(&self, bearer: &str, query: &str) -> Value {
        let r = self
            .get(&format!("/api/v1/orders{query}"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        ok(r, 200).await
    }

    /// The customer's newest order's id.
    pub async fn newest_order(&self) -> String {
        let list = self.orders_list(&self.customer, "?limit=1").await;
        list["items"][0]["id"].as_str().unwrap().to_owned()
    }

    /// An order as `bearer` sees it.
    pub async fn get_order(&self, bearer: &str, id: &str) -> Response {
        self.get(&format!("/api/v1/orders/{id}"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
    }

    /// The order's history: its event types in order.
    pub async fn history(&self, id: &str) -> Vec<String> {
        let r = self
            .get(&format!("/api/v1/orders/{id}/history"))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        let events: Value = ok(r, 200).await;
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `POST /api/v1/orders/{id}/{step}` as `bearer`.
    pub async fn act(&self, bearer: &str, id: &str, step: &str) -> Response {
        self.post(&format!("/api/v1/orders/{id}/{step}"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
    }

    /// `PUT /api/v1/cart/items/{product}` as `bearer` with `{"quantity": quantity}`
    /// (any JSON value, so a wrong type can be sent too).
    pub async fn put_cart_item(
        &self,
        bearer: &str,
        product: impl std::fmt::Display,
        quantity: Value,
    ) -> Response {
        self.put(&format!("/api/v1/cart/items/{product}"))
            .bearer_auth(bearer)
            .json(&json!({"quantity": quantity}))
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/v1/cart` as `bearer`, which must answer 200: the cart.
    pub async fn cart(&self, bearer: &str) -> Value {
        let r = self
            .get("/api/v1/cart")
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        ok(r, 200).await
    }

    /// Waits until the order is in `status` (10 s at most), and gives it.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        for _ in 0..500 {
            let order: Value = self.get_order(&self.admin, id).await.json().await.unwrap();
            if order["status"] == status {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let order: Value = self.get_order(&self.admin, id).await.json().await.unwrap();
        panic!("order {id} is not {status}: {order}");
    }
}

/// Waits until `endpoint` refuses connections.
async fn gone(endpoint: &Endpoint) {
    for _ in 0..250 {
        if endpoint.get("/healthz").send().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} still answers", endpoint.url(""));
}

/// The answer's body, after checking its status.
pub async fn ok(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

pub fn address() -> Value {
    json!({"name": "Ada Lovelace", "line1": "Unter den Linden 1", "city": "Berlin",
           "postal_code": "10117", "country": "DE"})
}
