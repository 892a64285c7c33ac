//! Every service the binary runs, in one list: `up`, `serve`, `migrate`,
//! `seed` and `certs` iterate it, so a new service is added here once.
//!
//! A service is a [`ServiceEntry`]. `up` builds every entry in list order
//! (later ones find the URLs of earlier ones in the [`UpContext`]) and only
//! then starts them: building subscribes a service's consumers, starting runs
//! its outbox relay, so every consumer is subscribed before any relay
//! publishes and the first start loses no event.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use emporium_config::Loader;
use emporium_http::Shutdown;
use emporium_http::tls::CertDir;
use emporium_messaging::Bus;

use crate::up;

/// Flags and files `serve`, `migrate` and `seed` read settings from.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsArgs<'a> {
    pub config: Option<&'a Path>,
    pub port: Option<u16>,
    pub insecure_http: bool,
}

impl SettingsArgs<'_> {
    /// Applies `--port` and `--insecure-http` over the other layers.
    pub fn apply(&self, mut loader: Loader) -> anyhow::Result<Loader> {
        if let Some(port) = self.port {
            loader = loader.set("http.port", &port.to_string())?;
        }
        if self.insecure_http {
            loader = loader.set("http.insecure_http", "true")?;
        }
        Ok(loader)
    }
}

/// What `up` shares between the services it builds.
pub struct UpContext<'a> {
    pub data_dir: &'a Path,
    pub certs: &'a CertDir,
    /// The one embedded bus of the process.
    pub bus: Arc<dyn Bus>,
    pub insecure_http: bool,
    /// The public address and port (the gateway's).
    pub public_host: std::net::IpAddr,
    pub public_port: u16,
    /// Base URLs of the services built so far that the gateway routes to.
    pub urls: BTreeMap<&'static str, String>,
    /// Base URLs of those it does not (the card provider, an outside party).
    pub outside: BTreeMap<&'static str, String>,
    /// Lines for the banner `up` prints once everything is built.
    pub banner: Vec<String>,
}

impl UpContext<'_> {
    /// The `http.*` settings of `service` in `up`: loopback, its certificate,
    /// port 0 unless it is the public one.
    pub fn http(&self, loader: Loader, service: &str, port: u16) -> anyhow::Result<Loader> {
        Ok(loader
            .set("http.host", "127.0.0.1")?
            .set("http.port", &port.to_string())?
            .set(
                "http.insecure_http",
                if self.insecure_http { "true" } else { "false" },
            )?
            .set(
                "http.tls_cert",
                &self.certs.cert(service).display().to_string(),
            )?
            .set(
                "http.tls_key",
                &self.certs.key(service).display().to_string(),
            )?)
    }

    /// The SQLite URL of `service`'s database in the data directory.
    pub fn database_url(&self, service: &str) -> String {
        emporium_db::sqlite_url(&self.data_dir.join(format!("{service}.db")))
    }

    /// The URL of a service built before this one.
    pub fn url(&self, service: &str) -> anyhow::Result<&str> {
        self.urls
            .get(service)
            .or_else(|| self.outside.get(service))
            .map(String::as_str)
            .ok_or_else(|| anyhow::anyhow!("{service} must be built before it is needed"))
    }
}

/// A built service waiting to be started.
pub type Start =
    Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send>;

