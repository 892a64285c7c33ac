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
use emporium_contracts::scopes;
use emporium_http::Shutdown;
use emporium_http::tls::CertDir;
use emporium_messaging::Bus;
use emporium_messaging::embedded::EmbeddedBus;

use crate::services::{self, UpContext};

/// Service clients created on first start, with the scopes later services need.
const SERVICE_CLIENTS: &[(&str, &[&str])] = &[
    ("orders", &scopes::ORDERS),
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
    /// The address the gateway listens on: loopback (the default), or
    /// 0.0.0.0 (or ::) for every interface, as in a container. The other
    /// services always stay on loopback.
    #[arg(long, default_value = "127.0.0.1", value_parser = public_host)]
    host: std::net::IpAddr,
    /// Serve plain HTTP everywhere. For local debugging only.
    #[arg(long)]
    insecure_http: bool,
    /// Log lines as JSON or readable text; by default readable when standard
    /// output is a terminal, JSON otherwise.
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormatArg {
    Json,
    Pretty,
}

/// `--host`: 127.0.0.1 or every interface. The webhooks of the card
/// sandbox reach the gateway on 127.0.0.1, and the development certificates
/// name 127.0.0.1 and localhost only.
fn public_host(raw: &str) -> Result<std::net::IpAddr, String> {
    let ip: std::net::IpAddr = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not an IP address"))?;
    if ip.is_unspecified() || ip == std::net::IpAddr::from([127, 0, 0, 1]) {
        Ok(ip)
    } else {
        Err("the gateway listens on loopback (127.0.0.1) or every interface (0.0.0.0 or ::)".into())
    }
}

impl UpArgs {
    pub fn log_format(&self) -> emporium_telemetry::LogFormat {
        match self.log_format {
            Some(LogFormatArg::Json) => emporium_telemetry::LogFormat::Json,
            Some(LogFormatArg::Pretty) => emporium_telemetry::LogFormat::Pretty,
            None => emporium_telemetry::LogFormat::for_stdout(),
        }
    }
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

/// Holds the data directory for this process: a second `up` on it would run
/// a second relay and consumers over the same files. The lock goes with the
/// returned file (and with the process, however it ends).
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(dir.join("lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another emporium up is running on {}; stop it first or pick another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context("cannot lock the data directory"))
        }
    }
}

/// Accounts' settings in an `up` data directory.
pub fn accounts_loader(data_dir: &Path) -> anyhow::Result<Loader> {
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
    let _only_one = lock_data_dir(&data_dir)?;
    let certs = CertDir(data_dir.join("certs"));
    certs.ensure(&services::names(), &[])?;
    let (_trigger, shutdown) = Shutdown::on_signals();

    // One embedded bus for every service. Every service is built (its consumers
    // subscribed) before any is started (its relay publishing), so the first
    // start loses nothing.
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(&data_dir.join("bus.db")).await?);
    let mut ctx = UpContext {
        data_dir: &data_dir,
        certs: &certs,
        bus,
        insecure_http: args.insecure_http,
        public_host: args.host,
        public_port: args.port,
        urls: Default::default(),
        outside: Default::default(),
        banner: Vec::new(),
    };
    let mut starts = Vec::new();
    for service in services::all() {
        match service.up(&mut ctx).await {
            Ok(start) => starts.push((service.name(), start)),
            Err(e) => {
                // What was set up so far (a generated admin password above all)
                // is shown now: it is never shown again.
                let mut err = std::io::stderr();
                let _ = writeln!(err, "\nEmporium did not start ({} failed).", service.name());
                for line in &ctx.banner {
                    if !line.contains("{shop}") {
                        let _ = writeln!(err, "{line}");
                    }
                }
                return Err(e);
            }
        }
    }

    let shop = format!("{}/api/v1", ctx.url(emporium_gateway::SERVICE)?);
    let mut banner = String::from("\nEmporium is up.\n");
    for line in &ctx.banner {
        banner.push_str(&line.replace("{shop}", &shop));
        banner.push('\n');
    }
    banner.push('\n');
    let mut err = std::io::stderr();
    let _ = err.write_all(banner.as_bytes());
    let _ = err.flush();

    let running: Vec<_> = starts
        .into_iter()
        .map(|(name, start)| (name, tokio::spawn(start(shutdown.clone()))))
        .collect();
    for (name, task) in running {
        task.await?
            .with_context(|| format!("{name} stopped with an error"))?;
    }
    eprintln!("Emporium stopped.");
    Ok(())
}

pub async fn write_service_clients(
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
    write_private(path, &text)
}

/// The secret of service client `id` from the file [`write_service_clients`] wrote.
pub fn service_client_secret(data_dir: &Path, id: &str) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        client_secret: String,
    }
    let path = data_dir.join("service-clients.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let clients: std::collections::BTreeMap<String, Entry> =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    clients
        .get(id)
        .map(|e| e.client_secret.clone())
        .with_context(|| format!("{} holds no service client {id}", path.display()))
}

/// Creates `path` readable by its owner only (0600) and writes `text`.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Where `up` keeps the sandbox provider's API key.
pub const SANDBOX_KEY_FILE: &str = "sandbox-provider.key";

/// Where `up` keeps the secret the sandbox signs its webhooks with.
pub const WEBHOOK_SECRET_FILE: &str = "provider-webhook.secret";

/// The sandbox provider's API key in an `up` data directory: made on the
/// first start (0600), read on every later one.
pub fn sandbox_api_key(data_dir: &Path) -> anyhow::Result<String> {
    kept_secret(data_dir, SANDBOX_KEY_FILE, "sk_sandbox_")
}

/// The provider's webhook signing secret, shared by the sandbox and payments.
pub fn webhook_secret(data_dir: &Path) -> anyhow::Result<String> {
    kept_secret(data_dir, WEBHOOK_SECRET_FILE, "whsec_")
}

/// A random secret in `file` of the data directory: made on the first start
/// (0600), read on every later one.
fn kept_secret(data_dir: &Path, file: &str, prefix: &str) -> anyhow::Result<String> {
    let path = data_dir.join(file);
    if !path.exists() {
        let secret = format!("{prefix}{}", emporium_accounts::tokens::random_token(32));
        write_private(&path, &format!("{secret}\n"))?;
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim().to_owned())
}
