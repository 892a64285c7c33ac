//! The accounts service: users, credentials (Argon2id), roles, refresh-token
//! families, signing keys (Ed25519) and service clients.
//!
//! It issues the shop's tokens: short-lived EdDSA access tokens, opaque refresh
//! tokens that rotate on every use (a reused one revokes its whole family), and
//! service tokens from the client-credentials grant. Its public keys are served
//! as JWKS, which every other service verifies against locally.
//!
//! ## Layout
//! - [`config`]: typed settings; every key with its default in `defaults.toml`.
//! - [`domain`]: emails, names, the password policy, roles. Pure, unit-tested.
//! - [`store`]: the [`store::AccountsStore`] trait with PostgreSQL and SQLite implementations.
//! - [`tokens`]: the key ring (signing, JWKS, rotation), token claims, secret hashing.
//! - [`passwords`]: Argon2id hashing off the async threads, bounded.
//! - [`api`]: routes, handlers, the error type, OpenAPI.
//! - [`events`]: the events accounts publishes (through the outbox, relayed to the bus).
//! - [`Application`]: binds, wires and serves it all.

pub mod api;
pub mod config;
pub mod domain;
pub mod events;
pub mod kek;
pub mod passwords;
pub mod store;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use emporium_auth::{Role, Verifier, VerifierSettings};
use emporium_http::{ServiceName, Shutdown, ops};
use emporium_messaging::Bus;
use emporium_messaging::outbox::{Relay, RelayWaker};

use crate::api::{Accounts, AppState};
pub use crate::config::AccountsSettings;
use crate::domain::{DisplayName, Email, PasswordPolicy, TrustedProxies};
use crate::kek::KekRing;
use crate::passwords::Hasher;
use crate::store::{AccountsStore, ClientRecord, NewUser, StoreError};
use crate::tokens::{KeyRing, LocalJwks, random_token, secret_hash};
use emporium_db::{Clock, SharedClock, SystemClock};

pub const SERVICE: &str = "accounts";

/// A built accounts service: bound to its port, not yet serving.
pub struct Application {
    listener: ops::Listener,
    state: AppState,
    relay: Relay,
}

impl Application {
    /// Opens the store (applying migrations), makes sure a signing key exists,
    /// creates the configured admin if none exists, and binds the listener.
    pub async fn build(settings: AccountsSettings) -> anyhow::Result<Self> {
        let bus = settings.events.open_bus().await?;
        Self::build_with_bus(settings, bus).await
    }

    /// As [`Application::build`], publishing to a bus the caller shares
    /// (`emporium up` gives every service the same embedded bus).
    pub async fn build_with_bus(
        settings: AccountsSettings,
        bus: Arc<dyn Bus>,
    ) -> anyhow::Result<Self> {
        Self::build_at(settings, bus, emporium_db::system_clock()).await
    }

