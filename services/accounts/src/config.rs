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
    pub keys: KeySettings,
    pub hashing: HashingConfig,
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

/// Throttling of password attempts and registrations (NIST SP 800-63B §5.2.2).
/// Every limit counts attempts taken in a fixed window of `window_secs`; a
/// successful attempt gives its slot back.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginConfig {
    /// Attempts on one account from one client address.
    pub max_failures: i64,
    /// Attempts from one client address across all accounts (credential stuffing).
    pub max_failures_per_address: i64,
    /// Attempts on one account from anywhere: high, so nobody can lock a
    /// victim out with a few guesses, yet bounded.
    pub max_failures_per_account: i64,
    /// Past `max_failures_per_account`, one attempt per this many seconds is
    /// still evaluated for the account (from anywhere): slowed, never locked.
    pub account_slow_interval_secs: u64,
    /// Wrong current passwords on a password change, per account.
    pub max_password_change_failures: i64,
    pub window_secs: u64,
    /// Registrations from one client address per `registration_window_secs`.
    pub max_registrations_per_address: i64,
    pub registration_window_secs: u64,
    /// Peers whose `X-Forwarded-For` is believed (the gateway's addresses), as
    /// comma-separated CIDR ranges; from anyone else the header is ignored.
    pub trusted_proxies: String,
}

/// Where the key-encryption key comes from: the signing keys are stored
/// encrypted under it. One of the two must be set; `serve` refuses to start otherwise.
#[derive(Debug, Clone, Deserialize)]
pub struct KeySettings {
    /// The key itself, base64 (32 bytes); prefer `kek_file` or the variable `EMPORIUM_KEYS_KEK`.
    pub kek: Secret,
    /// A file holding the key (base64), readable by the service's user only.
    pub kek_file: String,
    /// The key before the last rotation, so keys still wrapped under it can be read.
    pub previous_kek_file: String,
}

/// Argon2id runs on a fixed pool of threads with a bounded queue.
#[derive(Debug, Clone, Deserialize)]
pub struct HashingConfig {
    /// Hashing threads; 0 means one per core.
    pub threads: usize,
    /// Hashes waiting beyond the running ones; a full queue answers 503 at once.
    pub queue: usize,
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
        assert_eq!(s.login.max_failures_per_account, 100);
        // Only the gateway is meant to reach a service: loopback unless configured.
        assert_eq!(s.http.host, "127.0.0.1");
        assert_eq!(s.login.trusted_proxies, "127.0.0.1/32,::1/128");
    }
}
