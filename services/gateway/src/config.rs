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
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSettings {
    pub accounts: String,
    pub catalog: String,
    pub ca_cert: String,
    pub timeout_ms: u64,
}

impl GatewaySettings {
    /// Defaults, then the file, then `EMPORIUM_…` variables.
    pub fn loader(file: Option<&Path>) -> Result<Loader, emporium_config::ConfigError> {
        Loader::new(DEFAULTS)?.file(file)?.env()
    }
}
