//! What every service's tests stand on (a dev-dependency only).
//!
//! - [`both!`]: runs one test body against a service on SQLite and on
//!   PostgreSQL, with typed setting changes.
//! - [`TestService`]: what a service's `TestApp` implements for [`both!`].
//! - [`certs`]: one development CA and service certificates per test binary.
//! - [`problem`] / [`problem_of`]: assert an answer is an RFC 9457 problem.
//! - [`database`]: a fresh database per test; on PostgreSQL a clone of a
//!   template migrated once ([`template`]), not migrations per test.
//! - [`schema::assert_schema_parity`]: both engines' migrations make the same
//!   tables and columns.
//! - [`Endpoint`]: requests to a spawned service; [`embedded_bus`]: the bus it
//!   publishes to; [`events`]: listening on that bus.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::{Arc, OnceLock};

use emporium_config::Loader;
use emporium_db::testing::TestDatabase;
use emporium_http::tls::CertDir;
use emporium_http::{Shutdown, ShutdownTrigger};
use emporium_messaging::embedded::EmbeddedBus;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub mod events;
pub mod schema;
pub mod template;

pub use template::database;

/// The two engines every store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service started for one test: what [`both!`] spawns.
pub trait TestService: Sized {
    /// The service's typed settings, which a test may change before the start.
    type Settings;
    fn spawn(
        backend: Backend,
        tweak: impl FnOnce(&mut Self::Settings) + Send,
    ) -> impl Future<Output = Self> + Send;
}

/// `both!(name)` runs `async fn name(app: TestApp)` once per engine, as
/// `name::sqlite` and `name::postgres`; `both!(name, |s| s.key = value)`
/// changes the typed settings first. `TestApp` is `crate::helpers::TestApp`
/// of the crate that uses the macro, implementing [`TestService`].
// `crate` is the calling crate on purpose: its `helpers::TestApp` is spawned.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! both {
    // One engine's test, `$name::$test`, inside the module the arm below makes.
    (@on $backend:ident, $test:ident, $name:ident, $tweak:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let app = <crate::helpers::TestApp as $crate::TestService>::spawn(
                $crate::Backend::$backend,
                $tweak,
            )
            .await;
            super::$name(app).await;
        }
    };
    ($name:ident) => {
        $crate::both!($name, |_| {});
    };
    ($name:ident, $tweak:expr) => {
        mod $name {
            $crate::both!(@on Sqlite, sqlite, $name, $tweak);
            $crate::both!(@on Postgres, postgres, $name, $tweak);
        }
    };
}

/// Every name a test certificate is made for.
const SERVICES: [&str; 7] = [
    "accounts",
    "catalog",
    "gateway",
    "payments",
    "orders",
    "sandbox-provider",
    "svc",
];

/// One development CA and a certificate per service for the whole test
/// binary (tests run in parallel; the files are made once).
pub fn certs() -> &'static CertDir {
    static CERTS: OnceLock<CertDir> = OnceLock::new();
    CERTS.get_or_init(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = std::env::temp_dir().join(format!(
            "emporium-test-certs-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        let certs = CertDir(dir);
        certs.ensure(&SERVICES, &[]).unwrap();
        certs
    })
}

/// The settings of a test instance of `service`: its `defaults`, then what
/// every test service shares (the database at `db_url`, HTTPS on a free port
/// of 127.0.0.1 with the service's certificate, a relay polling every 20 ms
/// where the service has one),
/// then `more`.
pub fn service_settings<T: DeserializeOwned>(
    service: &str,
    defaults: &str,
    db_url: &str,
    more: &[(&str, &str)],
) -> T {
    let (cert, key) = (certs().cert(service), certs().key(service));
    let shared = [
        ("database.url", db_url),
        ("database.max_connections", "8"),
        ("http.host", "127.0.0.1"),
        ("http.port", "0"),
        ("http.tls_cert", cert.to_str().unwrap()),
        ("http.tls_key", key.to_str().unwrap()),
    ];
    // A service that publishes events relays its outbox quickly in tests.
    let publishes = defaults.contains("[events]");
    let relay = publishes.then_some(("events.relay_poll_ms", "20"));
    let mut loader = Loader::new(defaults).unwrap();
    for (name, value) in shared.iter().chain(&relay).chain(more) {
        loader = loader.set(name, value).unwrap();
    }
    loader.build().unwrap()
}

/// An HTTPS client that trusts [`certs`]' CA.
pub fn https_client() -> reqwest::Client {
    emporium_http::tls::client(Some(&certs().ca()), std::time::Duration::from_secs(30)).unwrap()
}

/// A spawned service's base URL and an [`https_client`]: builds its requests.
pub struct Endpoint {
    pub base: String,
    pub client: reqwest::Client,
}

impl Endpoint {
    pub fn new(base: String) -> Self {
        Self {
            base,
            client: https_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// `GET path` without credentials, which must answer 200; returns the
    /// JSON body.
    pub async fn fetch(&self, path: &str) -> Value {
        let r = self.get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }
}

/// A service running in the background, stopped when this is dropped.
pub struct Running(ShutdownTrigger);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fire();
    }
}

/// Runs `run` (an application's `run_until_stopped`) in the background until
/// the returned [`Running`] is dropped.
pub fn run_in_background<F>(run: impl FnOnce(Shutdown) -> F) -> Running
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(run(shutdown));
    Running(trigger)
}

/// An embedded bus on a fresh SQLite file, and the file (drop it after the bus).
pub async fn embedded_bus() -> (Arc<EmbeddedBus>, TestDatabase) {
    let file = TestDatabase::sqlite();
    let path = file.url.trim_start_matches("sqlite://").to_owned();
    let bus = EmbeddedBus::open(std::path::Path::new(&path))
        .await
        .unwrap();
    (Arc::new(bus), file)
}

/// Sends requests at once (`requests` are their futures); returns their
/// statuses, in the same order.
pub async fn statuses_at_once<F>(requests: impl IntoIterator<Item = F>) -> Vec<u16>
where
    F: Future<Output = Response>,
{
    futures_util::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect()
}

/// How many of `statuses` are `status`.
pub fn count_of(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// The fields a 422 problem names, in order (none when it names none).
pub fn problem_fields(problem: &Value) -> Vec<String> {
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

/// Asserts `response` is a problem (`application/problem+json`) with this
/// status, a `/problems/…` type, a title and the same status in the body, and
/// returns the body.
pub async fn problem(response: Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    assert_eq!(content_type, "application/problem+json", "body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/") && t.len() > "/problems/".len()),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    body
}

/// As [`problem`], and the type is `/problems/<kind>`.
pub async fn problem_of(response: Response, status: u16, kind: &str) -> Value {
    let body = problem(response, status).await;
    assert_eq!(body["type"], format!("/problems/{kind}"), "{body}");
    body
}
