//! `emporium up`: the whole shop in one process.
//!
//! Every service runs on its own loopback port and they talk over HTTPS as in
//! production; SQLite files, the embedded event bus (`bus.db`) and certificates
//! live under the data directory, so a restart keeps everything.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::Context;
use emporium_config::Loader;
use emporium_http::Shutdown;
use emporium_http::tls::CertDir;
use emporium_messaging::Bus;
use emporium_messaging::embedded::EmbeddedBus;

/// Every service that gets a certificate.
pub const SERVICES: [&str; 3] = ["accounts", "catalog", "gateway"];

/// Service clients created on first start, with the scopes later services need.
const SERVICE_CLIENTS: &[(&str, &[&str])] = &[
    (
        "orders",
        &[
            "stock:reserve",
            "payments:authorize",
            "payments:capture",
            "payments:void",
            "payments:refund",
        ],
    ),
    ("catalog", &[]),
    ("payments", &[]),
];

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the databases, certificates and generated secrets live.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// The gateway's port (the shop's public origin).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Serve plain HTTP everywhere. For local debugging only.
    #[arg(long)]
    insecure_http: bool,
}

fn common_http(
    loader: Loader,
    certs: &CertDir,
    service: &str,
    port: u16,
    insecure: bool,
) -> anyhow::Result<Loader> {
    Ok(loader
        .set("http.host", "127.0.0.1")?
        .set("http.port", &port.to_string())?
        .set(
            "http.insecure_http",
            if insecure { "true" } else { "false" },
        )?
        .set("http.tls_cert", &certs.cert(service).display().to_string())?
        .set("http.tls_key", &certs.key(service).display().to_string())?)
}

/// Creates the data directory readable by its owner only (and tightens an
/// existing one), and the key-encryption key in it on first start.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let dir = dir.canonicalize()?;
    let kek = dir.join("kek");
    if !kek.exists() {
        emporium_accounts::kek::write_new_kek_file(&kek)?;
    }
    Ok(dir)
}

/// Accounts' settings in an `up` data directory.
fn accounts_loader(data_dir: &Path) -> anyhow::Result<Loader> {
    let mut loader = Loader::new(emporium_accounts::config::DEFAULTS)?
        .set(
            "database.url",
            &emporium_db::sqlite_url(&data_dir.join("accounts.db")),
        )?
        .set("keys.kek_file", &data_dir.join("kek").display().to_string())?;
    let previous = data_dir.join("kek.previous");
    if previous.exists() {
        loader = loader.set("keys.previous_kek_file", &previous.display().to_string())?;
    }
    Ok(loader)
}

