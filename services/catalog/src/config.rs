//! Typed settings of the catalog service; every key and default is in `defaults.toml`.

use std::path::Path;

use emporium_config::Loader;
use emporium_db::DatabaseSettings;
use emporium_http::HttpSettings;
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../defaults.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogSettings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: AuthConfig,
    pub reservations: ReservationConfig,
    pub events: emporium_messaging::settings::EventsSettings,
}

/// How tokens are checked.
pub type AuthConfig = emporium_auth::AuthSettings;

#[derive(Debug, Clone, Deserialize)]
pub struct ReservationConfig {
    pub ttl_secs: u64,
    /// How long a kept reservation (a confirmed order's) holds its stock.
    pub kept_ttl_secs: u64,
    pub sweep_every_ms: u64,
}

impl CatalogSettings {
    /// Defaults, then the file, then `EMPORIUM_…` variables.
    pub fn loader(file: Option<&Path>) -> Result<Loader, emporium_config::ConfigError> {
        Loader::new(DEFAULTS)?.file(file)?.env()
    }
}
