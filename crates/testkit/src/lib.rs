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

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::OnceLock;

use emporium_http::tls::CertDir;
use reqwest::Response;
use serde_json::Value;

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
    ($name:ident) => {
        $crate::both!($name, |_| {});
    };
    ($name:ident, $tweak:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = <crate::helpers::TestApp as $crate::TestService>::spawn(
                    $crate::Backend::Sqlite,
                    $tweak,
                )
                .await;
                super::$name(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let app = <crate::helpers::TestApp as $crate::TestService>::spawn(
                    $crate::Backend::Postgres,
                    $tweak,
                )
                .await;
                super::$name(app).await;
            }
        }
    };
}

/// Every name a test certificate is made for.
const SERVICES: [&str; 6] = [
    "accounts", "catalog", "gateway", "payments", "orders", "svc",
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

/// An HTTPS client that trusts [`certs`]' CA.
pub fn https_client() -> reqwest::Client {
    emporium_http::tls::client(Some(&certs().ca()), std::time::Duration::from_secs(30)).unwrap()
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
