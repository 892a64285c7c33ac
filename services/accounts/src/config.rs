//! Typed settings of the accounts service; every key and default is in `defaults.toml`.

use std::path::Path;
use std::time::Duration;

use emporium_config::{Loader, Secret};
use emporium_db::DatabaseSettings;
use emporium_http::HttpSettings;
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../defaults.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct AccountsSettings {
    pub admin_email: String,
    pub admin_password: Secret,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub tokens: TokenConfig,
    pub login: LoginConfig,
    pub events: emporium_messaging::settings::EventsSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenConfig {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub service_ttl_secs: u64,
    pub key_reload_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LoginConfig {
    pub max_failures: i64,
    pub window_secs: u64,
    pub trust_forwarded_for: bool,
}

impl TokenConfig {
    pub fn to_settings(&self) -> crate::tokens::TokenSettings {
        crate::tokens::TokenSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: Duration::from_secs(self.access_ttl_secs),
            refresh_ttl: Duration::from_secs(self.refresh_ttl_secs),
            service_ttl: Duration::from_secs(self.service_ttl_secs),
        }
    }
}

impl AccountsSettings {
    /// Defaults, then the file, then `EMPORIUM_…` variables.
    pub fn loader(file: Option<&Path>) -> Result<Loader, emporium_config::ConfigError> {
        Loader::new(DEFAULTS)?.file(file)?.env()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_deserialise() {
        let s: AccountsSettings = Loader::new(DEFAULTS).unwrap().build().unwrap();
        assert_eq!(s.tokens.access_ttl_secs, 900);
        assert_eq!(s.login.max_failures, 5);
    }
}
