//! `emporium payments ledger verify|export`: the ledger, checked or exported,
//! straight from the payments database.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use emporium_payments::store::{Ledger, MIGRATIONS};

#[derive(Args)]
pub struct PaymentsArgs {
    #[command(subcommand)]
    command: PaymentsCommand,
}

#[derive(Subcommand)]
enum PaymentsCommand {
    /// The ledger: verify its hash chain and balances, or export it.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
        /// The payments database (`postgres://…` or `sqlite://path`).
        #[arg(long, env = "EMPORIUM_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Recompute the chain, every transaction's sum and every balance; print
    /// `{entries, valid, first_bad_entry}` and exit 1 if anything is wrong.
    Verify,
    /// Write the ledger as Elasticsearch `_bulk` NDJSON (ECS field names).
    Export {
        /// The index the documents go to.
        #[arg(long, default_value = "emporium-ledger")]
        index: String,
        /// The file to write (standard output without it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(args: PaymentsArgs) -> anyhow::Result<()> {
    let PaymentsCommand::Ledger {
        command,
        database_url,
    } = args.command;
    let db = emporium_db::open_service_db(&database_url, 2, &[MIGRATIONS])
        .await
        .context("cannot open the payments database")?;
    let ledger = Ledger::new(db);
    match command {
        LedgerCommand::Verify => {
            let v = ledger.verify().await?;
            let bad = v
                .first_bad_entry
                .map(|(seq, reason)| serde_json::json!({"seq": seq, "reason": reason}));
            let report =
                serde_json::json!({"entries": v.entries, "valid": v.valid, "first_bad_entry": bad});
            println!("{report}");
            if !v.valid {
                std::process::exit(1);
            }
        }
        LedgerCommand::Export { index, out } => {
            let entries = ledger.entries().await?;
            let written = match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut file = std::io::BufWriter::new(file);
                    emporium_payments::export::write_bulk(&entries, &index, &mut file)?
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    let n = emporium_payments::export::write_bulk(&entries, &index, &mut stdout)?;
                    stdout.flush()?;
                    n
                }
            };
            eprintln!("{written} ledger entries exported");
        }
    }
    Ok(())
}
