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
//! error every time, and `4000000000000259` approves and captures like
//! `4242…`, then fails late: its capture's notification is `capture_failed`
//! and the authorization becomes `capture_failed` (with webhooks on; without
//! them it stays captured).
//!
//! A merchant that cannot tell whether an authorize went through cancels by
//! its reference (`POST /v1/cancellations`): what is authorized under it is
//! voided, and no authorize under it succeeds from then on. With
//! `sandbox.webhook_url` set, each capture is reported to that endpoint a
//! while later, signed, and delivered again until the endpoint takes it.
//!
//! ## Layout
//! - [`config`]: typed settings; every key with its default in `defaults.toml`.
//! - [`cards`]: what a test card does; brand and Luhn check.
//! - [`faults`]: latency and transient failures, and the [`FaultSwitch`]
//!   that changes them while the sandbox runs.
//! - [`store`]: tokens, authorizations, the record of operations, cancelled
//!   references, notifications waiting to go.
//! - [`api`]: the routes.
//! - [`webhooks`]: delivers the notifications.

pub mod api;
pub mod cards;
pub mod config;
pub mod faults;
pub mod store;
pub mod webhooks;

use std::sync::Arc;

use emporium_db::SharedClock;
use emporium_http::{ServiceName, Shutdown, ops};

use crate::api::{AppState, Sandbox};
pub use crate::config::SandboxSettings;
pub use crate::faults::{FaultSwitch, Faults};
use crate::store::Store;
use crate::webhooks::Webhooks;

pub const SERVICE: &str = "sandbox-provider";

pub struct Application {
    listener: ops::Listener,
    store: Store,
    faults: FaultSwitch,
    /// `None` without a `webhook_url`.
    webhooks: Option<Webhooks>,
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
        let webhooks = Webhooks::new(store.clone(), clock.clone(), &settings.sandbox)?;
        let notify_after_ms = webhooks
            .as_ref()
            .map(|_| i64::try_from(settings.sandbox.notify_after_ms).unwrap_or(i64::MAX));
        let state = AppState(Arc::new(Sandbox {
            store: store.clone(),
            clock,
            notify_after_ms,
        }));
        let faults = FaultSwitch::new(settings.sandbox.faults);
        let ready = ops::db_ready(store.db().clone());
        let listener = ops::Listener::bind(
            api::router(state, &settings.sandbox.api_key, faults.clone()),
            (ready, openapi()),
            ServiceName(SERVICE),
            &settings.http,
        )?;
        Ok(Self {
            listener,
            store,
            faults,
            webhooks,
        })
    }

    pub fn base_url(&self) -> String {
        self.listener.base_url()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The switch of the faults in force, for tests and operators' drills
    /// (see [`FaultSwitch`]); there is no way to it over HTTP. Take it before
    /// [`Application::run_until_stopped`], which consumes the application;
    /// it keeps working while the sandbox runs.
    pub fn faults(&self) -> FaultSwitch {
        self.faults.clone()
    }

    /// Serves HTTP and delivers notifications (with a `webhook_url`) until
    /// `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(url = %self.base_url(), "Sandbox provider listening.");
        // Delivery stops on the shutdown, or once the listener has stopped
        // for any other reason (it failed), so it is never left running alone.
        let (served_trigger, served) = Shutdown::new();
        let delivery = self.webhooks.map(|webhooks| {
            let shutdown = shutdown.clone();
            tokio::spawn(webhooks.run(async move {
                tokio::select! {
                    () = shutdown.wait() => {}
                    () = served.wait() => {}
                }
            }))
        });
        let result = self.listener.run_until_stopped(shutdown).await;
        served_trigger.fire();
        if let Some(delivery) = delivery {
            let _ = delivery.await;
        }
        result
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
            "/v1/cancellations": {"post": op("Cancel by reference: void what is authorized under it, refuse any authorize under it from now on (idempotent, no key)")},
        }
    })
    .to_string()
}
