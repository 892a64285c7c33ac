//! `emporium events dlq …`: inspect and replay dead-lettered events, on
//! RabbitMQ (`--amqp-url`) or on the embedded bus of `emporium up` (`--data-dir`).

use std::path::PathBuf;
use std::sync::Arc;

use emporium_messaging::Bus;
use emporium_messaging::embedded::EmbeddedBus;
use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
use uuid::Uuid;

#[derive(clap::Args)]
pub struct EventsArgs {
    /// RabbitMQ to work on; without it, the embedded bus under --data-dir.
    /// Prefer the variable EMPORIUM_EVENTS_AMQP_URL when the URL holds a
    /// password: a command line is visible to every local user.
    #[arg(long, env = "EMPORIUM_EVENTS_AMQP_URL", global = true)]
    amqp_url: Option<String>,
    /// The RabbitMQ exchange (with --amqp-url).
    #[arg(
        long,
        env = "EMPORIUM_EVENTS_EXCHANGE",
        default_value = "emporium.events",
        global = true
    )]
    exchange: String,
    /// The data directory of `emporium up` (its bus is `<dir>/bus.db`).
    #[arg(long, default_value = "data", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(clap::Subcommand)]
enum EventsCommand {
    /// Dead-lettered events of one consumer.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(clap::Subcommand)]
enum DlqCommand {
    /// One line per dead letter: id, type, attempts, last error.
    List {
        #[arg(long)]
        consumer: String,
    },
    /// One dead letter in full (JSON).
    Show {
        #[arg(long)]
        consumer: String,
        #[arg(long)]
        id: Uuid,
    },
    /// Send dead letters back to the consumer: one (--id) or all.
    Replay {
        #[arg(long)]
        consumer: String,
        #[arg(long)]
        id: Option<Uuid>,
    },
    /// Drop every dead letter of the consumer.
    Purge {
        #[arg(long)]
        consumer: String,
    },
}

/// Whether a URL carries a password in its userinfo (`scheme://user:password@host`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
        userinfo
            .split_once(':')
            .is_some_and(|(_, pw)| !pw.is_empty())
    })
}

/// Whether `--amqp-url` was given on the command line (not by the variable).
fn url_on_command_line() -> bool {
    std::env::args().any(|a| a == "--amqp-url" || a.starts_with("--amqp-url="))
}

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let bus: Arc<dyn Bus> = match &args.amqp_url {
        Some(url) => {
            if url_on_command_line() && has_password(url) {
                eprintln!(
                    "warning: the broker password is on the command line, where every local \
                     user can read it; pass the URL in EMPORIUM_EVENTS_AMQP_URL instead"
                );
            }
            let mut settings = RabbitSettings::new(url);
            settings.exchange = args.exchange.clone();
            Arc::new(RabbitBus::new(settings))
        }
        None => {
            let path = args.data_dir.join("bus.db");
            anyhow::ensure!(
                path.exists(),
                "no embedded bus at {} (use --data-dir, or --amqp-url for RabbitMQ)",
                path.display()
            );
            Arc::new(EmbeddedBus::open(&path).await?)
        }
    };
    let EventsCommand::Dlq { command } = args.command;
    let consumer = match &command {
        DlqCommand::List { consumer }
        | DlqCommand::Show { consumer, .. }
        | DlqCommand::Replay { consumer, .. }
        | DlqCommand::Purge { consumer } => consumer,
    };
    // A misspelt name would otherwise read as "no dead letters".
    anyhow::ensure!(
        bus.has_consumer(consumer).await?,
        "no consumer {consumer:?} on this bus (consumers are named <service>.<purpose>, \
         e.g. orders.payments)"
    );
    match command {
        DlqCommand::List { consumer } => {
            let letters = bus.dead_letters(&consumer).await?;
            for l in &letters {
                println!(
                    "{}\t{}\t{} attempts\t{}",
                    l.id, l.event_type, l.attempts, l.last_error
                );
            }
            eprintln!("{} dead letter(s) for {consumer}", letters.len());
        }
        DlqCommand::Show { consumer, id } => {
            let letter = bus
                .dead_letters(&consumer)
                .await?
                .into_iter()
                .find(|l| l.id == id)
                .ok_or_else(|| anyhow::anyhow!("no dead letter {id} for {consumer}"))?;
            println!("{}", serde_json::to_string_pretty(&letter)?);
        }
        DlqCommand::Replay { consumer, id } => {
            let n = bus.replay(&consumer, id).await?;
            if let Some(id) = id {
                anyhow::ensure!(n > 0, "no dead letter {id} for {consumer}");
            }
            eprintln!("replayed {n} event(s) to {consumer}");
        }
        DlqCommand::Purge { consumer } => {
            let n = bus.purge(&consumer).await?;
            eprintln!("purged {n} dead letter(s) of {consumer}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_recognised() {
        assert!(has_password("amqp://guest:guest@127.0.0.1:5672/%2f"));
        assert!(has_password("amqps://u:p%40ss@broker/vhost"));
        assert!(!has_password("amqp://guest@127.0.0.1:5672/%2f"));
        assert!(!has_password("amqp://127.0.0.1:5672/a:b@c"));
        assert!(!has_password("amqp://u:@host"));
    }
}
