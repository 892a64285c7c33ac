#![allow(clippy::unwrap_used, dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use emporium_auth::testing::{MemoryJwks, TestKey};
use emporium_client::provider::CardProvider;
use emporium_db::ShiftedClock;
use emporium_db::testing::TestDatabase;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_payments::api::AppState;
use emporium_payments::provider::LateProvider;
use emporium_payments::{Application, PaymentsSettings};
use emporium_sandbox::SandboxSettings;
use emporium_testkit::{
    Backend, Endpoint, Running, TestService, certs, database, embedded_bus, run_in_background,
    service_settings,
};
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

pub use emporium_testkit::{problem, problem_fields as fields, problem_of};

pub const API_KEY: &str = "sk_test_payments_0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef0123456789abcdef";

/// The key the test signs tokens with; payments trusts it.
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("payments-tests"))
}

pub fn user_token(user: Uuid, admin: bool) -> String {
    key().user_token(user, admin)
}

pub fn service_token(client: &str, scope: &str) -> String {
    key().service_token(client, scope)
}

/// Every payments scope, as the orders service holds them.
pub const ALL_SCOPES: &str = "payments:authorize payments:capture payments:void payments:refund";

/// Payments and the sandbox provider, each over HTTPS with its own database
/// on the test's engine, the sandbox's webhooks signed to payments.
pub struct TestApp {
    _payments: Running,
    _sandbox: Running,
    http: Endpoint,
    pub state: AppState,
    /// The sandbox's API, with its own key.
    pub sandbox: Endpoint,
    pub sandbox_store: emporium_sandbox::store::Store,
    pub faults: emporium_sandbox::faults::FaultSwitch,
    /// The provider as payments calls it (to see the sandbox's record).
    pub provider: CardProvider,
    pub customer_id: Uuid,
    pub customer: String,
    pub other_id: Uuid,
    pub other: String,
    pub admin: String,
    /// The orders service's token: every payments scope.
    pub orders: String,
    /// Another service client with every scope.
    pub shipping: String,
    pub bus: Arc<EmbeddedBus>,
    pub clock: Arc<ShiftedClock>,
    pub webhook_url: String,
    /// Payments' database.
    pub db_url: String,
    _dbs: (TestDatabase, TestDatabase, TestDatabase),
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

async fn migrate(url: String) -> anyhow::Result<()> {
    emporium_db::open_service_db(&url, 1, &emporium_payments::ALL_MIGRATIONS)
        .await
        .map(drop)
}

async fn migrate_sandbox(url: String) -> anyhow::Result<()> {
    emporium_sandbox::store::Store::open(&url, 1)
        .await
        .map(drop)
}

/// What a test changes before the start: payments' settings and the sandbox's.
pub struct Settings {
    pub payments: PaymentsSettings,
    pub sandbox: SandboxSettings,
}

impl TestService for TestApp {
    type Settings = Settings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut Settings) + Send) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let db = database(backend, "payments", env!("CARGO_MANIFEST_DIR"), migrate).await;
        let sandbox_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sandbox");
        let sandbox_db = database(backend, "sandbox", sandbox_dir, migrate_sandbox).await;
        let (bus, bus_file) = embedded_bus().await;
        let bus_path = bus_file.url.trim_start_matches("sqlite://").to_owned();
        let ca = certs().ca();
        let ca = ca.to_str().unwrap();
        let payments: PaymentsSettings = service_settings(
            "payments",
            emporium_payments::config::DEFAULTS,
            &db.url,
            &[
                ("events.bus", "embedded"),
                ("events.embedded_path", &bus_path),
                ("provider.api_key", API_KEY),
                ("provider.ca_cert", ca),
                ("provider.timeout_ms", "1000"),
                ("provider.max_attempts", "4"),
                ("provider.backoff_base_ms", "10"),
                ("provider.backoff_max_ms", "50"),
                ("webhooks.secret", WEBHOOK_SECRET),
                // Tests tokenize many cards; the limit has its own test.
                ("tokens.per_minute", "100000"),
                ("tokens.burst", "1000"),
                ("recovery.scan_every_ms", "50"),
                ("recovery.retry_after_ms", "100"),
                ("recovery.retry_max_ms", "400"),
            ],
        );
        let sandbox: SandboxSettings = service_settings(
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
        let mut settings = Settings { payments, sandbox };
        tweak(&mut settings);
        let Settings {
            mut payments,
            mut sandbox,
        } = settings;

        let clock = ShiftedClock::new();
        let late = Arc::new(LateProvider::default());
        let app = Application::build_with_provider(
            payments.clone(),
            bus.clone(),
            MemoryJwks::with(&[key()]),
            clock.clone(),
            late.clone(),
        )
        .await
        .unwrap();
        let base = app.base_url();
        let webhook_url = format!("{base}/api/v1/payments/webhooks");
        if sandbox.sandbox.webhook_url.is_empty() {
            sandbox.sandbox.webhook_url = webhook_url.clone();
        }
        let provider_app = emporium_sandbox::Application::build(sandbox).await.unwrap();
        let faults = provider_app.faults();
        let sandbox_store = provider_app.store().clone();
        payments.provider.url = provider_app.base_url();
        let provider = emporium_payments::card_provider(&payments).unwrap();
        late.set(provider.clone());
        let sandbox_http = Endpoint::new(provider_app.base_url());
        let state = app.state();
        let customer_id = Uuid::now_v7();
        let other_id = Uuid::now_v7();
        Self {
            _sandbox: run_in_background(|shutdown| provider_app.run_until_stopped(shutdown)),
            _payments: run_in_background(|shutdown| app.run_until_stopped(shutdown)),
            http: Endpoint::new(base),
            state,
            sandbox: sandbox_http,
            sandbox_store,
            faults,
            provider,
            customer: user_token(customer_id, false),
            customer_id,
            other: user_token(other_id, false),
            other_id,
            admin: user_token(Uuid::now_v7(), true),
            orders: service_token("orders", ALL_SCOPES),
            shipping: service_token("shipping", ALL_SCOPES),
            bus,
            clock,
            webhook_url,
            db_url: db.url.clone(),
            _dbs: (db, sandbox_db, bus_file),
        }
    }
}

