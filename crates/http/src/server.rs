//! Binding and serving one listener: HTTPS by default, plain HTTP only when
//! `insecure_http` is set explicitly.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use serde::Deserialize;

use crate::limits::{ConnectionLimits, LimitedAcceptor};
use crate::shutdown::Shutdown;
use crate::tls;

/// The `[http]` section every service's settings carry.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one (tests, `emporium up`).
    pub port: u16,
    /// Serve plain HTTP. For local debugging only; never in production.
    pub insecure_http: bool,
    /// PEM certificate chain and private key for HTTPS.
    pub tls_cert: String,
    pub tls_key: String,
    /// Largest request body accepted; larger answers 413.
    pub body_limit_bytes: usize,
    /// Requests running longer are answered 503.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// A request's head (HTTP/1.1 request line and headers, which is also the
    /// wait for the next request on a kept-alive connection) and a TLS
    /// handshake must arrive within this time.
    pub header_read_timeout_ms: u64,
    /// A connection on which nothing moves for this long is closed.
    pub idle_timeout_ms: u64,
    /// Open connections allowed in total, and from one client address; more are refused at once.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Concurrent HTTP/2 streams on one connection.
    pub http2_max_concurrent_streams: u32,
    /// Largest request head (HTTP/1.1 headers, HTTP/2 header list); larger answers 431.
    pub max_header_bytes: usize,
    /// Bytes of request bodies held at once by all requests being read on the
    /// listener; a body that does not fit answers 503.
    pub max_buffered_body_bytes: usize,
    /// The most of that one client address may hold (behind the gateway, the
    /// gateway is one client of each service).
    pub max_buffered_body_bytes_per_client: usize,
}

impl HttpSettings {
    /// Loopback on a free port, HTTPS with the given certificate (tests and `up`).
    pub fn loopback(cert: &Path, key: &Path) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            insecure_http: false,
            tls_cert: cert.display().to_string(),
            tls_key: key.display().to_string(),
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            max_connections_per_client: 128,
            http2_max_concurrent_streams: 64,
            max_header_bytes: 16 * 1024,
            max_buffered_body_bytes: 64 << 20,
            max_buffered_body_bytes_per_client: 8 << 20,
        }
    }

    fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_total: self.max_connections,
            max_per_client: self.max_connections_per_client,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            counts: Default::default(),
        }
    }
}

/// A bound listener, ready to serve. Binding is separate from serving so the
/// caller learns the port (port 0) before anything runs.
pub struct HttpServer {
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    addr: SocketAddr,
    grace: Duration,
    settings: HttpSettings,
}

impl HttpServer {
    pub fn bind(settings: &HttpSettings) -> anyhow::Result<Self> {
        let tls = if settings.insecure_http {
            tracing::warn!("Serving plain HTTP: for local debugging only.");
            None
        } else {
            anyhow::ensure!(
                !settings.tls_cert.is_empty() && !settings.tls_key.is_empty(),
                "HTTPS needs http.tls_cert and http.tls_key (EMPORIUM_HTTP_TLS_CERT, \
                 EMPORIUM_HTTP_TLS_KEY); plain HTTP needs --insecure-http"
            );
            let config =
                tls::server_config(Path::new(&settings.tls_cert), Path::new(&settings.tls_key))?;
            Some(RustlsConfig::from_config(config))
        };
        let listener = std::net::TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            tls,
            addr,
            grace: Duration::from_millis(settings.shutdown_grace_ms),
            settings: settings.clone(),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>` (or `http://` when insecure).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            self.addr.ip().to_string()
        };
        format!("{scheme}://{host}:{}", self.addr.port())
    }

    /// Serves until `shutdown` fires, then stops accepting and drains in-flight
    /// requests for up to the grace period.
    pub async fn run_until_stopped(self, router: Router, shutdown: Shutdown) -> anyhow::Result<()> {
        let handle = Handle::new();
        let stopper = handle.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            shutdown.wait().await;
            stopper.graceful_shutdown(Some(grace));
        });
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let s = &self.settings;
        let head_timeout = Duration::from_millis(s.header_read_timeout_ms);
        let mut server = axum_server::from_tcp(self.listener)?
            .handle(handle)
            // Covers the wait before the protocol is known (hyper's own
            // timers start only once it is).
            .first_request_timeout(head_timeout)
            .accept_error_handler(|_, e| tracing::debug!(error = %e, "Connection refused."));
        let builder = server.http_builder();
        builder
            .http1()
            .header_read_timeout(head_timeout)
            .max_buf_size(s.max_header_bytes.max(8192))
            .max_headers(100);
        // No server pings: they would count as traffic and keep an idle
        // HTTP/2 connection open past the idle timeout.
        builder
            .http2()
            .max_concurrent_streams(s.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX));
        let acceptor = LimitedAcceptor { limits: s.limits() };
        match self.tls {
            Some(tls) => {
                server
                    .acceptor(
                        RustlsAcceptor::new(tls)
                            .handshake_timeout(head_timeout)
                            .acceptor(acceptor),
                    )
                    .serve(app)
                    .await?
            }
            None => server.acceptor(acceptor).serve(app).await?,
        }
        Ok(())
    }
}