/// One service of the shop, as the binary runs it.
#[async_trait]
pub trait ServiceEntry: Send + Sync {
    /// The name on the command line, in certificates and in `up`'s data directory.
    fn name(&self) -> &'static str;
    /// Its settings' layers: defaults, the `--config` file, `EMPORIUM_` variables.
    fn loader(&self, config: Option<&Path>) -> anyhow::Result<Loader>;
    /// Its `[telemetry]` settings, from the same layers as the rest.
    fn telemetry(
        &self,
        args: SettingsArgs<'_>,
    ) -> anyhow::Result<emporium_telemetry::traces::TelemetrySettings> {
        let section: emporium_telemetry::traces::TelemetrySection =
            self.loader(args.config)?.build()?;
        Ok(section.telemetry)
    }
    /// `emporium serve <name>`: until `shutdown`.
    async fn serve(&self, args: SettingsArgs<'_>, shutdown: Shutdown) -> anyhow::Result<()>;
    /// `emporium migrate <name>`: what was done, for the operator.
    async fn migrate(&self, args: SettingsArgs<'_>) -> anyhow::Result<String> {
        let _ = args;
        Ok(format!(
            "{}: it keeps no data; nothing to migrate",
            self.name()
        ))
    }
    /// `emporium seed`: demo data where the service has some, `None` otherwise.
    async fn seed(&self, args: SettingsArgs<'_>) -> anyhow::Result<Option<String>> {
        let _ = args;
        Ok(None)
    }
    /// `emporium up`: builds the service on `up`'s settings (subscribing its
    /// consumers) and records its URL; nothing runs until the returned start.
    async fn up(&self, ctx: &mut UpContext<'_>) -> anyhow::Result<Start>;
}

/// Every service, in the order `up` builds them (a service after those it calls).
pub fn all() -> [&'static dyn ServiceEntry; 6] {
    [
        &SandboxProvider,
        &Accounts,
        &Catalog,
        &Payments,
        &Orders,
        &Gateway,
    ]
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|s| s.name()).collect()
}

pub fn by_name(name: &str) -> anyhow::Result<&'static dyn ServiceEntry> {
    all()
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| anyhow::anyhow!("no service {name:?}; there are {}", names().join(", ")))
}

fn start<A, F>(app: A, run: fn(A, Shutdown) -> F) -> Start
where
    A: Send + 'static,
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Box::new(move |shutdown| Box::pin(run(app, shutdown)))
}

pub struct Accounts;

impl Accounts {
    pub fn settings(args: SettingsArgs<'_>) -> anyhow::Result<emporium_accounts::AccountsSettings> {
        let loader = emporium_accounts::AccountsSettings::loader(args.config)?;
        Ok(args.apply(loader)?.build()?)
    }
}

