//! Typed settings of the payments service; every key and default is in `defaults.toml`.

use std::path::Path;

use emporium_config::{Loader, Secret};
use emporium_db::DatabaseSettings;
use emporium_http::HttpSettings;
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../defaults.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentsSettings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: AuthConfig,
    pub provider: ProviderConfig,
    pub tokens: TokensConfig,
    pub webhooks: WebhookConfig,
    pub recovery: RecoveryConfig,
    pub events: emporium_messaging::settings::EventsSettings,
}

/// How tokens are checked.
pub type AuthConfig = emporium_auth::AuthSettings;

/// The card provider and how it is called.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderConfig {
    pub url: String,
    pub api_key: Secret,
    pub ca_cert: String,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

/// How often one client may tokenize a card.
#[derive(Debug, Clone, Deserialize)]
pub struct TokensConfig {
    pub per_minute: u32,
    pub burst: u32,
    /// Address ranges of the proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: String,
}

/// The provider's signed notifications.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookConfig {
    pub secret: Secret,
    pub tolerance_secs: i64,
}

/// Calls to the provider whose answer was lost, made again in the background.
#[derive(Debug, Clone, Deserialize)]
pub struct RecoveryConfig {
    pub retry_after_ms: u64,
    pub retry_max_ms: u64,
    pub scan_every_ms: u64,
}

impl PaymentsSettings {
    /// Defaults, then the file, then `EMPORIUM_…` variables.
    pub fn loader(file: Option<&Path>) -> Result<Loader, emporium_config::ConfigError> {
        Loader::new(DEFAULTS)?.file(file)?.env()
    }

    /// Refuses settings it cannot run with, naming the key (never a value).
    pub fn check(&self) -> anyhow::Result<()> {
        let visible =
            |s: &str, min: usize| s.len() >= min && s.bytes().all(|b| b.is_ascii_graphic());
        anyhow::ensure!(
            visible(self.provider.api_key.expose(), 16),
            "provider.api_key must be set: 16 or more visible ASCII characters, no spaces"
        );
        anyhow::ensure!(
            visible(self.webhooks.secret.expose(), 32),
            "webhooks.secret must be set: 32 or more visible ASCII characters, no spaces"
        );
        anyhow::ensure!(
            (1..=86_400).contains(&self.webhooks.tolerance_secs),
            "webhooks.tolerance_secs must be 1 to 86400"
        );
        anyhow::ensure!(
            self.tokens.per_minute >= 1 && self.tokens.burst >= 1,
            "tokens.per_minute and tokens.burst must be at least 1"
        );
        anyhow::ensure!(
            self.provider.max_attempts >= 1,
            "provider.max_attempts must be at least 1"
        );
        reqwest::Url::parse(&self.provider.url)
            .map_err(|_| anyhow::anyhow!("provider.url must be an absolute URL"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(changes: &[(&str, &str)]) -> anyhow::Result<()> {
        let loader = Loader::new(DEFAULTS).unwrap().set_all(changes).unwrap();
        loader.build::<PaymentsSettings>().unwrap().check()
    }

    #[test]
    fn it_refuses_to_run_without_its_secrets_and_never_prints_them() {
        let key = ("provider.api_key", "0123456789abcdef");
        let secret = ("webhooks.secret", "whsec_0123456789abcdef0123456789abcdef");
        assert!(with(&[key, secret]).is_ok());
        let no_key = with(&[secret]).unwrap_err().to_string();
        assert!(no_key.contains("provider.api_key"), "{no_key}");
        let short = with(&[key, ("webhooks.secret", "whsec_short_secret_123")]).unwrap_err();
        let text = short.to_string();
        assert!(
            text.contains("webhooks.secret") && !text.contains("whsec_short"),
            "{text}"
        );
        let spaced = ("webhooks.secret", "whsec 0123456789abcdef0123456789abcdef");
        assert!(with(&[key, spaced]).is_err());
        let stale = ("webhooks.tolerance_secs", "0");
        assert!(with(&[key, secret, stale]).is_err());
        let url = ("provider.url", "not a url");
        assert!(with(&[key, secret, url]).is_err());
    }
}
