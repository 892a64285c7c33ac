//! The `[events]` section every producing or consuming service carries.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use emporium_config::Secret;
use serde::{Deserialize, Serialize};

use crate::Bus;
use crate::embedded::EmbeddedBus;
use crate::outbox::RelaySettings;
use crate::rabbit::{RabbitBus, RabbitSettings};

/// Which bus `events.bus` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// `rabbitmq`: the broker at `events.amqp_url`.
    RabbitMq,
    /// `embedded`: a SQLite file at `events.embedded_path`, for one process.
    Embedded,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventsSettings {
    /// `rabbitmq`, or `embedded` (a SQLite file, for one process).
    pub bus: BusKind,
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
        Ok(match self.bus {
            BusKind::RabbitMq => {
                let mut settings = RabbitSettings::new(self.amqp_url.expose());
                settings.exchange = self.exchange.clone();
                Arc::new(RabbitBus::new(settings))
            }
            BusKind::Embedded => Arc::new(EmbeddedBus::open(Path::new(&self.embedded_path)).await?),
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

#[cfg(test)]
mod tests {
    use super::BusKind;

    #[test]
    fn bus_kinds_are_named_as_in_the_settings() {
        let kind = |s: &str| serde_json::from_value::<BusKind>(serde_json::Value::String(s.into()));
        assert_eq!(kind("rabbitmq").ok(), Some(BusKind::RabbitMq));
        assert_eq!(kind("embedded").ok(), Some(BusKind::Embedded));
        assert!(kind("RabbitMQ").is_err());
        assert!(kind("kafka").is_err());
    }
}