#[async_trait]
impl ServiceEntry for Accounts {
    fn name(&self) -> &'static str {
        emporium_accounts::SERVICE
    }

    fn loader(&self, config: Option<&Path>) -> anyhow::Result<Loader> {
        Ok(emporium_accounts::AccountsSettings::loader(config)?)
    }

    async fn serve(&self, args: SettingsArgs<'_>, shutdown: Shutdown) -> anyhow::Result<()> {
        emporium_accounts::Application::build(Self::settings(args)?)
            .await?
            .run_until_stopped(shutdown)
            .await
    }

    async fn migrate(&self, args: SettingsArgs<'_>) -> anyhow::Result<String> {
        emporium_accounts::migrate(&Self::settings(args)?).await?;
        Ok("accounts: migrations applied".into())
    }

    async fn up(&self, ctx: &mut UpContext<'_>) -> anyhow::Result<Start> {
        // `up` reads only the admin variables from the environment: the rest
        // (EMPORIUM_DATABASE_URL and friends) configure `serve`, not this.
        let loader = up::accounts_loader(ctx.data_dir)?;
        let settings = ctx.http(loader, self.name(), 0)?.build()?;
        let accounts =
            emporium_accounts::Application::build_with_bus(settings, ctx.bus.clone()).await?;
        let email = std::env::var("EMPORIUM_ADMIN_EMAIL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "admin@emporium.test".to_owned());
        let password = std::env::var("EMPORIUM_ADMIN_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty());
        let generated = accounts
            .bootstrap_admin(&email, password.as_deref())
            .await?;
        ctx.banner.push(match generated {
            Some(password) => {
                format!("  admin:     {email} / {password}  (generated now and shown once)")
            }
            None if password.is_some() => {
                format!("  admin:     {email} (password from EMPORIUM_ADMIN_PASSWORD)")
            }
            None => format!("  admin:     {email} (password shown on the first start)"),
        });
        ctx.banner.push(format!(
            "  log in:    curl --cacert {} -H 'content-type: application/json' \\\n             \
             -d '{{\"email\":\"{email}\",\"password\":\"…\"}}' {{shop}}/auth/login",
            ctx.certs.ca().display(),
        ));
        let clients_file = ctx.data_dir.join("service-clients.toml");
        if !clients_file.exists() {
            up::write_service_clients(&accounts, &clients_file).await?;
        }
        ctx.urls.insert(self.name(), accounts.base_url());
        Ok(start(
            accounts,
            emporium_accounts::Application::run_until_stopped,
        ))
    }
}

pub struct Catalog;

impl Catalog {
    pub fn settings(args: SettingsArgs<'_>) -> anyhow::Result<emporium_catalog::CatalogSettings> {
        let loader = emporium_catalog::CatalogSettings::loader(args.config)?;
        Ok(args.apply(loader)?.build()?)
    }
}

#[async_trait]
impl ServiceEntry for Catalog {
    fn name(&self) -> &'static str {
        emporium_catalog::SERVICE
    }

    fn loader(&self, config: Option<&Path>) -> anyhow::Result<Loader> {
        Ok(emporium_catalog::CatalogSettings::loader(config)?)
    }

    async fn serve(&self, args: SettingsArgs<'_>, shutdown: Shutdown) -> anyhow::Result<()> {
        emporium_catalog::Application::build(Self::settings(args)?)
            .await?
            .run_until_stopped(shutdown)
            .await
    }

    async fn migrate(&self, args: SettingsArgs<'_>) -> anyhow::Result<String> {
        emporium_catalog::migrate(&Self::settings(args)?).await?;
        Ok("catalog: migrations applied".into())
    }

    async fn seed(&self, args: SettingsArgs<'_>) -> anyhow::Result<Option<String>> {
        let settings = Self::settings(args)?;
        let store = emporium_catalog::store::connect(settings.database.url.expose(), 4).await?;
        let seeded = emporium_catalog::seed::seed(store.as_ref()).await?;
        Ok(Some(if seeded.products == 0 {
            "catalog: not empty; nothing seeded".into()
        } else {
            format!(
                "catalog: {} categories, {} products, {} warehouses",
                seeded.categories, seeded.products, seeded.warehouses
            )
        }))
    }

    async fn up(&self, ctx: &mut UpContext<'_>) -> anyhow::Result<Start> {
        // Verifies tokens against the accounts JWKS over HTTPS.
        let loader = Loader::new(emporium_catalog::config::DEFAULTS)?
            .set("database.url", &ctx.database_url(self.name()))?
            .set(
                "auth.jwks_url",
                &format!(
                    "{}/.well-known/jwks.json",
                    ctx.url(emporium_accounts::SERVICE)?
                ),
            )?
            .set("auth.ca_cert", &ctx.certs.ca().display().to_string())?;
        let settings = ctx.http(loader, self.name(), 0)?.build()?;
        let catalog =
            emporium_catalog::Application::build_with_bus(settings, ctx.bus.clone()).await?;
        // Demo data on first start, so there is something to browse.
        let seeded = emporium_catalog::seed::seed(catalog.store().as_ref()).await?;
        if seeded.products > 0 {
            tracing::info!(
                products = seeded.products,
                categories = seeded.categories,
                "Demo catalog created."
            );
        }
        ctx.urls.insert(self.name(), catalog.base_url());
        Ok(start(
            catalog,
            emporium_catalog::Application::run_until_stopped,
        ))
    }
}

pub struct Orders;

impl Orders {
    pub fn settings(args: SettingsArgs<'_>) -> anyhow::Result<emporium_orders::OrdersSettings> {
        let loader = emporium_orders::OrdersSettings::loader(args.config)?;
        Ok(args.apply(loader)?.build()?)
    }
}

