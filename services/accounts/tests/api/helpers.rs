#![allow(clippy::unwrap_used, dead_code)]

use emporium_accounts::store::AccountsStore;
use emporium_accounts::{AccountsSettings, Application};
use emporium_db::ShiftedClock;
use emporium_db::testing::TestDatabase;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_testkit::{
    Endpoint, Running, TestService, database, embedded_bus, run_in_background, service_settings,
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

pub const PASSWORD: &str = "correct horse battery";
/// The email and password of the admin every test service starts with.
pub const ADMIN: (&str, &str) = ("root@shop.test", "the admin's long passphrase");
/// The key-encryption key of every test service (32 bytes, base64).
pub const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub use emporium_testkit::{Backend, https_client, problem};

pub struct TestApp {
    /// Stops the service when the app is dropped (first).
    _server: Running,
    /// The embedded bus the service publishes to (a temporary file).
    pub bus: Arc<EmbeddedBus>,
    /// `base`, `client` and the requests (`get`, `post`, `url`, …) through `Deref`.
    http: Endpoint,
    pub store: Arc<dyn AccountsStore>,
    /// The service's time: the system's, moved ahead by `advance`.
    pub clock: Arc<ShiftedClock>,
    // Dropped last: the databases outlive the server.
    _db: TestDatabase,
    _bus_file: TestDatabase,
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

/// Opens the store at `url`, which migrates it (how a template database is made).
pub async fn migrate(url: String) -> anyhow::Result<()> {
    emporium_accounts::store::connect(&url, 1).await.map(|_| ())
}

/// The settings every test service starts from.
pub fn settings(db_url: &str) -> AccountsSettings {
    let more = [
        ("admin_email", ADMIN.0),
        ("admin_password", ADMIN.1),
        ("keys.kek", KEK),
        // Tests register many accounts from one address; one test lowers it again.
        ("login.max_registrations_per_address", "100000"),
    ];
    service_settings(
        "accounts",
        emporium_accounts::config::DEFAULTS,
        db_url,
        &more,
    )
}

impl TestService for TestApp {
    type Settings = AccountsSettings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut AccountsSettings) + Send) -> Self {
        let db = database(backend, "accounts", env!("CARGO_MANIFEST_DIR"), migrate).await;
        let mut settings = settings(&db.url);
        tweak(&mut settings);
        Self::spawn_on(db, settings).await
    }
}

impl TestApp {
    pub async fn spawn_on(db: TestDatabase, settings: AccountsSettings) -> Self {
        let (bus, bus_file) = embedded_bus().await;
        let clock = ShiftedClock::new();
        let app = Application::build_at(settings, bus.clone(), clock.clone())
            .await
            .unwrap();
        Self {
            http: Endpoint::new(app.base_url()),
            store: app.store(),
            _server: run_in_background(|shutdown| app.run_until_stopped(shutdown)),
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

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.register_named(email, password, "Test Person").await
    }

    pub async fn register_named(&self, email: &str, password: &str, name: &str) -> Response {
        self.post("/api/v1/auth/register")
            .json(&json!({"email": email, "password": password, "name": name}))
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

    /// A login sent through a proxy for `address` (`X-Forwarded-For`).
    pub async fn login_from(&self, address: &str, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/login")
            .header("x-forwarded-for", address)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// Logs in, which must succeed; returns the token pair.
    pub async fn login_pair(&self, email: &str, password: &str) -> Value {
        let r = self.login(email, password).await;
        assert_eq!(r.status(), StatusCode::OK, "login of {email}");
        r.json().await.unwrap()
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
        self.login_pair(email, PASSWORD).await
    }

    /// Logs in with [`PASSWORD`]; returns the access token.
    pub async fn access_token(&self, email: &str) -> String {
        access(&self.login_pair(email, PASSWORD).await).to_owned()
    }

    /// `method path` with a bearer token.
    pub async fn send_with(&self, method: Method, path: &str, token: &str) -> Response {
        self.request(method, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `method path` with a bearer token and a JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> Response {
        self.request(method, path)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` with a bearer token.
    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        self.send_with(Method::GET, path, token).await
    }

    /// `GET path` with a bearer token, which must answer 200; returns the body.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let r = self.get_with(path, token).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    /// The account of `token` (`GET /api/v1/users/me`, which must answer 200).
    pub async fn me(&self, token: &str) -> Value {
        self.get_json("/api/v1/users/me", token).await
    }

    /// The id of the account of `token`.
    pub async fn user_id(&self, token: &str) -> String {
        self.me(token).await["id"].as_str().unwrap().to_owned()
    }

    /// `PATCH /api/v1/users/{id}` (`me`: one's own account) with `token`.
    pub async fn patch_user(&self, token: &str, id: &str, body: Value) -> Response {
        let path = format!("/api/v1/users/{id}");
        self.send_json(Method::PATCH, &path, token, body).await
    }

    /// `PUT /api/v1/users/me/password` with `token`.
    pub async fn change_password(&self, token: &str, current: &str, new: &str) -> Response {
        let body = json!({"current_password": current, "new_password": new});
        self.send_json(Method::PUT, "/api/v1/users/me/password", token, body)
            .await
    }

    /// `POST /api/v1/auth/logout` with `token`.
    pub async fn logout(&self, token: &str) -> Response {
        self.send_with(Method::POST, "/api/v1/auth/logout", token)
            .await
    }

    /// `DELETE /api/v1/users/me` (closing the account) with `token`.
    pub async fn close_account(&self, token: &str) -> Response {
        self.send_with(Method::DELETE, "/api/v1/users/me", token)
            .await
    }

    /// Registers `email` and makes it an admin with `admin`'s token; returns
    /// its id and an access token of its new role (a login after the change).
    pub async fn new_admin(&self, admin: &str, email: &str) -> (String, String) {
        let pair = self.customer(email).await;
        let id = self.user_id(access(&pair)).await;
        let r = self
            .patch_user(admin, &id, json!({"roles": ["customer", "admin"]}))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "promoting {email}");
        (id, self.access_token(email).await)
    }

    pub async fn admin_token(&self) -> String {
        let (email, password) = ADMIN;
        access(&self.login_pair(email, password).await).to_owned()
    }
}

pub fn access(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

pub fn refresh(pair: &Value) -> &str {
    pair["refresh_token"].as_str().unwrap()
}

/// The claims a JWT carries (its payload, read without checking the signature).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}
