#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use emporium_auth::testing::{MemoryJwks, TestKey, claims};
use emporium_auth::{Claims, Role, TokenType};
use emporium_catalog::store::CatalogStore;
use emporium_catalog::{Application, CatalogSettings};
use emporium_db::ShiftedClock;
use emporium_db::testing::TestDatabase;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_testkit::{
    Endpoint, Running, TestService, database, embedded_bus, run_in_background, service_settings,
};
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use sqlx::Connection;

pub use emporium_testkit::{Backend, problem, problem_fields as fields, problem_of};

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

/// The claims of a user's access token, as accounts issues them.
fn access_claims(user: uuid::Uuid, roles: Vec<Role>) -> Claims {
    let sub = user.to_string();
    claims(
        "emporium-accounts",
        "emporium",
        &sub,
        TokenType::Access,
        roles,
        None,
    )
}

/// A customer's access token belonging to a login session.
pub fn token_with_session(user: uuid::Uuid, session: uuid::Uuid) -> String {
    let mut c = access_claims(user, vec![Role::Customer]);
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
    let mut c = access_claims(user, roles);
    c.generation = Some(generation);
    key().sign(&c)
}

pub struct TestApp {
    /// Stops the service when the app is dropped.
    _server: Running,
    /// `base`, `client` and the requests (`get`, `post`, `url`) through `Deref`.
    http: Endpoint,
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
    _db: Arc<TestDatabase>,
    _bus: TestDatabase,
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

/// Opens the store at `url`, which migrates it (how a template database is made).
async fn migrate(url: String) -> anyhow::Result<()> {
    emporium_catalog::store::connect(&url, 1).await.map(|_| ())
}

/// The settings every test service starts from.
fn settings(db_url: &str, bus_path: &str) -> CatalogSettings {
    let bus = [
        ("events.bus", "embedded"),
        ("events.embedded_path", bus_path),
    ];
    service_settings("catalog", emporium_catalog::config::DEFAULTS, db_url, &bus)
}

impl TestService for TestApp {
    type Settings = CatalogSettings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut CatalogSettings) + Send) -> Self {
        let db = database(backend, "catalog", env!("CARGO_MANIFEST_DIR"), migrate).await;
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
        let (bus, bus_file) = embedded_bus().await;
        let bus_path = bus_file.url.trim_start_matches("sqlite://").to_owned();
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
        let user = "01900000-0000-7000-8000-00000000000a";
        Self {
            http: Endpoint::new(app.base_url()),
            store: app.store(),
            _server: run_in_background(|shutdown| app.run_until_stopped(shutdown)),
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
            _db: db,
            _bus: bus_file,
        }
    }

    pub fn as_admin(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(&self.admin)
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
        let p = self.fetch(&format!("/api/v1/products/{product}")).await;
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

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
