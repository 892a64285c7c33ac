//! The sandbox card provider: the outside party payments talks to, run here
//! because no real card network can be reached. It serves the provider API
//! of `emporium_contracts::provider` over HTTPS as a real provider would:
//! an API key, idempotency keys on every money movement, latency, and
//! transient failures (refused, hanging, or an answer lost after the work was
//! done). It keeps tokens, never card numbers.
//!
//! The test cards (docs/api.md): `4242424242424242` approves,
//! `4000000000000002` declines (`card_declined`), `4000000000009995`
//! declines (`insufficient_funds`), `4000000000000119` fails with a gateway
//! error every time. Not built yet: the late capture failure of
//! `4000000000000259` and the webhooks that would report it (it approves
//! and captures like `4242…` today).
//!
//! ## Layout
//! - [`config`]: typed settings; every key with its default in `defaults.toml`.
//! - [`cards`]: what a test card does; brand and Luhn check.
//! - [`faults`]: latency and transient failures.
//! - [`store`]: tokens, authorizations, the record of operations.
//! - [`api`]: the routes.

pub mod api;
pub mod cards;
pub mod config;
pub mod faults;
pub mod store;

use std::sync::Arc;

use emporium_db::SharedClock;
use emporium_http::{ServiceName, Shutdown, ops};

use crate::api::{AppState, Sandbox};
pub use crate::config::SandboxSettings;
use crate::store::Store;

pub const SERVICE: &str = "sandbox-provider";

pub struct Application {
    listener: ops::Listener,
    store: Store,
}

impl Application {
    pub async fn build(settings: SandboxSettings) -> anyhow::Result<Self> {
        Self::build_at(settings, emporium_db::system_clock()).await
    }

    pub async fn build_at(settings: SandboxSettings, clock: SharedClock) -> anyhow::Result<Self> {
        settings.check()?;
        let store = Store::open(
            settings.database.url.expose(),
            settings.database.max_connections,
        )
        .await?;
        let state = AppState(Arc::new(Sandbox {
            store: store.clone(),
            clock,
        }));
        let ready_db = store.db().clone();
        let ready: ops::ReadyCheck = Arc::new(move || {
            let db = ready_db.clone();
            Box::pin(async move {
                db.sql()
                    .execute("SELECT 1", ())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        });
        let listener = ops::Listener::bind(
            api::router(state, settings.sandbox.clone()),
            (ready, openapi()),
            ServiceName(SERVICE),
            &settings.http,
        )?;
        Ok(Self { listener, store })
    }

    pub fn base_url(&self) -> String {
        self.listener.base_url()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(url = %self.base_url(), "Sandbox provider listening.");
        self.listener.run_until_stopped(shutdown).await
    }
}

/// The provider API's paths, for `/openapi.json` (bodies are the types of
/// `emporium_contracts::provider`).
fn openapi() -> String {
    let op = |summary: &str| serde_json::json!({"summary": summary, "security": [{"api_key": []}]});
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Emporium sandbox card provider", "version": "1"},
        "components": {"securitySchemes": {"api_key": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/tokens": {"post": op("Tokenize a card")},
            "/v1/authorizations": {"post": op("Authorize an amount on a token (Idempotency-Key)")},
            "/v1/authorizations/{id}": {"get": op("An authorization and its operations")},
            "/v1/authorizations/{id}/capture": {"post": op("Capture (Idempotency-Key)")},
            "/v1/authorizations/{id}/void": {"post": op("Void (Idempotency-Key)")},
            "/v1/authorizations/{id}/refunds": {"post": op("Refund part or all (Idempotency-Key)")},
        }
    })
    .to_string()
}
