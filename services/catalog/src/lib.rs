//! The catalog service: categories (a tree with attribute definitions),
//! products as documents, warehouses, stock levels per warehouse, stock
//! reservations that never oversell, and the append-only stock-movement journal.
//!
//! ## Layout
//! - [`config`]: typed settings; every key with its default in `defaults.toml`.
//! - [`domain`]: money, attribute definitions and checks, reservation allocation. Pure, unit-tested.
//! - [`store`]: the [`store::CatalogStore`] trait with PostgreSQL and SQLite implementations.
//! - [`api`]: public routes (`/api/v1/…`), internal routes for services
//!   (`/internal/v1/reservations`, `/internal/v1/products/lookup`).
//! - [`events`]: the product events, written to the outbox with each change.
//! - [`sweeper`]: releases reservations whose time ran out.
//! - [`seed`]: demo data for `emporium up` and `emporium seed`.
//! - [`Application`]: binds, wires and serves it all.

pub mod api;
pub mod config;
pub mod domain;
pub mod events;
pub mod seed;
pub mod store;
pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use emporium_auth::JwksSource;
use emporium_db::SharedClock;
use emporium_http::{ServiceName, Shutdown, ShutdownTrigger, ops};
use emporium_messaging::Bus;
use emporium_messaging::outbox::{Relay, RelayWaker};
use emporium_messaging::revocations::RevocationFeed;

use crate::api::{AppState, Catalog};
pub use crate::config::CatalogSettings;
use crate::store::CatalogStore;

pub const SERVICE: &str = "catalog";

pub struct Application {
    listener: ops::Listener,
    store: Arc<dyn CatalogStore>,
    relay: Relay,
    sweep_every: Duration,
    clock: SharedClock,
    /// Stops the deny-list subscription when the service stops.
    revocations_stop: ShutdownTrigger,
    revocations_task: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Opens the store and the bus from the settings, and verifies tokens
    /// against the accounts JWKS.
    pub async fn build(settings: CatalogSettings) -> anyhow::Result<Self> {
        let bus = settings.events.open_bus().await?;
        Self::build_with_bus(settings, bus).await
    }

    /// As [`Application::build`], publishing to a bus the caller shares.
    pub async fn build_with_bus(
        settings: CatalogSettings,
        bus: Arc<dyn Bus>,
    ) -> anyhow::Result<Self> {
        let jwks = settings.auth.jwks()?;
        Self::build_with(settings, bus, jwks).await
    }

    /// As [`Application::build`], with the bus and the key source given
    /// (tests hold their own keys).
    pub async fn build_with(
        settings: CatalogSettings,
        bus: Arc<dyn Bus>,
        jwks: Arc<dyn JwksSource>,
    ) -> anyhow::Result<Self> {
        Self::build_at(settings, bus, jwks, emporium_db::system_clock()).await
    }

    /// As [`Application::build_with`], on `clock` (tests move time instead of waiting).
    pub async fn build_at(
        settings: CatalogSettings,
        bus: Arc<dyn Bus>,
        jwks: Arc<dyn JwksSource>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let store = store::connect_at(
            settings.database.url.expose(),
            settings.database.max_connections,
            clock.clone(),
        )
        .await?;
        let verifier = settings.auth.verifier(jwks);
        // Tokens of users and sessions revoked since they were issued are
        // refused as soon as accounts' event arrives.
        let (revocations_stop, stop) = Shutdown::new();
        let revocations_task = bus
            .subscribe(
                RevocationFeed::subscription(SERVICE, verifier.clone()),
                Box::pin(stop.wait()),
            )
            .await?;
        let waker = RelayWaker::default();
        let state = AppState(Arc::new(Catalog {
            store: store.clone(),
            verifier,
            relay: waker.clone(),
            reservation_ttl: Duration::from_secs(settings.reservations.ttl_secs),
            kept_reservation_ttl: Duration::from_secs(settings.reservations.kept_ttl_secs),
            clock: clock.clone(),
        }));
        let relay = Relay {
            outbox: store.outbox(),
            bus,
            settings: settings.events.relay_settings(),
            waker,
            service: SERVICE,
        };
        let ready_store = store.clone();
        let ready: ops::ReadyCheck = Arc::new(move || {
            let store = ready_store.clone();
            Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
        });
        let listener = ops::Listener::bind(
            api::router(state),
            (ready, api::openapi::json()),
            ServiceName(SERVICE),
            &settings.http,
        )?;
        Ok(Self {
            listener,
            store,
            relay,
            sweep_every: Duration::from_millis(settings.reservations.sweep_every_ms.max(10)),
            clock,
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

    pub fn store(&self) -> Arc<dyn CatalogStore> {
        self.store.clone()
    }

    /// Serves HTTP, relays the outbox and sweeps expired reservations until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(url = %self.base_url(), "Catalog listening.");
        let relay = tokio::spawn(self.relay.run(shutdown.clone().wait()));
        let sweeper = tokio::spawn(sweeper::run(
            self.store.clone(),
            self.clock.clone(),
            self.sweep_every,
            shutdown.clone().wait(),
        ));
        let served = self.listener.run_until_stopped(shutdown).await;
        self.revocations_stop.fire();
        let _ = self.revocations_task.await;
        let _ = relay.await;
        let _ = sweeper.await;
        served
    }
}

/// Applies the migrations.
pub async fn migrate(settings: &CatalogSettings) -> anyhow::Result<()> {
    store::connect(settings.database.url.expose(), 1)
        .await
        .map(|_| ())
}
