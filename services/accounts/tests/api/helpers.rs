#![allow(clippy::unwrap_used, dead_code)]

use emporium_accounts::store::AccountsStore;
use emporium_accounts::{AccountsSettings, Application};
use emporium_config::Loader;
use emporium_db::ShiftedClock;
use emporium_db::testing::TestDatabase;
use emporium_http::{Shutdown, ShutdownTrigger};
use emporium_messaging::embedded::EmbeddedBus;
use emporium_testkit::TestService;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

pub const PASSWORD: &str = "correct horse battery";
/// The key-encryption key of every test service (32 bytes, base64).
pub const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub use emporium_testkit::{Backend, certs, https_client, problem};

pub struct TestApp {
    pub base: String,
    /// The embedded bus the service publishes to (a temporary file).
    pub bus: Arc<EmbeddedBus>,
    pub client: reqwest::Client,
    pub store: Arc<dyn AccountsStore>,
    pub app_admin: (String, String),
    /// The service's time: the system's, moved ahead by `advance`.
    pub clock: Arc<ShiftedClock>,
    trigger: ShutdownTrigger,
    // Dropped last: the databases outlive the server.
    _db: TestDatabase,
    _bus_file: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger.fire();
    }
}

/// The settings every test service starts from.
pub fn settings(db_url: &str) -> AccountsSettings {
    let certs = certs();
    Loader::new(emporium_accounts::config::DEFAULTS)
        .unwrap()
        .set("database.url", db_url)
        .unwrap()
        .set("database.max_connections", "8")
        .unwrap()
        .set("http.host", "127.0.0.1")
        .unwrap()
        .set("http.port", "0")
        .unwrap()
        .set("http.tls_cert", certs.cert("accounts").to_str().unwrap())
        .unwrap()
        .set("http.tls_key", certs.key("accounts").to_str().unwrap())
        .unwrap()
        .set("admin_email", "root@shop.test")
        .unwrap()
        .set("admin_password", "the admin's long passphrase")
        .unwrap()
        .set("events.relay_poll_ms", "20")
        .unwrap()
        .set("keys.kek", KEK)
        .unwrap()
        // Tests register many accounts from one address; one test lowers it again.
        .set("login.max_registrations_per_address", "100000")
        .unwrap()
        .build()
        .unwrap()
}

impl TestService for TestApp {
    type Settings = AccountsSettings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut AccountsSettings) + Send) -> Self {
        let db = emporium_testkit::database(
            backend,
            "accounts",
            env!("CARGO_MANIFEST_DIR"),
            |url| async move { emporium_accounts::store::connect(&url, 1).await.map(|_| ()) },
        )
        .await;
        let mut settings = settings(&db.url);
        tweak(&mut settings);
        Self::spawn_on(db, settings).await
    }
}

impl TestApp {
    pub async fn spawn_on(db: TestDatabase, settings: AccountsSettings) -> Self {
        let bus_file = TestDatabase::sqlite();
        let bus_path = bus_file.url.trim_start_matches("sqlite://").to_owned();
        let bus = Arc::new(
            EmbeddedBus::open(std::path::Path::new(&bus_path))
                .await
                .unwrap(),
        );
        let clock = ShiftedClock::new();
        let app = Application::build_at(settings, bus.clone(), clock.clone())
            .await
            .unwrap();
        let base = app.base_url();
        let store = app.store();
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown));
        Self {
            base,
            client: https_client(),
            store,
            app_admin: (
                "root@shop.test".into(),
                "the admin's long passphrase".into(),
            ),
            trigger,
            bus,
            clock,
            _db: db,
            _bus_file: bus_file,
        }
    }

    /// The database the service runs on.
    pub fn db_url(&self) -> &str {
        &self._db.url
    }

    /// The SQLite file's path (`None` on PostgreSQL).
    pub fn db_path(&self) -> Option<String> {
        self._db.url.strip_prefix("sqlite://").map(str::to_owned)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.client.patch(self.url(path))
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.client.put(self.url(path))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path))
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/register")
            .json(&json!({"email": email, "password": password, "name": "Test Person"}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn refresh_with(&self, refresh_token: &str) -> Response {
        self.post("/api/v1/auth/refresh")
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .await
            .unwrap()
    }

    /// Registers and logs in; returns the token pair.
    pub async fn customer(&self, email: &str) -> Value {
        assert_eq!(
            self.register(email, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Logs in with [`PASSWORD`]; returns the access token.
    pub async fn access_token(&self, email: &str) -> String {
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "login of {email}");
        let pair: Value = r.json().await.unwrap();
        access(&pair).to_owned()
    }

    /// `GET path` with a bearer token.
    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        self.get(path).bearer_auth(token).send().await.unwrap()
    }

    /// `PATCH /api/v1/users/{id}` as `admin`.
    pub async fn admin_patch(&self, admin: &str, id: &str, body: Value) -> Response {
        self.patch(&format!("/api/v1/users/{id}"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_token(&self) -> String {
        let r = self.login(&self.app_admin.0, &self.app_admin.1).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }
}

pub fn access(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

pub fn refresh(pair: &Value) -> &str {
    pair["refresh_token"].as_str().unwrap()
}
