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
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    /// The share of calls (0 to 1) that fail transiently.
    pub failure_rate: f64,
    /// Of the failing calls, the share refused at once and the share that
    /// hang; the rest lose their answer after the work is done.
    pub refuse_share: f64,
    pub hang_share: f64,
    /// How long a hanging call hangs before it answers 503.
    pub hang_ms: u64,
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
        let s = &self.sandbox;
        let shares = [
            s.failure_rate,
            s.refuse_share,
            s.hang_share,
            s.refuse_share + s.hang_share,
        ];
        anyhow::ensure!(
            shares.iter().all(|x| (0.0..=1.0).contains(x)),
            "sandbox.failure_rate, refuse_share and hang_share must be between 0 and 1 \
             (the two shares together too)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(changes: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut loader = Loader::new(DEFAULTS).unwrap();
        for (key, value) in changes {
            loader = loader.set(key, value).unwrap();
        }
        let settings: SandboxSettings = loader.build().unwrap();
        settings.check()
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
}
