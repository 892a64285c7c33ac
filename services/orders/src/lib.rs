//! The orders service: each customer's cart, orders as an event-sourced
//! aggregate, and the checkout saga (with cancel, ship and refund) that
//! orchestrates catalog and payments.
//!
//! ## Layout
//! - [`domain`]: the order aggregate (its events, the fold, the state machine
//!   and the saga's next step), totals in minor units, shipping addresses.
//! - [`store`]: one append-only stream per order with optimistic concurrency
//!   (a stale writer gets a conflict, never a lost event), the read model
//!   written in the same transaction as each append, saga claims, carts and
//!   the copy of each customer.
//! - [`view`]: the read model of an order (the document lookups answer with),
//!   from the fold, and the rebuild's projection of a stored stream.
//! - [`saga`]: the orchestrator: one step at a time, each call idempotent,
//!   compensations in reverse, resumed by any replica after a crash.
//! - [`consumers`]: accounts' and payments' events orders reacts to.
//! - [`api`]: the public routes.
//! - [`Application`]: binds, wires and serves it all, with the outbox relay
//!   and the recovery loop for sagas nobody drives.

pub mod api;
pub mod config;
pub mod consumers;
pub mod domain;
pub mod saga;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use emporium_auth::JwksSource;
use emporium_client::catalog::{Products, Reservations};
use emporium_client::payments::Payments;
use emporium_client::{ClientCredentials, ServiceClient, TokenSource};
use emporium_db::SharedClock;
use emporium_http::{ServiceName, Shutdown, ShutdownTrigger, ops};
use emporium_messaging::Bus;
use emporium_messaging::outbox::{Outbox, Relay, RelayWaker};
use emporium_messaging::revocations::RevocationFeed;

use crate::api::{Api, AppState};
pub use crate::config::OrdersSettings;
use crate::saga::{Faults, Saga};
use crate::store::{Carts, EventStore, Lease, MIGRATIONS};

pub const SERVICE: &str = "orders";

/// Everything orders' database holds: its tables, the outbox and inbox.
pub const ALL_MIGRATIONS: [emporium_db::Migrations; 2] =
    [MIGRATIONS, emporium_messaging::migrations::OUTBOX];

impl store::StreamEvent for domain::OrderEvent {
    fn type_name(&self) -> &'static str {
        domain::OrderEvent::type_name(self)
    }
}

pub struct Application {
    listener: ops::Listener,
    state: AppState,
    relay: Relay,
    scan_every: Duration,
    consumers_stop: ShutdownTrigger,
    consumers: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Opens the store and the bus from the settings, verifies tokens against
    /// the accounts JWKS and calls catalog and payments as the settings say.
    pub async fn build(settings: OrdersSettings) -> anyhow::Result<Self> {
        let bus = settings.events.open_bus().await?;
        Self::build_with_bus(settings, bus).await
    }

    /// As [`Application::build`], publishing to a bus the caller shares.
    pub async fn build_with_bus(
        settings: OrdersSettings,
        bus: Arc<dyn Bus>,
    ) -> anyhow::Result<Self> {
        let jwks = settings.auth.jwks()?;
        Self::build_at(settings, bus, jwks, emporium_db::system_clock()).await
    }

    /// As [`Application::build`], with the bus, the key source and the clock
    /// given (tests hold their own keys and move time).
    pub async fn build_at(
        settings: OrdersSettings,
        bus: Arc<dyn Bus>,
        jwks: Arc<dyn JwksSource>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        settings.check()?;
        let http = upstream_http(&settings)?;
        let c = &settings.client;
        let token: Arc<dyn TokenSource> = Arc::new(ClientCredentials::new(
            http.clone(),
            reqwest::Url::parse(&c.token_url)?,
            c.client_id.clone(),
            c.client_secret.clone(),
            None,
        ));
        Self::build_with_token(settings, bus, jwks, clock, (http, token)).await
    }

