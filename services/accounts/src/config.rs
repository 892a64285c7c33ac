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
    pub events: EventsConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventsConfig {
    pub bus: String,
    pub amqp_url: Secret,
    pub exchange: String,
    pub embedded_path: String,
    pub relay_batch: i64,
    pub relay_poll_ms: u64,
}

impl EventsConfig {
    /// Opens the configured bus.
    pub async fn open_bus(&self) -> anyhow::Result<std::sync::Arc<dyn emporium_messaging::Bus>> {
        use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
        Ok(match self.bus.as_str() {
            "rabbitmq" => {
                let mut settings = RabbitSettings::new(self.amqp_url.expose());
                settings.exchange = self.exchange.clone();
                std::sync::Arc::new(RabbitBus::new(settings))
            }
            "embedded" => std::sync::Arc::new(
                emporium_messaging::embedded::EmbeddedBus::open(std::path::Path::new(
                    &self.embedded_path,
                ))
                .await?,
            ),
            other => anyhow::bail!("events.bus must be rabbitmq or embedded, not {other:?}"),
        })
    }

    pub fn relay_settings(&self) -> emporium_messaging::outbox::RelaySettings {
        emporium_messaging::outbox::RelaySettings {
            batch: self.relay_batch.max(1),
            poll: Duration::from_millis(self.relay_poll_ms.max(1)),
            ..Default::default()
        }
    }
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