#[async_trait]
impl ServiceEntry for Orders {
    fn name(&self) -> &'static str {
        emporium_orders::SERVICE
    }

    fn loader(&self, config: Option<&Path>) -> anyhow::Result<Loader> {
        Ok(emporium_orders::OrdersSettings::loader(config)?)
    }

    async fn serve(&self, args: SettingsArgs<'_>, shutdown: Shutdown) -> anyhow::Result<()> {
        emporium_orders::Application::build(Self::settings(args)?)
            .await?
            .run_until_stopped(shutdown)
            .await
    }

    async fn migrate(&self, args: SettingsArgs<'_>) -> anyhow::Result<String> {
        emporium_orders::migrate(&Self::settings(args)?).await?;
        Ok(format!("{}: migrations applied", self.name()))
    }

    async fn up(&self, ctx: &mut UpContext<'_>) -> anyhow::Result<Start> {
        // Verifies tokens against the accounts JWKS; calls catalog and
        // payments as the `orders` service client `up` created.
        let ca = ctx.certs.ca().display().to_string();
        let accounts = ctx.url(emporium_accounts::SERVICE)?.to_owned();
        let secret = up::service_client_secret(ctx.data_dir, self.name())?;
        let loader = Loader::new(emporium_orders::config::DEFAULTS)?
            .set("database.url", &ctx.database_url(self.name()))?
            .set(
                "auth.jwks_url",
                &format!("{accounts}/.well-known/jwks.json"),
            )?
            .set("auth.ca_cert", &ca)?
            .set("client.token_url", &format!("{accounts}/api/v1/auth/token"))?
            .set("client.client_secret", &secret)?
            .set("client.ca_cert", &ca)?
            .set("catalog.url", ctx.url(emporium_catalog::SERVICE)?)?
            .set("payments.url", ctx.url(emporium_payments::SERVICE)?)?;
        let settings = ctx.http(loader, self.name(), 0)?.build()?;
        let orders =
            emporium_orders::Application::build_with_bus(settings, ctx.bus.clone()).await?;
        ctx.urls.insert(self.name(), orders.base_url());
        Ok(start(
            orders,
            emporium_orders::Application::run_until_stopped,
        ))
    }
}

pub struct Gateway;

impl Gateway {
    pub fn settings(args: SettingsArgs<'_>) -> anyhow::Result<emporium_gateway::GatewaySettings> {
        let loader = emporium_gateway::GatewaySettings::loader(args.config)?;
        Ok(args.apply(loader)?.build()?)
    }
}

#[async_trait]
impl ServiceEntry for Gateway {
    fn name(&self) -> &'static str {
        emporium_gateway::SERVICE
    }

    fn loader(&self, config: Option<&Path>) -> anyhow::Result<Loader> {
        Ok(emporium_gateway::GatewaySettings::loader(config)?)
    }

    async fn serve(&self, args: SettingsArgs<'_>, shutdown: Shutdown) -> anyhow::Result<()> {
        emporium_gateway::Application::build(Self::settings(args)?)
            .await?
            .run_until_stopped(shutdown)
            .await
    }

    async fn up(&self, ctx: &mut UpContext<'_>) -> anyhow::Result<Start> {
        // Every service built before it is an upstream.
        let mut loader = Loader::new(emporium_gateway::config::DEFAULTS)?
            .set("upstreams.ca_cert", &ctx.certs.ca().display().to_string())?
            .set("ops.port", "0")?;
        for (service, url) in &ctx.urls {
            loader = loader.set(&format!("upstreams.{service}"), url)?;
        }
        let settings = ctx
            .http(loader, self.name(), ctx.public_port)?
            .set("http.host", &ctx.public_host.to_string())?
            .build()?;
        let gateway = emporium_gateway::Application::build(settings).await?;
        ctx.banner.insert(
            0,
            format!(
                "  shop:      {}/api/v1\n  metrics:   {}/metrics  (operations port)\n  CA:        {}  (curl --cacert it)\n  data:      {}",
                gateway.base_url(),
                gateway.ops_url(),
                ctx.certs.ca().display(),
                ctx.data_dir.display(),
            ),
        );
        ctx.urls.insert(self.name(), gateway.base_url());
        Ok(start(
            gateway,
            emporium_gateway::Application::run_until_stopped,
        ))
    }
}

/// The sandbox card provider: an outside party, so never a gateway upstream.
pub struct SandboxProvider;

impl SandboxProvider {
    pub fn settings(args: SettingsArgs<'_>) -> anyhow::Result<emporium_sandbox::SandboxSettings> {
        let loader = emporium_sandbox::SandboxSettings::loader(args.config)?;
        Ok(args.apply(loader)?.build()?)
    }
}

