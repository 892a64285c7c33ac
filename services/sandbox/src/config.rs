//! Typed settings of the sandbox provider; every key and default is in `defaults.toml`.

use std::path::Path;

use emporium_config::{Loader, Secret};
use emporium_db::DatabaseSettings;
use emporium_http::HttpSettings;
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../defaults.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct SandboxSettings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub sandbox: ProviderSettings,
}

/// How the sandbox behaves beyond the test cards.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    /// What callers present as `Authorization: Bearer …`.
    pub api_key: Secret,
    /// Latency and transient failures (`latency_ms`, `failure_rate`, …).
    #[serde(flatten)]
    pub faults: crate::faults::Faults,
    /// Where notifications are posted (`http://` or `https://`); empty: the
    /// sandbox sends none, and queues none.
    pub webhook_url: String,
    /// The key notifications are signed with (HMAC-SHA256, the scheme of
    /// `emporium_auth::webhook`); required with a `webhook_url`.
    pub webhook_secret: Secret,
    /// The PEM file of the CA the webhook endpoint's certificate must chain
    /// to; empty: the system's roots.
    pub ca_cert: String,
    /// How long after a capture its notification is due (a network settles
    /// a while after the capture).
    pub notify_after_ms: u64,
    /// The wait before the first redelivery of a notification the endpoint
    /// did not take; it doubles with each further attempt (at most an hour).
    pub retry_base_ms: u64,
    /// Attempts at one notification before the sandbox gives up on it.
    pub max_attempts: u32,
}

impl SandboxSettings {
    /// Defaults, then the file, then `EMPORIUM_…` variables.
    pub fn loader(file: Option<&Path>) -> Result<Loader, emporium_config::ConfigError> {
        Loader::new(DEFAULTS)?.file(file)?.env()
    }

    /// Refuses settings it cannot run with, naming the key (never a value).
    pub fn check(&self) -> anyhow::Result<()> {
        let key = self.sandbox.api_key.expose();
        anyhow::ensure!(
            key.len() >= 16 && key.bytes().all(|b| b.is_ascii_graphic()),
            "sandbox.api_key must be set: 16 or more visible ASCII characters, no spaces"
        );
        self.sandbox.faults.check()?;
        self.check_webhooks()
    }

    fn check_webhooks(&self) -> anyhow::Result<()> {
        let s = &self.sandbox;
        if s.webhook_url.is_empty() {
            return Ok(());
        }
        // The URL is not shown either: it may carry credentials.
        let scheme = reqwest::Url::parse(&s.webhook_url).map(|url| url.scheme().to_owned());
        anyhow::ensure!(
            matches!(scheme.as_deref(), Ok("http" | "https")),
            "sandbox.webhook_url must be an http:// or https:// URL (or empty: no webhooks)"
        );
        let secret = s.webhook_secret.expose();
        anyhow::ensure!(
            secret.len() >= 32 && secret.bytes().all(|b| b.is_ascii_graphic()),
            "sandbox.webhook_secret must be set when sandbox.webhook_url is: \
             32 or more visible ASCII characters, no spaces"
        );
        anyhow::ensure!(
            s.max_attempts >= 1,
            "sandbox.max_attempts must be 1 or more"
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
        loader.build::<SandboxSettings>().unwrap().check()
    }

    #[test]
    fn it_refuses_to_run_without_a_key_or_with_shares_out_of_range() {
        let key = ("sandbox.api_key", "0123456789abcdef");
        assert!(with(&[key]).is_ok());
        let refused = with(&[]).unwrap_err().to_string();
        assert!(refused.contains("sandbox.api_key"), "{refused}");
        for odd in ["                ", " 0123456789abcdef ", "ééééééééé"] {
            assert!(with(&[("sandbox.api_key", odd)]).is_err(), "{odd:?}");
        }
        let short = with(&[("sandbox.api_key", "0123456789abcde")]).unwrap_err();
        let text = short.to_string();
        assert!(
            text.contains("sandbox.api_key") && !text.contains("0123456789abcde"),
            "{text}"
        );
        for bad in [
            [
                ("sandbox.failure_rate", "1.5"),
                ("sandbox.hang_share", "0.1"),
            ],
            [
                ("sandbox.refuse_share", "0.6"),
                ("sandbox.hang_share", "0.6"),
            ],
            [
                ("sandbox.failure_rate", "NaN"),
                ("sandbox.hang_share", "0.1"),
            ],
        ] {
            let mut changes = vec![key];
            changes.extend(bad);
            assert!(with(&changes).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn webhooks_need_a_url_and_a_long_secret_which_is_never_shown() {
        let key = ("sandbox.api_key", "0123456789abcdef");
        let url = ("sandbox.webhook_url", "https://merchant.example/webhooks");
        let secret = "whsec_0123456789abcdef0123456789";
        assert!(with(&[key, url, ("sandbox.webhook_secret", secret)]).is_ok());
        assert!(
            with(&[key, ("sandbox.webhook_secret", "short")]).is_ok(),
            "without a URL the secret is not used"
        );
        let missing = with(&[key, url]).unwrap_err().to_string();
        assert!(missing.contains("sandbox.webhook_secret"), "{missing}");
        for odd in [&secret[1..], "whsec_0123456789abcdef 0123456789ab"] {
            let refused = with(&[key, url, ("sandbox.webhook_secret", odd)])
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains("sandbox.webhook_secret") && !refused.contains(odd),
                "{refused}"
            );
        }
        for bad in [
            "merchant.example/webhooks",
            "ftp://merchant.example/",
            "https://",
        ] {
            let refused = with(&[
                key,
                ("sandbox.webhook_url", bad),
                ("sandbox.webhook_secret", secret),
            ])
            .unwrap_err()
            .to_string();
            assert!(refused.contains("sandbox.webhook_url"), "{bad}: {refused}");
        }
        let never = with(&[
            key,
            url,
            ("sandbox.webhook_secret", secret),
            ("sandbox.max_attempts", "0"),
        ]);
        assert!(never.is_err());
    }
}
