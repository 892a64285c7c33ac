#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use emporium_auth::testing::{MemoryJwks, TestKey, claims};
use emporium_auth::{Role, TokenType};
use emporium_catalog::store::CatalogStore;
use emporium_catalog::{Application, CatalogSettings};
use emporium_config::Loader;
use emporium_db::testing::TestDatabase;
use emporium_http::tls::CertDir;
use emporium_http::{Shutdown, ShutdownTrigger};
use emporium_messaging::embedded::EmbeddedBus;
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `both!(name)` runs `name(app)` once per store; `both!(name, [("key", "value")])` overrides settings.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        $crate::both!($name, []);
    };
    ($name:ident, [$(($key:expr, $value:expr)),* $(,)?]) => {
        mod $name {
            use $crate::helpers::{Backend, TestApp};
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(TestApp::spawn(Backend::Sqlite, &[$(($key, $value)),*]).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(TestApp::spawn(Backend::Postgres, &[$(($key, $value)),*]).await).await;
            }
        }
    };
}

pub fn certs() -> &'static CertDir {
    static CERTS: OnceLock<CertDir> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("emporium-catalog-tests-{}", std::process::id()));
        let certs = CertDir(dir);
        certs.ensure(&["catalog"], &[]).unwrap();
        certs
    })
}

/// The key the test signs tokens with; the service trusts it.
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("catalog-tests"))
}

pub fn token(token_type: TokenType, roles: Vec<Role>, scope: Option<&str>, sub: &str) -> String {
    key().sign(&claims(
        "emporium-accounts",
        "emporium",
        sub,
        token_type,
        roles,
        scope,
    ))
}

/// A customer's access token belonging to a login session.
pub fn token_with_session(user: uuid::Uuid, session: uuid::Uuid) -> String {
    let mut c = claims(
        "emporium-accounts",
        "emporium",
        &user.to_string(),
        TokenType::Access,
        vec![Role::Customer],
        None,
    );
    c.sid = Some(session.to_string());
    key().sign(&c)
}

/// An access token of the given token generation (admin or customer).
pub fn token_of_generation(user: uuid::Uuid, admin: bool, generation: i64) -> String {
    let roles = if admin {
        vec![Role::Customer, Role::Admin]
    } else {
        vec![Role::Customer]
    };
    let mut c = claims(
        "emporium-accounts",
        "emporium",
        &user.to_string(),
        TokenType::Access,
        roles,
        None,
    );
    c.generation = Some(generation);
    key().sign(&c)
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn CatalogStore>,
    pub admin: String,
    pub customer: String,
    pub orders: String,
    /// A second service client with `stock:reserve` (another caller than `orders`).
    pub shipping: String,
    /// The embedded bus the service publishes to.
    pub bus: Arc<EmbeddedBus>,
    trigger: ShutdownTrigger,
    _db: Arc<TestDatabase>,
    _bus: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger.fire();
    }
}

fn settings(db_url: &str, bus_path: &str, overrides: &[(&str, &str)]) -> CatalogSettings {
    let certs = certs();
    let mut loader = Loader::new(emporium_catalog::config::DEFAULTS).unwrap();
    for (k, v) in [
        ("database.url", db_url),
        ("database.max_connections", "8"),
        ("http.host", "127.0.0.1"),
        ("http.port", "0"),
        ("http.tls_cert", certs.cert("catalog").to_str().unwrap()),
        ("http.tls_key", certs.key("catalog").to_str().unwrap()),
        ("events.bus", "embedded"),
        ("events.embedded_path", bus_path),
        ("events.relay_poll_ms", "20"),
    ]
    .into_iter()
    .chain(overrides.iter().copied())
    {
        loader = loader.set(k, v).unwrap();
    }
    loader.build().unwrap()
}