    /// As [`Application::build_with_bus`], on `clock` (tests move time instead of waiting).
    pub async fn build_at(
        settings: AccountsSettings,
        bus: Arc<dyn Bus>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let store = store::connect(
            settings.database.url.expose(),
            settings.database.max_connections,
        )
        .await?;
        let keks = Arc::new(KekRing::from_settings(&settings.keys)?);
        let filled = store.fill_email_skeletons(&domain::skeleton_of).await?;
        if filled > 0 {
            tracing::info!(accounts = filled, "Email skeletons filled in.");
        }
        let trusted_proxies = TrustedProxies::parse(&settings.login.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("login.trusted_proxies: {e}"))?;
        let tokens = settings.tokens.to_settings();
        let key_reload = Duration::from_secs(settings.tokens.key_reload_secs);
        let keys = Arc::new(KeyRing::new(
            store.clone(),
            keks,
            tokens.access_ttl,
            key_reload,
        ));
        keys.ensure_key(clock.now_ms()).await?;
        // The key table is local, so an unknown kid may look again as often as keys reload.
        let mut verifier_settings = VerifierSettings::new(&tokens.issuer, &tokens.audience);
        verifier_settings.refetch_floor = verifier_settings.refetch_floor.min(key_reload);
        let verifier = Arc::new(Verifier::new(
            verifier_settings,
            Arc::new(LocalJwks(keys.clone())),
        ));
        let state = AppState(Arc::new(Accounts {
            store: store.clone(),
            keys,
            verifier,
            policy: Arc::new(PasswordPolicy::new()),
            hasher: Hasher::new(settings.hashing.threads, settings.hashing.queue).await?,
            tokens,
            login: settings.login.clone(),
            trusted_proxies,
            relay: RelayWaker::default(),
            clock,
        }));
        let relay = Relay {
            outbox: store.outbox(),
            bus,
            settings: settings.events.relay_settings(),
            waker: state.0.relay.clone(),
            service: SERVICE,
        };
        if !settings.admin_email.is_empty() && !settings.admin_password.is_empty() {
            bootstrap_admin(
                &state,
                &settings.admin_email,
                Some(settings.admin_password.expose()),
            )
            .await?;
        }
        let ready_store = store.clone();
        let ready: ops::ReadyCheck = Arc::new(move || {
            let store = ready_store.clone();
            Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
        });
        let listener = ops::Listener::bind(
            api::router(state.clone()),
            (ready, api::openapi::json()),
            ServiceName(SERVICE),
            &settings.http,
        )?;
        Ok(Self {
            listener,
            state,
            relay,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn base_url(&self) -> String {
        self.listener.base_url()
    }

    pub fn store(&self) -> Arc<dyn AccountsStore> {
        self.state.0.store.clone()
    }

    /// Serves HTTP and relays the outbox until `shutdown` fires.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(url = %self.base_url(), "Accounts listening.");
        let relay = tokio::spawn(self.relay.run(shutdown.clone().wait()));
        let served = self.listener.run_until_stopped(shutdown).await;
        let _ = relay.await;
        served
    }

    /// Creates an admin with this email unless an admin exists already.
    /// Without a password one is generated and returned (to be shown once).
    pub async fn bootstrap_admin(
        &self,
        email: &str,
        password: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        bootstrap_admin(&self.state, email, password).await
    }
}

async fn bootstrap_admin(
    state: &AppState,
    email: &str,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let s = &state.0;
    if s.store.any_admin().await? {
        return Ok(None);
    }
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("admin email {m}"))?;
    // Never hand the role to an account someone else registered with this address.
    if let Some(existing) = s.store.user_by_email(email.as_str()).await? {
        anyhow::bail!(
            "no enabled admin exists, and the admin email {} belongs to an existing account \
             ({}{}); the admin role is not given to it. Set another admin email \
             (EMPORIUM_ADMIN_EMAIL) to create a new admin",
            email.as_str(),
            existing.id,
            if existing.disabled { ", disabled" } else { "" }
        );
    }
    let generated = password.is_none().then(|| random_token(18));
    let raw = password.or(generated.as_deref()).unwrap_or_default();
    let password = s
        .policy
        .check(raw)
        .map_err(|m| anyhow::anyhow!("admin password {m}"))?;
    let name = DisplayName::parse("Administrator").map_err(anyhow::Error::msg)?;
    let hash = s.hasher.hash(&password).await?;
    let roles = [Role::Customer, Role::Admin];
    let new = NewUser::new(&email, &name, hash, &roles, s.clock.now_ms());
    let event = events::registered(new.id, email.as_str(), name.as_str(), None);
    s.store
        .insert_user(&new, &[event])
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => anyhow::anyhow!(
                "the admin email {} looks like an existing account's; set another admin \
                 email (EMPORIUM_ADMIN_EMAIL)",
                email.as_str()
            ),
            other => other.into(),
        })?;
    s.relay.wake();
    tracing::info!(email = email.as_str(), "Admin account created.");
    Ok(generated)
}

/// Creates or replaces a service client and returns its new secret (shown once).
/// Only scopes named in `emporium_contracts::scopes` can be granted.
pub async fn create_service_client(
    store: &dyn AccountsStore,
    client_id: &str,
    scopes: &[&str],
) -> anyhow::Result<String> {
    anyhow::ensure!(
        !client_id.is_empty() && client_id.len() <= 64,
        "a client id has 1 to 64 characters"
    );
    if let Some(unknown) = scopes
        .iter()
        .find(|s| !emporium_contracts::scopes::is_known(s))
    {
        anyhow::bail!(
            "unknown scope {unknown:?}; known scopes: {}",
            emporium_contracts::scopes::ALL.join(" ")
        );
    }
    let secret = random_token(32);
    store
        .upsert_client(
            &ClientRecord {
                client_id: client_id.to_owned(),
                secret_hash: secret_hash(&secret),
                scopes: scopes.join(" "),
            },
            SystemClock.now_ms(),
        )
        .await?;
    Ok(secret)
}

/// Adds a new signing key; tokens signed by the previous one stay valid until they expire.
pub async fn rotate_key(settings: &AccountsSettings) -> anyhow::Result<String> {
    let keks = KekRing::from_settings(&settings.keys)?;
    let store = store::connect(settings.database.url.expose(), 1).await?;
    Ok(tokens::insert_wrapped(store.as_ref(), &keks.current, SystemClock.now_ms()).await?)
}

/// Re-wraps every signing key under `new_kek` (base64), in one transaction.
/// The configured KEKs (current and previous) must open every stored key.
/// Afterwards configure `new_kek` as the current KEK; returns how many keys.
pub async fn rotate_kek(settings: &AccountsSettings, new_kek: &str) -> anyhow::Result<usize> {
    let keks = KekRing::from_settings(&settings.keys)?;
    let new = kek::Kek::parse(new_kek)?;
    let store = store::connect(settings.database.url.expose(), 1).await?;
    let mut rewrapped = Vec::new();
    for record in store.signing_keys().await? {
        let plain = if kek::is_wrapped(&record.private_der) {
            keks.unwrap_key(&record.kid, &record.private_der)?
        } else {
            record.private_der.clone()
        };
        rewrapped.push((record.kid.clone(), new.wrap(&record.kid, &plain)));
    }
    store.replace_key_material(&rewrapped).await?;
    Ok(rewrapped.len())
}

/// Applies the migrations.
pub async fn migrate(settings: &AccountsSettings) -> anyhow::Result<()> {
    store::migrate(settings.database.url.expose()).await
}