/// The test cards (docs/api.md).
pub mod cards {
    pub const APPROVES: &str = "4242424242424242";
    pub const DECLINES: &str = "4000000000000002";
    pub const INSUFFICIENT: &str = "4000000000009995";
    pub const GATEWAY_ERROR: &str = "4000000000000119";
    pub const LATE_CAPTURE_FAILURE: &str = "4000000000000259";
}

impl TestApp {
    /// Tokenizes `number` through the public API, as `bearer` (or anonymously).
    pub async fn tokenize_as(&self, number: &str, bearer: Option<&str>) -> Response {
        let card = json!({"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
        let mut request = self.post("/api/v1/payments/tokens").json(&card);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send().await.unwrap()
    }

    /// A token for `number`, tokenized by the customer.
    pub async fn token(&self, number: &str) -> String {
        let r = self.tokenize_as(number, Some(&self.customer)).await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// The authorize request of `amount` EUR on `token` for `order`.
    pub fn authorization(&self, order: Uuid, token: &str, amount: i64) -> Value {
        json!({
            "order_id": order,
            "customer_id": self.customer_id,
            "token": token,
            "amount": amount,
            "currency": "EUR",
        })
    }

    /// `POST /internal/v1/payments` as the orders service.
    pub async fn authorize(&self, body: &Value) -> Response {
        let request = self.post("/internal/v1/payments").bearer_auth(&self.orders);
        request.json(body).send().await.unwrap()
    }

    /// A payment of `amount` EUR for a new order on a new token for
    /// `number`; the order's id and the payment as answered.
    pub async fn paid(&self, number: &str, amount: i64) -> (Uuid, Value) {
        let order = Uuid::now_v7();
        let token = self.token(number).await;
        let r = self
            .authorize(&self.authorization(order, &token, amount))
            .await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        (order, r.json().await.unwrap())
    }

    /// A POST on the order's payment as the orders service (`step` is
    /// `capture`, `void` or `refunds`).
    pub async fn step(&self, order: Uuid, step: &str, body: Value, key: Option<&str>) -> Response {
        let path = format!("/internal/v1/payments/{order}/{step}");
        let mut request = self.post(&path).bearer_auth(&self.orders).json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// The payment as the orders service reads it.
    pub async fn payment(&self, order: Uuid) -> Value {
        let path = format!("/internal/v1/payments/{order}");
        let r = self
            .get(&path)
            .bearer_auth(&self.orders)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// The ledger's entries of one payment.
    pub async fn entries_of(&self, payment: &Value) -> Vec<emporium_payments::ledger::Entry> {
        let id: Uuid = payment["id"].as_str().unwrap().parse().unwrap();
        let store = &self.state.0.payments.store;
        store.ledger().entries_of(id).await.unwrap()
    }

    /// How many ledger transactions of `movement` a payment has (each of
    /// exactly two entries).
    pub async fn transactions(&self, payment: &Value, movement: &str) -> usize {
        let mut entries: std::collections::BTreeMap<Uuid, usize> = Default::default();
        for e in self.entries_of(payment).await {
            if e.movement.as_str() == movement {
                *entries.entry(e.transaction_id).or_default() += 1;
            }
        }
        assert!(entries.values().all(|n| *n == 2), "{movement}: {entries:?}");
        entries.len()
    }

    /// The statuses of the sandbox's authorizations made under the payment's id.
    pub async fn held_under(&self, payment: &Value) -> Vec<String> {
        let reference: Uuid = payment["id"].as_str().unwrap().parse().unwrap();
        let sql = "SELECT status FROM sandbox_authorizations WHERE reference = $1";
        let db = self.sandbox_store.db();
        let rows: Vec<(String,)> = db.sql().fetch_all(sql, (reference,)).await.unwrap();
        rows.into_iter().map(|(s,)| s).collect()
    }

    /// The kinds of the payment's events, in order.
    pub fn kinds(payment: &Value) -> Vec<String> {
        let events = payment["events"].as_array().unwrap();
        events
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The sandbox's own record of the payment's authorization.
    pub async fn provider_record(
        &self,
        payment: &Value,
    ) -> emporium_contracts::provider::AuthorizationRecord {
        let id: Uuid = payment_provider_id(self, payment).await;
        self.provider.authorization(id).await.unwrap()
    }

    /// Makes `share` of the sandbox's calls fail: of those, `refused` are
    /// refused at once, `hang` hang, the rest lose their answer after the
    /// work is done. `fail(0.0, …)` ends the failures.
    pub fn fail(&self, share: f64, refused: f64, hang: f64) {
        let faults = emporium_sandbox::Faults {
            failure_rate: share,
            refuse_share: refused,
            hang_share: hang,
            hang_ms: 1500,
            ..emporium_sandbox::Faults::NONE
        };
        self.faults.set(faults).unwrap();
    }

    /// Makes every sandbox call take `ms` longer (and none fail).
    pub fn slow(&self, ms: u64) {
        let faults = emporium_sandbox::Faults {
            latency_ms: ms,
            ..emporium_sandbox::Faults::NONE
        };
        self.faults.set(faults).unwrap();
    }

    /// The stored intent behind a payment view.
    pub async fn intent_of(&self, payment: &Value) -> emporium_payments::store::Intent {
        let id: Uuid = payment["id"].as_str().unwrap().parse().unwrap();
        let store = &self.state.0.payments.store;
        store.by_id(id).await.unwrap().unwrap()
    }

    /// Waits (up to 10 s) until the order's payment has an event of `kind`.
    pub async fn wait_for_event(&self, order: Uuid, kind: &str) -> Value {
        let what = format!("an event {kind}");
        self.wait_for(order, &what, |p| Self::kinds(p).iter().any(|k| k == kind))
            .await
    }

    /// Waits (up to 10 s) until the order's payment satisfies `enough`.
    pub async fn wait_for(
        &self,
        order: Uuid,
        what: &str,
        enough: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let p = self.payment(order).await;
            if enough(&p) {
                return p;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {p}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn payment_provider_id(app: &TestApp, payment: &Value) -> Uuid {
    let intent = app.intent_of(payment).await;
    intent
        .provider_id
        .expect("the payment was authorized at the provider")
}
