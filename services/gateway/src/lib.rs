//! The gateway: the shop's single public HTTPS origin.
//!
//! It forwards each public path to the service that owns it over pooled HTTPS
//! connections, with the caller's address (`X-Forwarded-For`), the request id
//! and the W3C trace context, under a body-size limit and timeouts. Services
//! check tokens themselves; the gateway never reads a body it forwards.
//!
//! ## Layout
//! - [`config`]: typed settings; every key with its default in `defaults.toml`.
//! - [`proxy`]: the forwarding handler and the route table.
//! - [`Application`]: binds and serves.

pub mod config;
pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use emporium_http::{HttpServer, ServiceName, Shutdown, ops, standard_layers};

pub use crate::config::GatewaySettings;
use crate::proxy::Upstreams;

pub const SERVICE: &str = "gateway";

pub struct Application {
    server: HttpServer,
    router: Router,
    ops_server: HttpServer,
    ops_router: Router,
}

impl Application {
    pub async fn build(settings: GatewaySettings) -> anyhow::Result<Self> {
        let ca = (!settings.upstreams.ca_cert.is_empty())
            .then(|| std::path::PathBuf::from(&settings.upstreams.ca_cert));
        let client = emporium_http::tls::client(
            ca.as_deref(),
            Duration::from_millis(settings.upstreams.timeout_ms),
        )?;
        let upstreams = Arc::new(Upstreams {
            client,
            accounts: settings.upstreams.accounts.trim_end_matches('/').to_owned(),
            catalog: settings.upstreams.catalog.trim_end_matches('/').to_owned(),
            payments: settings.upstreams.payments.trim_end_matches('/').to_owned(),
            orders: settings.upstreams.orders.trim_end_matches('/').to_owned(),
            body_limit: settings.http.body_limit_bytes,
            response_limit: settings.upstreams.max_response_bytes,
        });
        let ready_upstreams = upstreams.clone();
        let ready: ops::ReadyCheck = Arc::new(move || {
            let upstreams = ready_upstreams.clone();
            Box::pin(async move { upstreams.check().await })
        });
        // The public edge starts every trace: a client's `traceparent` would
        // let it keep its requests out of tracing (flags 00) or put them in a
        // trace of its choosing. `x-request-id` still ties its requests to
        // the shop's logs.
        let router = standard_layers(
            proxy::router(upstreams)
                .merge(ops::public_routes(ready.clone(), proxy::openapi_json())),
            ServiceName(SERVICE),
            &settings.http,
        )
        .layer(axum::middleware::map_request(
            |mut request: axum::extract::Request| async move {
                request
                    .headers_mut()
                    .remove(emporium_http::middleware::TRACEPARENT);
                request
            },
        ));
        let mut ops_http = settings.http.clone();
        ops_http.host = settings.ops.host.clone();
        ops_http.port = settings.ops.port;
        let ops_router = standard_layers(
            ops::routes(ready, proxy::openapi_json()),
            ServiceName(SERVICE),
            &ops_http,
        );
        Ok(Self {
            server: HttpServer::bind(&settings.http)?,
            router,
            ops_server: HttpServer::bind(&ops_http)?,
            ops_router,
        })
    }

    /// The operations listener's base URL (`/metrics`, `/healthz`, `/readyz`).
    pub fn ops_url(&self) -> String {
        self.ops_server.base_url()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(url = %self.base_url(), ops = %self.ops_url(), "Gateway listening.");
        let ops = tokio::spawn(
            self.ops_server
                .run_until_stopped(self.ops_router, shutdown.clone()),
        );
        let served = self.server.run_until_stopped(self.router, shutdown).await;
        ops.await??;
        served
    }
}
