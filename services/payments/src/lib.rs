//! The payments service: card tokens, one payment intent per order moved
//! through authorize → capture → refund (or void, or failed) at a card
//! provider, the provider's signed webhooks, and the ledger every money
//! movement is recorded in (double-entry, hash-chained, append-only).
//!
//! ## Layout
//! - [`config`]: typed settings; every key with its default in `defaults.toml`.
//! - [`domain`]: [`domain::Card`] (Luhn, brand, expiry, CVC; the number is
//!   never printed), the payment states and their legal steps.
//! - [`ledger`]: transfers as pairs of entries that sum to zero, the hash
//!   chain over them, and [`ledger::verify`].
//! - [`store`]: intents, provider calls, history and webhook receipts; the
//!   ledger's table (on PostgreSQL a trigger refuses UPDATE, DELETE and
//!   TRUNCATE; on SQLite triggers refuse UPDATE and DELETE).
//! - [`provider`]: the [`provider::Provider`] trait (the sandbox's client
//!   implements it).
//! - [`service`]: what payments does, over the store and the provider.
//! - [`api`]: public, webhook and internal routes.
//! - [`export`]: the ledger as Elasticsearch `_bulk` NDJSON (ECS field names).
//! - [`Application`]: binds, wires and serves it all, with the outbox relay
//!   and the recovery loop for provider calls whose answer was lost.

pub mod api;
pub mod config;
pub mod domain;
pub mod export;
pub mod ledger;
pub mod provider;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use emporium_auth::JwksSource;
use emporium_client::provider::CardProvider;
use emporium_client::{ClientSettings, ServiceClient, StaticToken};
use emporium_db::SharedClock;
use emporium_http::{ServiceName, Shutdown, ShutdownTrigger, ops};
use emporium_messaging::Bus;
use emporium_messaging::outbox::{Outbox, Relay, RelayWaker};
use emporium_messaging::revocations::RevocationFeed;

use crate::api::{Api, AppState};
pub use crate::config::PaymentsSettings;
use crate::provider::Provider;
use crate::service::Payments;
use crate::store::{MIGRATIONS, Store};

pub const SERVICE: &str = "payments";

/// Everything payments' database holds: its tables, the outbox.
pub const ALL_MIGRATIONS: [emporium_db::Migrations; 2] =
    [MIGRATIONS, emporium_messaging::migrations::OUTBOX];

pub struct Application {
    listener: ops::Listener,
    state: AppState,
    relay: Relay,
    scan_every: Duration,
    revocations_stop: ShutdownTrigger,
    revocations_task: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Opens the store and the bus from the settings, verifies tokens against
    /// the accounts JWKS and calls the provider the settings name.
    pub async fn build(settings: PaymentsSettings) -> anyhow::Result<Self> {
        let bus = settings.events.open_bus().await?;
        Self::build_with_bus(settings, bus).await
    }

    /// As [`Application::build`], publishing to a bus the caller shares.
    pub async fn build_with_bus(
        settings: PaymentsSettings,
        bus: Arc<dyn Bus>,
    ) -> anyhow::Result<Self> {
        let jwks = settings.auth.jwks()?;
        Self::build_at(settings, bus, jwks, emporium_db::system_clock()).await
    }

    /// As [`Application::build`], with the bus, the key source and the clock
    /// given (tests hold their own keys and move time).
    pub async fn build_at(
        settings: PaymentsSettings,
        bus: Arc<dyn Bus>,
        jwks: Arc<dyn JwksSource>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        settings.check()?;
        let provider = Arc::new(card_provider(&settings)?);
        Self::build_with_provider(settings, bus, jwks, clock, provider).await
    }