impl TestApp {
    pub async fn spawn(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        let db = Arc::new(match backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres().await.unwrap(),
        });
        Self::spawn_on(db, overrides).await
    }

    /// Another instance on the same database (a second replica).
    pub async fn replica(&self) -> Self {
        Self::spawn_on(self._db.clone(), &[]).await
    }

    async fn spawn_on(db: Arc<TestDatabase>, overrides: &[(&str, &str)]) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let bus_file = TestDatabase::sqlite();
        let bus_path = bus_file.url.trim_start_matches("sqlite://").to_owned();
        let bus = Arc::new(
            EmbeddedBus::open(std::path::Path::new(&bus_path))
                .await
                .unwrap(),
        );
        let app = Application::build_with(
            settings(&db.url, &bus_path, overrides),
            bus.clone(),
            MemoryJwks::with(&[key()]),
        )
        .await
        .unwrap();
        let base = app.base_url();
        let store = app.store();
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown));
        let user = "01900000-0000-7000-8000-00000000000a";
        Self {
            base,
            client: emporium_http::tls::client(
                Some(&certs().ca()),
                std::time::Duration::from_secs(30),
            )
            .unwrap(),
            store,
            admin: token(
                TokenType::Access,
                vec![Role::Customer, Role::Admin],
                None,
                user,
            ),
            customer: token(
                TokenType::Access,
                vec![Role::Customer],
                None,
                "01900000-0000-7000-8000-00000000000b",
            ),
            orders: token(TokenType::Service, vec![], Some("stock:reserve"), "orders"),
            shipping: token(
                TokenType::Service,
                vec![],
                Some("stock:reserve"),
                "shipping",
            ),
            bus,
            trigger,
            _db: db,
            _bus: bus_file,
        }
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

    pub fn as_admin(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.admin)
    }

    pub async fn admin_json(&self, method: reqwest::Method, path: &str, body: Value) -> Response {
        self.as_admin(method, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A category (root or child), returning its id.
    pub async fn category(&self, name: &str, parent: Option<&str>, attributes: Value) -> String {
        let r = self
            .admin_json(
                reqwest::Method::POST,
                "/api/v1/categories",
                json!({"name": name, "parent_id": parent, "attributes": attributes}),
            )
            .await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn product(&self, sku: &str, category: &str, attributes: Value) -> Value {
        let r = self
            .admin_json(
                reqwest::Method::POST,
                "/api/v1/products",
                json!({"sku": sku, "name": format!("Product {sku}"), "description": "A thing.",
                       "price": {"amount": 1999, "currency": "EUR"}, "category_id": category, "attributes": attributes}),
            )
            .await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    pub async fn warehouse(&self, code: &str) -> String {
        let r = self
            .admin_json(
                reqwest::Method::POST,
                "/api/v1/warehouses",
                json!({"code": code, "name": format!("Warehouse {code}")}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn set_stock(&self, warehouse: &str, product: &str, on_hand: i64) -> Response {
        self.admin_json(
            reqwest::Method::PUT,
            &format!("/api/v1/warehouses/{warehouse}/stock/{product}"),
            json!({"on_hand": on_hand, "reason": "delivery"}),
        )
        .await
    }

    /// A product with stock: `on_hand` per warehouse. Returns (product id, warehouse ids).
    pub async fn stocked(&self, sku: &str, on_hand: &[i64]) -> (String, Vec<String>) {
        let category = self.category(&format!("Cat {sku}"), None, json!([])).await;
        let product = self.product(sku, &category, json!({})).await;
        let id = product["id"].as_str().unwrap().to_owned();
        let mut warehouses = Vec::new();
        for (i, q) in on_hand.iter().enumerate() {
            let w = self.warehouse(&format!("{sku}-W{i}")).await;
            assert_eq!(self.set_stock(&w, &id, *q).await.status(), 200);
            warehouses.push(w);
        }
        (id, warehouses)
    }

    pub async fn reserve(&self, id: &str, items: Value) -> Response {
        self.reserve_as(&self.orders, id, items).await
    }

    /// Reserves as the service client holding `token`.
    pub async fn reserve_as(&self, token: &str, id: &str, items: Value) -> Response {
        self.post("/internal/v1/reservations")
            .bearer_auth(token)
            .json(&json!({"id": id, "items": items}))
            .send()
            .await
            .unwrap()
    }

    pub async fn stock(&self, product: &str) -> Vec<Value> {
        let r = self
            .as_admin(
                reqwest::Method::GET,
                &format!("/api/v1/products/{product}/stock"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

/// The fields a 422 names.
pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