/// `emporium accounts rotate-kek --data-dir DIR`: a new `kek`, the old one
/// kept as `kek.previous`, every signing key re-wrapped in one transaction.
pub async fn rotate_kek(dir: &Path) -> anyhow::Result<usize> {
    let dir = dir.canonicalize()?;
    let settings: emporium_accounts::AccountsSettings = accounts_loader(&dir)?.build()?;
    let next = dir.join("kek.new");
    if next.exists() {
        std::fs::remove_file(&next)?;
    }
    emporium_accounts::kek::write_new_kek_file(&next)?;
    let new = emporium_accounts::kek::read_kek_file(&next)?;
    let count = emporium_accounts::rotate_kek(&settings, &new).await?;
    std::fs::rename(dir.join("kek"), dir.join("kek.previous"))?;
    std::fs::rename(&next, dir.join("kek"))?;
    Ok(count)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = prepare_data_dir(&args.data_dir)?;
    let certs = CertDir(data_dir.join("certs"));
    certs.ensure(&SERVICES, &[])?;
    let (_trigger, shutdown) = Shutdown::on_signals();

    // Accounts. `up` reads only the admin variables from the environment: the
    // rest (EMPORIUM_DATABASE_URL and friends) configure `serve`, not this.
    let loader = accounts_loader(&data_dir)?;
    let accounts_settings: emporium_accounts::AccountsSettings =
        common_http(loader, &certs, "accounts", 0, args.insecure_http)?.build()?;
    // One embedded bus for every service. Consumers subscribe before any relay
    // runs (relays start with the services below), so the first start loses nothing.
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&data_dir.join("bus.db")).await?);
    let accounts =
        emporium_accounts::Application::build_with_bus(accounts_settings, bus.clone()).await?;
    let admin_email = std::env::var("EMPORIUM_ADMIN_EMAIL")
        .ok()
        .filter(|s| !s.is_empty());
    let admin_password = std::env::var("EMPORIUM_ADMIN_PASSWORD")
        .ok()
        .filter(|s| !s.is_empty());
    let email = admin_email.unwrap_or_else(|| "admin@emporium.test".to_owned());
    let generated = accounts
        .bootstrap_admin(&email, admin_password.as_deref())
        .await?;
    let clients_file = data_dir.join("service-clients.toml");
    if !clients_file.exists() {
        write_service_clients(&accounts, &clients_file).await?;
    }

    // Catalog: verifies tokens against the accounts JWKS over HTTPS.
    let loader = Loader::new(emporium_catalog::config::DEFAULTS)?
        .set(
            "database.url",
            &emporium_db::sqlite_url(&data_dir.join("catalog.db")),
        )?
        .set(
            "auth.jwks_url",
            &format!("{}/.well-known/jwks.json", accounts.base_url()),
        )?
        .set("auth.ca_cert", &certs.ca().display().to_string())?;
    let catalog_settings: emporium_catalog::CatalogSettings =
        common_http(loader, &certs, "catalog", 0, args.insecure_http)?.build()?;
    let catalog =
        emporium_catalog::Application::build_with_bus(catalog_settings, bus.clone()).await?;
    // Demo data on first start, so there is something to browse.
    let seeded = emporium_catalog::seed::seed(catalog.store().as_ref()).await?;
    if seeded.products > 0 {
        tracing::info!(
            products = seeded.products,
            categories = seeded.categories,
            "Demo catalog created."
        );
    }

    // Gateway.
    let loader = Loader::new(emporium_gateway::config::DEFAULTS)?
        .set("upstreams.accounts", &accounts.base_url())?
        .set("upstreams.catalog", &catalog.base_url())?
        .set("upstreams.ca_cert", &certs.ca().display().to_string())?
        .set("ops.port", "0")?;
    let gateway_settings: emporium_gateway::GatewaySettings =
        common_http(loader, &certs, "gateway", args.port, args.insecure_http)?.build()?;
    let gateway = emporium_gateway::Application::build(gateway_settings).await?;

    let mut banner = format!(
        "\nEmporium is up.\n  shop:      {}/api/v1\n  metrics:   {}/metrics  (operations port)\n  CA:        {}  (curl --cacert it)\n  data:      {}\n",
        gateway.base_url(),
        gateway.ops_url(),
        certs.ca().display(),
        data_dir.display(),
    );
    match generated {
        Some(password) => banner.push_str(&format!(
            "  admin:     {email} / {password}  (generated now and shown once)\n"
        )),
        None if admin_password.is_some() => banner.push_str(&format!(
            "  admin:     {email} (password from EMPORIUM_ADMIN_PASSWORD)\n"
        )),
        None => banner.push_str(&format!(
            "  admin:     {email} (password shown on the first start)\n"
        )),
    }
    banner.push_str(&format!(
        "  log in:    curl --cacert {} -H 'content-type: application/json' \\\n             \
         -d '{{\"email\":\"{email}\",\"password\":\"…\"}}' {}/api/v1/auth/login\n\n",
        certs.ca().display(),
        gateway.base_url(),
    ));
    let mut err = std::io::stderr();
    let _ = err.write_all(banner.as_bytes());
    let _ = err.flush();

    let accounts_task = tokio::spawn(accounts.run_until_stopped(shutdown.clone()));
    let catalog_task = tokio::spawn(catalog.run_until_stopped(shutdown.clone()));
    let gateway_task = tokio::spawn(gateway.run_until_stopped(shutdown));
    let (a, c, g) = tokio::join!(accounts_task, catalog_task, gateway_task);
    a??;
    c??;
    g??;
    eprintln!("Emporium stopped.");
    Ok(())
}

async fn write_service_clients(
    accounts: &emporium_accounts::Application,
    path: &Path,
) -> anyhow::Result<()> {
    let store = accounts.store();
    let mut text = String::from(
        "# Service clients created by `emporium up`; secrets are stored only here (hashed in accounts).\n",
    );
    for (id, scopes) in SERVICE_CLIENTS {
        let secret = emporium_accounts::create_service_client(store.as_ref(), id, scopes).await?;
        text.push_str(&format!(
            "[{id}]\nclient_secret = \"{secret}\"\nscopes = \"{}\"\n",
            scopes.join(" ")
        ));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())?;
    Ok(())
}
