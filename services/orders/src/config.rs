//! Typed settings of the orders service; every key and default is in `defaults.toml`.

use std::path::Path;

use emporium_client::ClientSettings;
use emporium_config::{Loader, Secret};
use emporium_db::DatabaseSettings;
use emporium_http::HttpSettings;
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../defaults.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct OrdersSettings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: emporium_auth::AuthSettings,
    pub client: ClientConfig,
    pub catalog: Upstream,
    pub payments: Upstream,
    pub checkout: CheckoutConfig,
    pub events: emporium_messaging::settings::EventsSettings,
}

/// Who orders is when it calls the other services.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientConfig {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub ca_cert: String,
}

/// A service orders calls, and how.
#[derive(Debug, Clone, Deserialize)]
pub struct Upstream {
    pub url: String,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Upstream {
    pub fn client_settings(&self) -> ClientSettings {
        ClientSettings {
            timeout_ms: self.timeout_ms,
            max_attempts: self.max_attempts,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
        }
    }
}

/// How sagas are driven and bounded.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckoutConfig {
    pub pending_timeout_ms: i64,
    pub answer_within_ms: u64,
    pub lease_ms: i64,
    pub retry_after_ms: i64,
    pub retry_max_ms: i64,
    pub scan_every_ms: u64,
}

impl OrdersSettings {
    /// Defaults, then the file, then `EMPORIUM_…` variables.
    pub fn loader(file: Option<&Path>) -> Result<Loader, emporium_config::ConfigError> {
        Loader::new(DEFAULTS)?.file(file)?.env()
    }

    /// Refuses settings it cannot run with, naming the key (never a value).
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.client.client_secret.expose().is_empty(),
            "client.client_secret must be set (the orders service client's secret)"
        );
        for (key, url) in [
            ("client.token_url", &self.client.token_url),
            ("catalog.url", &self.catalog.url),
            ("payments.url", &self.payments.url),
        ] {
            reqwest::Url::parse(url)
                .map_err(|_| anyhow::anyhow!("{key} must be an absolute URL"))?;
        }
        for (key, upstream) in [("catalog", &self.catalog), ("payments", &self.payments)] {
            anyhow::ensure!(
                upstream.max_attempts >= 1 && upstream.timeout_ms >= 1,
                "{key}.max_attempts and {key}.timeout_ms must be at least 1"
            );
        }
        let c = &self.checkout;
        anyhow::ensure!(
            c.pending_timeout_ms >= 1_000,
            "checkout.pending_timeout_ms must be at least 1000"
        );
        anyhow::ensure!(c.lease_ms >= 100, "checkout.lease_ms must be at least 100");
        anyhow::ensure!(
            c.retry_after_ms >= 1 && c.retry_max_ms >= c.retry_after_ms,
            "checkout.retry_after_ms must be at least 1 and at most checkout.retry_max_ms"
        );
        anyhow::ensure!(
            c.scan_every_ms >= 10,
            "checkout.scan_every_ms must be at least 10"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(changes: &[(&str, &str)]) -> anyhow::Result<()> {
        let loader = Loader::new(DEFAULTS).unwrap().set_all(changes).unwrap();
        loader.build::<OrdersSettings>().unwrap().check()
    }

    #[test]
    fn it_needs_its_client_secret_and_sane_bounds() {
        let secret = ("client.client_secret", "s3cret-value");
        assert!(with(&[secret]).is_ok());
        let none = with(&[]).unwrap_err().to_string();
        assert!(none.contains("client.client_secret"), "{none}");
        assert!(with(&[secret, ("catalog.url", "nope")]).is_err());
        assert!(with(&[secret, ("checkout.pending_timeout_ms", "10")]).is_err());
        assert!(with(&[secret, ("payments.max_attempts", "0")]).is_err());
    }
}