#[async_trait]
impl ServiceEntry for SandboxProvider {
    fn name(&self) -> &'static str {
        emporium_sandbox::SERVICE
    }

    fn loader(&self, config: Option<&Path>) -> anyhow::Result<Loader> {
        Ok(emporium_sandbox::SandboxSettings::loader(config)?)
    }

    async fn serve(&self, args: SettingsArgs<'_>, shutdown: Shutdown) -> anyhow::Result<()> {
        emporium_sandbox::Application::build(Self::settings(args)?)
            .await?
            .run_until_stopped(shutdown)
            .await
    }

    async fn migrate(&self, args: SettingsArgs<'_>) -> anyhow::Result<String> {
        let settings = Self::settings(args)?;
        let url = settings.database.url.expose();
        emporium_sandbox::store::Store::open(url, 1).await?;
        Ok(format!("{}: migrations applied", self.name()))
    }

    async fn up(&self, ctx: &mut UpContext<'_>) -> anyhow::Result<Start> {
        let key = up::sandbox_api_key(ctx.data_dir)?;
        let mut loader = Loader::new(emporium_sandbox::config::DEFAULTS)?
            .set("database.url", &ctx.database_url(self.name()))?
            .set("sandbox.api_key", &key)?;
        // Webhooks go to the shop's public origin, as a real provider's would.
        if ctx.public_port != 0 {
            let scheme = if ctx.insecure_http { "http" } else { "https" };
            let hook = format!(
                "{scheme}://127.0.0.1:{}/api/v1/payments/webhooks",
                ctx.public_port
            );
            loader = loader
                .set("sandbox.webhook_url", &hook)?
                .set("sandbox.webhook_secret", &up::webhook_secret(ctx.data_dir)?)?
                .set("sandbox.ca_cert", &ctx.certs.ca().display().to_string())?;
        }
        let settings = ctx.http(loader, self.name(), 0)?.build()?;
        let sandbox = emporium_sandbox::Application::build(settings).await?;
        ctx.banner.push(format!(
            "  cards:     {}  (sandbox provider; its API key is in {})",
            sandbox.base_url(),
            ctx.data_dir.join(up::SANDBOX_KEY_FILE).display()
        ));
        ctx.outside.insert(self.name(), sandbox.base_url());
        Ok(start(
            sandbox,
            emporium_sandbox::Application::run_until_stopped,
        ))
    }
}

pub struct Payments;

impl Payments {
    pub fn settings(args: SettingsArgs<'_>) -> anyhow::Result<emporium_payments::PaymentsSettings> {
        let loader = emporium_payments::PaymentsSettings::loader(args.config)?;
        Ok(args.apply(loader)?.build()?)
    }
}

#[async_trait]
impl ServiceEntry for Payments {
    fn name(&self) -> &'static str {
        emporium_payments::SERVICE
    }

    fn loader(&self, config: Option<&Path>) -> anyhow::Result<Loader> {
        Ok(emporium_payments::PaymentsSettings::loader(config)?)
    }

    async fn serve(&self, args: SettingsArgs<'_>, shutdown: Shutdown) -> anyhow::Result<()> {
        emporium_payments::Application::build(Self::settings(args)?)
            .await?
            .run_until_stopped(shutdown)
            .await
    }

    async fn migrate(&self, args: SettingsArgs<'_>) -> anyhow::Result<String> {
        emporium_payments::migrate(&Self::settings(args)?).await?;
        Ok(format!("{}: migrations applied", self.name()))
    }

    async fn up(&self, ctx: &mut UpContext<'_>) -> anyhow::Result<Start> {
        // Verifies tokens against the accounts JWKS, calls the sandbox
        // provider with its key, and checks the sandbox's webhooks.
        let ca = ctx.certs.ca().display().to_string();
        let jwks = format!(
            "{}/.well-known/jwks.json",
            ctx.url(emporium_accounts::SERVICE)?
        );
        let loader = Loader::new(emporium_payments::config::DEFAULTS)?
            .set("database.url", &ctx.database_url(self.name()))?
            .set("auth.jwks_url", &jwks)?
            .set("auth.ca_cert", &ca)?
            .set("provider.url", ctx.url(emporium_sandbox::SERVICE)?)?
            .set("provider.api_key", &up::sandbox_api_key(ctx.data_dir)?)?
            .set("provider.ca_cert", &ca)?
            .set("webhooks.secret", &up::webhook_secret(ctx.data_dir)?)?;
        let settings = ctx.http(loader, self.name(), 0)?.build()?;
        let payments =
            emporium_payments::Application::build_with_bus(settings, ctx.bus.clone()).await?;
        ctx.urls.insert(self.name(), payments.base_url());
        Ok(start(
            payments,
            emporium_payments::Application::run_until_stopped,
        ))
    }
}
