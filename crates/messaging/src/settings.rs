//! The `[events]` section every producing or consuming service carries.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use emporium_config::Secret;
use serde::Deserialize;

use crate::Bus;
use crate::embedded::EmbeddedBus;
use crate::outbox::RelaySettings;
use crate::rabbit::{RabbitBus, RabbitSettings};

#[derive(Debug, Clone, Deserialize)]
pub struct EventsSettings {
    /// `rabbitmq`, or `embedded` (a SQLite file, for one process).
    pub bus: String,
    pub amqp_url: Secret,
    pub exchange: String,
    pub embedded_path: String,
    /// Outbox rows per published batch.
    pub relay_batch: i64,
    /// How often an idle relay looks for rows nobody woke it for.
    pub relay_poll_ms: u64,
}

impl EventsSettings {
    /// Opens the configured bus.
    pub async fn open_bus(&self) -> anyhow::Result<Arc<dyn Bus>> {
        Ok(match self.bus.as_str() {
            "rabbitmq" => {
                let mut settings = RabbitSettings::new(self.amqp_url.expose());
                settings.exchange = self.exchange.clone();
                Arc::new(RabbitBus::new(settings))
            }
            "embedded" => Arc::new(EmbeddedBus::open(Path::new(&self.embedded_path)).await?),
            other => anyhow::bail!("events.bus must be rabbitmq or embedded, not {other:?}"),
        })
    }

    pub fn relay_settings(&self) -> RelaySettings {
        RelaySettings {
            batch: self.relay_batch.max(1),
            poll: Duration::from_millis(self.relay_poll_ms.max(1)),
            ..RelaySettings::default()
        }
    }
}