    /// As [`Application::build_at`], with the provider given.
    pub async fn build_with_provider(
        settings: PaymentsSettings,
        bus: Arc<dyn Bus>,
        jwks: Arc<dyn JwksSource>,
        clock: SharedClock,
        provider: Arc<dyn Provider>,
    ) -> anyhow::Result<Self> {
        settings.check()?;
        let db = emporium_db::open_service_db(
            settings.database.url.expose(),
            settings.database.max_connections,
            &ALL_MIGRATIONS,
        )
        .await?;
        let verifier = settings.auth.verifier(jwks);
        let (revocations_stop, stop) = Shutdown::new();
        let revocations_task = bus
            .subscribe(
                RevocationFeed::subscription(SERVICE, verifier.clone()),
                Box::pin(stop.wait()),
            )
            .await?;
        let waker = RelayWaker::default();
        let state = AppState(Arc::new(Api {
            payments: Payments {
                store: Store::new(db.clone()).with_grace(request_time_ms(&settings)),
                provider,
                clock,
                relay: waker.clone(),
                recovery: settings.recovery.clone(),
            },
            verifier,
            webhook_secret: settings.webhooks.secret.clone(),
            webhook_tolerance_secs: settings.webhooks.tolerance_secs,
            trusted_proxies: emporium_http::client::TrustedProxies::parse(
                &settings.tokens.trusted_proxies,
            )
            .map_err(|e| anyhow::anyhow!("tokens.trusted_proxies: {e}"))?,
            tokenizations: emporium_http::rate::KeyedLimiter::per_minute(
                settings.tokens.per_minute,
                settings.tokens.burst,
            ),
        }));
        let relay = Relay {
            outbox: Outbox(db.clone()),
            bus,
            settings: settings.events.relay_settings(),
            waker,
            service: SERVICE,
        };
        let ready = ops::db_ready(db);
        let listener = ops::Listener::bind(
            api::router(state.clone()),
            (ready, api::openapi::json()),
            ServiceName(SERVICE),
            &settings.http,
        )?;
        Ok(Self {
            listener,
            state,
            relay,
            scan_every: Duration::from_millis(settings.recovery.scan_every_ms.max(10)),
            revocations_stop,
            revocations_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn base_url(&self) -> String {
        self.listener.base_url()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves HTTP, relays the outbox and recovers lost provider calls until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(url = %self.base_url(), "Payments listening.");
        let relay = tokio::spawn(self.relay.run(shutdown.clone().wait()));
        let recovery = tokio::spawn(recover(
            self.state.clone(),
            self.scan_every,
            shutdown.clone().wait(),
        ));
        let served = self.listener.run_until_stopped(shutdown).await;
        self.revocations_stop.fire();
        let _ = self.revocations_task.await;
        let _ = relay.await;
        let _ = recovery.await;
        served
    }
}

/// The provider's client from the settings: pooled HTTPS, the API key as
/// the bearer token, timeouts and retries with the same key.
pub fn card_provider(settings: &PaymentsSettings) -> anyhow::Result<CardProvider> {
    let p = &settings.provider;
    let ca = (!p.ca_cert.is_empty()).then(|| std::path::PathBuf::from(&p.ca_cert));
    let http = emporium_http::tls::client(ca.as_deref(), Duration::from_millis(p.timeout_ms))?;
    let base = reqwest::Url::parse(&p.url)?;
    let client = ServiceClient::new(
        http,
        base,
        Arc::new(StaticToken::new(p.api_key.expose())),
        ClientSettings {
            timeout_ms: p.timeout_ms,
            max_attempts: p.max_attempts,
            backoff_base_ms: p.backoff_base_ms,
            backoff_max_ms: p.backoff_max_ms,
        },
    );
    Ok(CardProvider::new(client))
}

/// The longest a request's provider call can take with all its attempts:
/// until then the recovery loop leaves the call to the request.
fn request_time_ms(settings: &PaymentsSettings) -> i64 {
    let p = &settings.provider;
    let per_attempt = p.timeout_ms.saturating_add(p.backoff_max_ms);
    let all = per_attempt
        .saturating_mul(u64::from(p.max_attempts))
        .saturating_add(1_000);
    i64::try_from(all).unwrap_or(i64::MAX)
}

/// The recovery loop: provider calls whose answer was lost are made again.
async fn recover(
    state: AppState,
    every: Duration,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = state.0.payments.recover().await {
            tracing::warn!(error = %e, "Recovering provider calls failed; trying again later.");
        }
    }
}

/// Applies the migrations.
pub async fn migrate(settings: &PaymentsSettings) -> anyhow::Result<()> {
    emporium_db::open_service_db(settings.database.url.expose(), 1, &ALL_MIGRATIONS)
        .await
        .map(|_| ())
}
