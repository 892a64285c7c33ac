use std::sync::Arc;
use std::time::Duration;

use emporium_db::testing::TestDatabase;
use emporium_sandbox::{Application, SandboxSettings};
use emporium_testkit::{Backend, Endpoint, Running, TestService, database, run_in_background};
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};

pub use emporium_testkit::{problem, problem_of};

pub const API_KEY: &str = "sk_test_0123456789abcdef";

pub struct TestApp {
    _server: Running,
    http: Endpoint,
    _db: Arc<TestDatabase>,
    /// The sandbox's store, to see what it recorded (and to seed it).
    pub store: emporium_sandbox::store::Store,
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

async fn migrate(url: String) -> anyhow::Result<()> {
    emporium_sandbox::store::Store::open(&url, 1)
        .await
        .map(drop)
}

impl TestService for TestApp {
    type Settings = SandboxSettings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut SandboxSettings) + Send) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let db = database(backend, "sandbox", env!("CARGO_MANIFEST_DIR"), migrate).await;
        let key = [("sandbox.api_key", API_KEY)];
        let defaults = emporium_sandbox::config::DEFAULTS;
        let mut settings: SandboxSettings =
            emporium_testkit::service_settings("sandbox-provider", defaults, &db.url, &key);
        tweak(&mut settings);
        let app = Application::build(settings).await.unwrap();
        let store = app.store().clone();
        Self {
            http: Endpoint::new(app.base_url()),
            _server: run_in_background(|shutdown| app.run_until_stopped(shutdown)),
            _db: Arc::new(db),
            store,
        }
    }
}

impl TestApp {
    /// A call with the API key.
    pub fn call(&self, request: RequestBuilder) -> RequestBuilder {
        request.bearer_auth(API_KEY)
    }

    /// A keyed POST with the API key.
    pub async fn keyed(&self, path: &str, key: &str, body: &Value) -> Response {
        let request = self.call(self.post(path)).header("idempotency-key", key);
        request.json(body).send().await.unwrap()
    }

    /// The first answer that is not a transient failure (503, or none within
    /// half a second) of the request `make` builds, asked up to 200 times.
    pub async fn answered(&self, make: impl Fn() -> RequestBuilder) -> Response {
        for _ in 0..200 {
            match make().timeout(Duration::from_millis(500)).send().await {
                Ok(r) if r.status() != 503 => return r,
                Ok(_) => {}
                Err(e) => assert!(e.is_timeout(), "{e}"),
            }
        }
        panic!("no answer in 200 attempts");
    }

    /// A token for `number`.
    pub async fn token(&self, number: &str) -> String {
        let card = json!({"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
        let r = self
            .answered(|| self.call(self.post("/v1/tokens")).json(&card))
            .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// A POST of `body` with the API key and no idempotency key.
    pub async fn send_json(&self, path: &str, body: &Value) -> Response {
        let request = self.call(self.post(path)).json(body);
        request.send().await.unwrap()
    }

    /// Asks to authorize `amount` EUR on a new token for `number`, under a new key.
    pub async fn authorize(&self, number: &str, amount: i64) -> Response {
        let body = json!({"token": self.token(number).await, "amount": amount, "currency": "EUR"});
        let key = uuid::Uuid::new_v4().to_string();
        self.keyed("/v1/authorizations", &key, &body).await
    }

    /// An authorization of `amount` EUR on a new token for `number`; its id.
    pub async fn authorized(&self, number: &str, amount: i64) -> String {
        let r = self.authorize(number, amount).await;
        assert_eq!(r.status(), 201);
        let a: Value = r.json().await.unwrap();
        a["id"].as_str().unwrap().to_owned()
    }

    /// The provider's own record of an authorization.
    pub async fn record(&self, id: &str) -> Value {
        let path = format!("/v1/authorizations/{id}");
        let r = self.answered(|| self.call(self.get(&path))).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// How many authorizations the sandbox made with `token`.
    pub async fn authorizations_with(&self, token: &str) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM sandbox_authorizations WHERE token = $1";
        self.store.db().sql().scalar(SQL, (token,)).await.unwrap()
    }

    /// A token of an approving card put in the store directly, for tests
    /// whose sandbox fails every call.
    pub async fn token_without_faults(&self) -> String {
        let card = emporium_contracts::provider::CardToken {
            token: format!("tok_{}", uuid::Uuid::new_v4().simple()),
            brand: "visa".into(),
            last4: "4242".into(),
            exp_month: 12,
            exp_year: 2031,
        };
        let approve = emporium_sandbox::cards::Behaviour::Approve;
        self.store.insert_token(&card, approve, 0).await.unwrap();
        card.token
    }
}

/// The (kind, amount) of every operation in a provider's record.
pub fn operations(record: &Value) -> Vec<(&str, i64)> {
    let all = record["operations"].as_array().unwrap();
    all.iter()
        .map(|o| (o["kind"].as_str().unwrap(), o["amount"].as_i64().unwrap()))
        .collect()
}