    /// As [`Application::build_at`], calling catalog and payments with
    /// `http` and the service token `token` gives (tests sign their own).
    pub async fn build_with_token(
        settings: OrdersSettings,
        bus: Arc<dyn Bus>,
        jwks: Arc<dyn JwksSource>,
        clock: SharedClock,
        (http, token): (reqwest::Client, Arc<dyn TokenSource>),
    ) -> anyhow::Result<Self> {
        settings.check()?;
        let db = emporium_db::open_service_db(
            settings.database.url.expose(),
            settings.database.max_connections,
            &ALL_MIGRATIONS,
        )
        .await?;
        let verifier = settings.auth.verifier(jwks);
        let client = |upstream: &config::Upstream| -> anyhow::Result<ServiceClient> {
            Ok(ServiceClient::new(
                http.clone(),
                reqwest::Url::parse(&upstream.url)?,
                token.clone(),
                upstream.client_settings(),
            ))
        };
        let (catalog, payments) = (client(&settings.catalog)?, client(&settings.payments)?);
        let waker = RelayWaker::default();
        let checkout = settings.checkout.clone();
        let store = EventStore::new(db.clone()).with_lease(Lease {
            owner: uuid::Uuid::new_v4().to_string(),
            ms: checkout.lease_ms,
        });
        let saga = Saga {
            store,
            reservations: Reservations::new(catalog.clone()),
            payments: Payments::new(payments),
            clock: clock.clone(),
            relay: waker.clone(),
            settings: checkout.clone(),
            faults: Arc::new(Faults::default()),
        };
        let carts = Carts::new(db.clone());
        let (consumers_stop, stop) = Shutdown::new();
        let mut consumers = Vec::new();
        for subscription in [
            RevocationFeed::subscription(SERVICE, verifier.clone()),
            consumers::Customers {
                carts: carts.clone(),
                clock: clock.clone(),
            }
            .subscription(),
            consumers::LateFailures { saga: saga.clone() }.subscription(),
        ] {
            consumers.push(
                bus.subscribe(subscription, Box::pin(stop.clone().wait()))
                    .await?,
            );
        }
        let state = AppState(Arc::new(Api {
            saga,
            carts,
            products: Products::new(catalog),
            verifier,
            answer_within: Duration::from_millis(checkout.answer_within_ms),
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
            scan_every: Duration::from_millis(checkout.scan_every_ms),
            consumers_stop,
            consumers,
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

    /// Serves HTTP, relays the outbox and drives sagas nobody drives (on
    /// start, then every `checkout.scan_every_ms`) until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(url = %self.base_url(), "Orders listening.");
        let relay = tokio::spawn(self.relay.run(shutdown.clone().wait()));
        let recovery = tokio::spawn(recover(
            self.state.0.saga.clone(),
            self.scan_every,
            shutdown.clone().wait(),
        ));
        let served = self.listener.run_until_stopped(shutdown).await;
        self.consumers_stop.fire();
        for consumer in self.consumers {
            let _ = consumer.await;
        }
        let _ = relay.await;
        let _ = recovery.await;
        served
    }
}

/// The pooled HTTPS client orders calls the other services with.
pub fn upstream_http(settings: &OrdersSettings) -> anyhow::Result<reqwest::Client> {
    let c = &settings.client;
    let ca = (!c.ca_cert.is_empty()).then(|| std::path::PathBuf::from(&c.ca_cert));
    let longest = settings
        .catalog
        .timeout_ms
        .max(settings.payments.timeout_ms);
    emporium_http::tls::client(ca.as_deref(), Duration::from_millis(longest))
}

/// The recovery loop: sagas left unfinished (a crash, a service that was
/// down, a request that stopped waiting) are driven on.
async fn recover(saga: Saga, every: Duration, stop: impl std::future::Future<Output = ()> + Send) {
    tokio::pin!(stop);
    loop {
        match saga.recover(100).await {
            Ok(n) if n > 0 => tracing::debug!(sagas = n, "Drove unfinished sagas."),
            Ok(_) => {}
            Err(saga::SagaError::Stopped) => return,
            Err(e) => tracing::warn!(error = %e, "Recovering sagas failed; trying again later."),
        }
        if let Ok((pending, oldest)) = saga.store.backlog().await {
            metrics::gauge!("orders_sagas_unfinished").set(pending as f64);
            let age = oldest.map_or(0, |at| saga.clock.now_ms() - at);
            metrics::gauge!("orders_saga_oldest_age_seconds").set(age as f64 / 1000.0);
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Applies the migrations.
pub async fn migrate(settings: &OrdersSettings) -> anyhow::Result<()> {
    emporium_db::open_service_db(settings.database.url.expose(), 1, &ALL_MIGRATIONS)
        .await
        .map(|_| ())
}
