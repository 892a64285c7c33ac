#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use emporium_auth::testing::{MemoryJwks, TestKey, claims};
use emporium_auth::{Role, TokenType};
use emporium_catalog::store::CatalogStore;
use emporium_catalog::{Application, CatalogSettings};
use emporium_config::Loader;
use emporium_db::ShiftedClock;
use emporium_db::testing::TestDatabase;
use emporium_http::{Shutdown, ShutdownTrigger};
use emporium_messaging::embedded::EmbeddedBus;
use emporium_testkit::TestService;
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use sqlx::Connection;

pub use emporium_testkit::{Backend, certs, problem, problem_of};

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
    /// The service's time: the system's, moved ahead by `advance`.
    pub clock: Arc<ShiftedClock>,
    trigger: ShutdownTrigger,
    _db: Arc<TestDatabase>,
    _bus: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger.fire();
    }
}

/// The settings every test service starts from.
fn settings(db_url: &str, bus_path: &str) -> CatalogSettings {
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
    ] {
        loader = loader.set(k, v).unwrap();
    }
    loader.build().unwrap()
}

impl TestService for TestApp {
    type Settings = CatalogSettings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut CatalogSettings) + Send) -> Self {
        let db = emporium_testkit::database(
            backend,
            "catalog",
            env!("CARGO_MANIFEST_DIR"),
            |url| async move { emporium_catalog::store::connect(&url, 1).await.map(|_| ()) },
        )
        .await;
        Self::spawn_on(Arc::new(db), ShiftedClock::new(), tweak).await
    }
}

impl TestApp {
    /// Another instance on the same database (a second replica).
    pub async fn replica(&self) -> Self {
        Self::spawn_on(self._db.clone(), self.clock.clone(), |_| {}).await
    }

