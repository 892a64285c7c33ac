//! The `emporium` binary: thin wiring over the service libraries.
//!
//! - `emporium up`: the whole shop in one process on SQLite, HTTPS everywhere.
//! - `emporium serve <service>`: one service per process, configured by file and environment.
//! - `emporium migrate <service>`, `emporium certs`, `emporium events dlq …`,
//!   `emporium accounts …`: helpers.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use emporium_http::Shutdown;
use services::SettingsArgs;

mod events;
mod loadgen;
mod orders;
mod payments;
mod services;
mod up;

#[derive(Parser)]
#[command(name = "emporium", version, about = "An online shop as Rust services.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole shop on this machine: every service, SQLite, a development CA.
    Up(up::UpArgs),
    /// Run one service (production mode: PostgreSQL, configured by file and EMPORIUM_ variables).
    Serve {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(services::names()))]
        service: String,
        #[command(flatten)]
        common: CommonArgs,
        /// Port to listen on (overrides http.port).
        #[arg(long)]
        port: Option<u16>,
        /// Serve plain HTTP. For local debugging only.
        #[arg(long)]
        insecure_http: bool,
    },
    /// Apply a service's database migrations and exit.
    Migrate {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(services::names()))]
        service: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Fill an empty catalog with demo data (what `up` does on first start).
    Seed {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Create a development CA and service certificates (existing files are kept).
    Certs {
        /// Directory for ca.pem and <service>.pem / <service>-key.pem.
        #[arg(long, default_value = "data/certs")]
        dir: PathBuf,
        /// Extra DNS names or addresses for every certificate (e.g. accounts.shop.svc).
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Exits 0 when URL answers 2xx, 1 otherwise (a container's health
    /// check: no shell or curl needed).
    Healthcheck {
        /// What to ask, e.g. https://127.0.0.1:8443/healthz.
        url: String,
        /// The CA that signed the server's certificate (default: the system's roots).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Seconds to wait for the answer, connecting included (1 to 3600).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
    },
    /// Open-model load generator: a constant rate of reads, or of checkouts, against the shop.
    Loadgen(loadgen::LoadgenArgs),
    /// Event bus operations: dead letters.
    Events(events::EventsArgs),
    /// Payments administration: the ledger.
    Payments(payments::PaymentsArgs),
    /// Orders administration: the read model.
    Orders(orders::OrdersArgs),
    /// Accounts administration.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Add a new signing key; tokens signed by the previous key stay valid until they expire.
    RotateKey,
    /// Re-wrap every signing key under a new key-encryption key, in one transaction.
    ///
    /// With --data-dir (an `emporium up` data directory) a new `kek` is
    /// generated there and the old one kept as `kek.previous`. Otherwise the
    /// new key is read from --new-kek-file (generated there, mode 0600, if the
    /// file does not exist); configure it as keys.kek_file afterwards.
    RotateKek {
        #[arg(
            long,
            conflicts_with = "data_dir",
            required_unless_present = "data_dir"
        )]
        new_kek_file: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Create (or replace) a service client and print its secret once.
    CreateClient {
        #[arg(long)]
        id: String,
        /// Space-separated scopes, e.g. "stock:reserve payments:authorize".
        #[arg(long, default_value = "")]
        scopes: String,
    },
}

#[derive(clap::Args)]
struct CommonArgs {
    /// TOML settings file (layered over the defaults, under EMPORIUM_ variables).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One crypto provider for the whole process (see docs/architecture.md).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    // `up` is read by a person at a terminal (unless told otherwise); every
    // other command logs JSON, one object per line, for collectors.
    let format = match &cli.command {
        Command::Up(args) => args.log_format(),
        _ => emporium_telemetry::LogFormat::Json,
    };
    // A served process is one service; `up` and the commands are the shop.
    let name = match &cli.command {
        Command::Serve { service, .. } => service.as_str(),
        _ => "emporium",
    };
    emporium_telemetry::init_logging_for("info", format, name);
    match cli.command {
        Command::Up(args) => {
            // `up` reads no settings file: traces are set by EMPORIUM_TELEMETRY_… variables.
            let section: emporium_telemetry::traces::TelemetrySection =
                emporium_config::Loader::new(emporium_telemetry::traces::DEFAULTS)?
                    .env()?
                    .build()?;
            start_traces(&section.telemetry)?;
            let ran = up::run(args).await;
            emporium_telemetry::traces::flush_traces();
            ran
        }
        Command::Events(args) => events::run(args).await,
        Command::Payments(args) => payments::run(args).await,
        Command::Orders(args) => orders::run(args).await,
        Command::Loadgen(args) => loadgen::run(args).await,
        Command::Healthcheck {
            url,
            ca_cert,
            timeout,
        } => healthcheck(&url, ca_cert.as_deref(), timeout).await,
        Command::Serve {
            service,
            common,
            port,
            insecure_http,
        } => {
            let (_trigger, shutdown) = Shutdown::on_signals();
            let args = SettingsArgs {
                config: common.config.as_deref(),
                port,
                insecure_http,
            };
            let service = services::by_name(&service)?;
            start_traces(&service.telemetry(args)?)?;
            let served = service.serve(args, shutdown).await;
            emporium_telemetry::traces::flush_traces();
            served
        }
        Command::Migrate { service, common } => {
            let args = SettingsArgs {
                config: common.config.as_deref(),
                ..SettingsArgs::default()
            };
            eprintln!("{}", services::by_name(&service)?.migrate(args).await?);
            Ok(())
        }
        Command::Seed { common } => {
            let args = SettingsArgs {
                config: common.config.as_deref(),
                ..SettingsArgs::default()
            };
            for service in services::all() {
                if let Some(done) = service.seed(args).await? {
                    eprintln!("{done}");
                }
            }
            Ok(())
        }
        Command::Certs { dir, names } => {
            let certs = emporium_http::tls::CertDir(dir);
            certs.ensure(&services::names(), &names)?;
            eprintln!(
                "certificates in {} (CA: {})",
                certs.0.display(),
                certs.ca().display()
            );
            Ok(())
        }
        Command::Accounts {
            command:
                AccountsCommand::RotateKek {
                    new_kek_file,
                    data_dir,
                },
            common,
        } => {
            let count = match (data_dir, new_kek_file) {
                (Some(dir), _) => up::rotate_kek(&dir).await?,
                (None, Some(file)) => {
                    let settings = services::Accounts::settings(SettingsArgs {
                        config: common.config.as_deref(),
                        ..SettingsArgs::default()
                    })?;
                    if !file.exists() {
                        emporium_accounts::kek::write_new_kek_file(&file)?;
                    }
                    let new = emporium_accounts::kek::read_kek_file(&file)?;
                    let n = emporium_accounts::rotate_kek(&settings, &new).await?;
                    eprintln!(
                        "now configure keys.kek_file = {} (or EMPORIUM_KEYS_KEK) and restart \
                         the accounts replicas; they keep the keys they hold until then",
                        file.display()
                    );
                    n
                }
                (None, None) => anyhow::bail!("give --new-kek-file or --data-dir"),
            };
            eprintln!("{count} signing keys re-wrapped under the new key-encryption key");
            Ok(())
        }
        Command::Accounts { command, common } => {
            let settings = services::Accounts::settings(SettingsArgs {
                config: common.config.as_deref(),
                ..SettingsArgs::default()
            })?;
            match command {
                AccountsCommand::RotateKek { .. } => unreachable!("handled above"),
                AccountsCommand::RotateKey => {
                    let kid = emporium_accounts::rotate_key(&settings).await?;
                    eprintln!("new signing key {kid}; replicas pick it up within 30 seconds");
                }
                AccountsCommand::CreateClient { id, scopes } => {
                    let store =
                        emporium_accounts::store::connect(settings.database.url.expose(), 1)
                            .await?;
                    let scopes: Vec<&str> = scopes.split_whitespace().collect();
                    let secret =
                        emporium_accounts::create_service_client(store.as_ref(), &id, &scopes)
                            .await?;
                    println!("{secret}");
                }
            }
            Ok(())
        }
    }
}

/// `emporium healthcheck`: Ok on a 2xx answer within `timeout_s` seconds,
/// an error (exit 1) saying why otherwise. A redirect is an answer, not
/// followed; a password in the URL is never printed.
async fn healthcheck(
    url: &str,
    ca_cert: Option<&std::path::Path>,
    timeout_s: u64,
) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("the URL is not valid: {e}"))?;
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "{shown}: only http and https are checked"
    );
    let timeout = std::time::Duration::from_secs(timeout_s);
    let client = emporium_http::tls::client_builder(ca_cert, timeout)?
        .connect_timeout(timeout)
        .build()?;
    let answer = tokio::time::timeout(timeout, client.get(url).send())
        .await
        .map_err(|_| anyhow::anyhow!("{shown}: no answer within {timeout_s} s"))?
        .map_err(|e| anyhow::Error::new(e.without_url()).context(format!("{shown}: no answer")))?;
    let status = answer.status();
    anyhow::ensure!(status.is_success(), "{shown} answered {status}");
    Ok(())
}

/// Starts exporting traces when `settings` name a collector (its CA read
/// as every CA file is, `emporium_http::tls::read_ca_file`); says so in the log.
fn start_traces(settings: &emporium_telemetry::traces::TelemetrySettings) -> anyhow::Result<()> {
    if settings.otlp_endpoint.is_empty() {
        return Ok(());
    }
    let ca = match settings.otlp_ca_cert.as_str() {
        "" => None,
        path => Some(emporium_http::tls::read_ca_file(std::path::Path::new(
            path,
        ))?),
    };
    emporium_telemetry::traces::init_traces(&settings.otlp_endpoint, ca)?;
    tracing::info!(endpoint = %settings.otlp_endpoint, "Exporting traces over OTLP.");
    Ok(())
}
