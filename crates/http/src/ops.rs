//! The operations endpoints every listener serves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::problem::Problem;
use crate::server::{HttpServer, HttpSettings};
use crate::shutdown::Shutdown;
use crate::{ServiceName, standard_layers};

/// A readiness probe: `Ok` when every dependency answers, `Err(what failed)` otherwise.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Ready when `db` answers a query.
pub fn db_ready(db: emporium_db::Db) -> ReadyCheck {
    Arc::new(move || {
        let db = db.clone();
        Box::pin(async move {
            db.sql()
                .execute("SELECT 1", ())
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
}

/// A service's listener and all it serves: its own routes and the
/// operations routes ([`routes`]), in the [`standard_layers`].
pub struct Listener {
    server: HttpServer,
    router: Router,
}

impl Listener {
    /// Binds `settings`' address for `api`, answering `/readyz` with `ready`
    /// and `/openapi.json` with `openapi_json`.
    pub fn bind(
        api: Router,
        (ready, openapi_json): (ReadyCheck, String),
        service: ServiceName,
        settings: &HttpSettings,
    ) -> anyhow::Result<Self> {
        let router = standard_layers(api.merge(routes(ready, openapi_json)), service, settings);
        Ok(Self {
            server: HttpServer::bind(settings)?,
            router,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Serves until `shutdown`, then lets in-flight requests finish.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.server.run_until_stopped(self.router, shutdown).await
    }
}

/// `/healthz` (alive), `/readyz` (dependencies reachable), `/metrics`, `/openapi.json`:
/// what a service serves on its own (internal) port.
pub fn routes(ready: ReadyCheck, openapi_json: String) -> Router {
    public_routes(ready, openapi_json).merge(metrics_routes())
}

/// `/metrics` alone: business counters are for operators, so a public
/// listener (the gateway's) serves it only on its separate operations port.
pub fn metrics_routes() -> Router {
    Router::new().route("/metrics", get(metrics))
}

/// `/healthz`, `/readyz` and `/openapi.json`, without `/metrics`.
pub fn public_routes(ready: ReadyCheck, openapi_json: String) -> Router {
    let openapi: Arc<str> = openapi_json.into();
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready().await {
                        Ok(()) => {
                            axum::Json(serde_json::json!({"status": "ready"})).into_response()
                        }
                        Err(what) => {
                            tracing::warn!(%what, "Not ready.");
                            Problem::from_status(StatusCode::SERVICE_UNAVAILABLE)
                                .with_detail("A dependency is unreachable.")
                                .into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { json_text(openapi.to_string()) }
            }),
        )
}

/// A readiness check for a service with no dependencies of its own.
pub fn always_ready() -> ReadyCheck {
    Arc::new(|| Box::pin(async { Ok(()) }))
}

async fn metrics() -> Response {
    let text = emporium_telemetry::metrics_handle().render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

fn json_text(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}