    async fn spawn_on(
        db: Arc<TestDatabase>,
        clock: Arc<ShiftedClock>,
        tweak: impl FnOnce(&mut CatalogSettings),
    ) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let bus_file = TestDatabase::sqlite();
        let bus_path = bus_file.url.trim_start_matches("sqlite://").to_owned();
        let bus = Arc::new(
            EmbeddedBus::open(std::path::Path::new(&bus_path))
                .await
                .unwrap(),
        );
        let mut settings = settings(&db.url, &bus_path);
        tweak(&mut settings);
        let app = Application::build_at(
            settings,
            bus.clone(),
            MemoryJwks::with(&[key()]),
            clock.clone(),
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
            clock,
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

impl TestApp {
    /// Whether the service runs on SQLite (else PostgreSQL).
    pub fn is_sqlite(&self) -> bool {
        self._db.url.starts_with("sqlite:")
    }

    /// Makes the service's database unreachable. On PostgreSQL the database
    /// is dropped `WITH (FORCE)` (its connections are terminated, new ones are
    /// refused). On SQLite nothing done to the file reaches the readiness
    /// probe (`SELECT 1` reads no page, and open descriptors outlive a
    /// deleted file), so the service's pool is closed instead.
    pub async fn take_database_down(&self) {
        if self.is_sqlite() {
            let outbox = self.store.outbox();
            let closing = outbox.0.close();
            // Closing refuses new checkouts at once; waiting for the connections
            // in use to come back is bounded.
            let _ = tokio::time::timeout(Duration::from_secs(5), closing).await;
        } else {
            let name = self
                ._db
                .url
                .rsplit('/')
                .next()
                .unwrap()
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            assert!(
                name.starts_with("test_")
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{name}"
            );
            let mut conn =
                sqlx::postgres::PgConnection::connect(&emporium_db::testing::postgres_admin_url())
                    .await
                    .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
            let _ = conn.close().await;
        }
    }

    /// Every movement of the journal (of `product`, or of all products),
    /// oldest first, read in pages of `limit` by following `next_after`.
    pub async fn movements(&self, product: Option<&str>, limit: i64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after: Option<i64> = None;
        for _ in 0..100_000 {
            let mut path = format!("/api/v1/stock/movements?limit={limit}");
            if let Some(p) = product {
                path.push_str(&format!("&product_id={p}"));
            }
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let r = self
                .as_admin(reqwest::Method::GET, &path)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let page: Value = r.json().await.unwrap();
            let items = page["items"].as_array().unwrap();
            assert!(
                items.len() as i64 <= limit,
                "{path}: {} movements on a page of {limit}",
                items.len()
            );
            all.extend(items.iter().cloned());
            match page["next_after"].as_i64() {
                Some(next) => {
                    assert!(
                        after.is_none_or(|a| next > a),
                        "{path}: next_after {next} does not move on"
                    );
                    after = Some(next);
                }
                None => return all,
            }
        }
        panic!("the journal's pages never ended");
    }

    /// Checks a product's stock against its journal, and returns its rows as
    /// warehouse id → (on_hand, reserved):
    /// - every row holds `0 <= reserved <= on_hand`;
    /// - the journal's `seq` only grows, and replayed from zero per warehouse
    ///   its deltas give each movement's `on_hand_after` / `reserved_after`
    ///   (so movements of one row are journaled in the order they happened)
    ///   and end at the row as stored; no movement names a warehouse without a row;
    /// - the product's `available` is the sum of `on_hand - reserved`.
    pub async fn assert_journal_replays(&self, product: &str) -> BTreeMap<String, (i64, i64)> {
        let rows = self.stock(product).await;
        let mut stock: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for s in &rows {
            let on_hand = s["on_hand"].as_i64().unwrap();
            let reserved = s["reserved"].as_i64().unwrap();
            assert!(
                0 <= reserved && reserved <= on_hand,
                "a stock row of {product} holds more reserved than on hand: {s}"
            );
            let warehouse = s["warehouse_id"].as_str().unwrap().to_owned();
            assert!(
                stock.insert(warehouse, (on_hand, reserved)).is_none(),
                "two rows for one warehouse: {rows:?}"
            );
        }
        let journal = self.movements(Some(product), 100).await;
        let mut replayed: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut last_seq = 0;
        for m in &journal {
            let seq = m["seq"].as_i64().unwrap();
            assert!(seq > last_seq, "the journal goes back at {m}");
            last_seq = seq;
            assert_eq!(m["product_id"], product, "{m}");
            let row = replayed
                .entry(m["warehouse_id"].as_str().unwrap().to_owned())
                .or_default();
            row.0 += m["delta_on_hand"].as_i64().unwrap();
            row.1 += m["delta_reserved"].as_i64().unwrap();
            assert_eq!(
                *row,
                (
                    m["on_hand_after"].as_i64().unwrap(),
                    m["reserved_after"].as_i64().unwrap()
                ),
                "replaying the journal disagrees with the movement {m}"
            );
            assert!(
                0 <= row.1 && row.1 <= row.0,
                "a movement left more reserved than on hand: {m}"
            );
        }
        for (warehouse, row) in &stock {
            assert_eq!(
                replayed.get(warehouse).copied().unwrap_or_default(),
                *row,
                "warehouse {warehouse} of {product}: the journal replays to something else than the row"
            );
        }
        for warehouse in replayed.keys() {
            assert!(
                stock.contains_key(warehouse),
                "the journal moves stock of {product} in warehouse {warehouse}, which has no row"
            );
        }
        let p: Value = self
            .get(&format!("/api/v1/products/{product}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let free: i64 = stock
            .values()
            .map(|(on_hand, reserved)| on_hand - reserved)
            .sum();
        assert_eq!(p["available"], free, "{p}");
        stock
    }
}

/// Unix milliseconds of an RFC 3339 time (as the catalog writes `expires_at`).
pub fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// Waits until the wall clock (the one the service stamps and compares
/// times with) shows `ms` Unix milliseconds.
pub async fn wait_until(ms: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    if ms > now {
        tokio::time::sleep(Duration::from_millis((ms - now) as u64)).await;
    }
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
