//! Typed settings of the gateway; every key and default is in `defaults.toml`.

use std::path::Path;

use emporium_config::Loader;
use emporium_http::HttpSettings;
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../defaults.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    pub http: HttpSettings,
    pub upstreams: UpstreamSettings,
    pub ops: OpsSettings,
}

/// The operations listener: `/metrics`, `/healthz`, `/readyz` for Prometheus
/// and probes, on its own port so the public origin never shows them. It uses
/// the public listener's TLS settings.
#[derive(Debug, Clone, Deserialize)]
pub struct OpsSettings {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSettings {
    pub accounts: String,
    pub catalog: String,
    pub payments: String,
    pub orders: String,
    pub ca_cert: String,
    pub timeout_ms: u64,
    /// Largest upstream answer relayed to a client; larger ones answer 502.
    pub max_response_bytes: usize,
}

impl GatewaySettings {
    /// Defaults, then the file, then `EMPORIUM_…` variables.
    pub fn loader(file: Option<&Path>) -> Result<Loader, emporium_config::ConfigError> {
        Loader::new(DEFAULTS)?.file(file)?.env()
    }
}
