//! `emporium orders rebuild-projections`: the orders read model rebuilt from
//! the event streams, straight from the orders database.

use clap::{Args, Subcommand};
use emporium_orders::store::{EventStore, MIGRATIONS};

#[derive(Args)]
pub struct OrdersArgs {
    #[command(subcommand)]
    command: OrdersCommand,
    /// The orders database (`postgres://…` or `sqlite://path`).
    #[arg(long, env = "EMPORIUM_DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

#[derive(Subcommand)]
enum OrdersCommand {
    /// Replace the read model (lists and lookups) with what folding every
    /// order's events gives, in one transaction.
    RebuildProjections,
}

pub async fn run(args: OrdersArgs) -> anyhow::Result<()> {
    let OrdersCommand::RebuildProjections = args.command;
    let parts = [MIGRATIONS, emporium_messaging::migrations::OUTBOX];
    let db = emporium_db::open_service_db(&args.database_url, 2, &parts).await?;
    let count = EventStore::new(db)
        .rebuild(emporium_orders::view::project)
        .await?;
    println!("orders: {count} projections rebuilt from their events");
    Ok(())
}
