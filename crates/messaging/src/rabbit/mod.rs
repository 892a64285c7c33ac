//! The RabbitMQ bus (lapin).
//!
//! Topology, for an exchange `emporium.events` and a consumer `orders`:
//! - `emporium.events`: a durable topic exchange; the routing key is the event type;
//! - `emporium.orders`: the consumer's durable quorum queue, bound once per event type;
//! - `emporium.orders.retry.<ms>`: one durable delay queue per backoff step; a
//!   message waits there for its TTL and is dead-lettered back into the main queue;
//! - `emporium.orders.dlq`: a durable quorum queue of events whose last attempt failed,
//!   with the attempt count and last error in their headers.
//!
//! Publishing waits for publisher confirms; messages are persistent. Consumers
//! ack manually, after the handler's transaction committed and after any retry
//! copy was confirmed, so a crash at any point means a redelivery, never a loss.
//! Connections are re-established with backoff when the broker or the network drops.
//!
//! ## Layout
//! - this module: [`RabbitBus`], its [`Bus`] impl, connections;
//! - `topology`: [`RabbitSettings`] and the names of queues, declaring and deleting them;
//! - `publish`: persistent messages, their headers, publishing with confirms;
//! - `consume`: a consumer's session: lanes, settling each delivery;
//! - `dead_letters`: listing, replaying and purging a consumer's dead-letter queue.

mod consume;
mod dead_letters;
mod publish;
mod topology;

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::bus::{Bus, BusError, DeadLetter, OutgoingEvent, Stop, Subscription};

pub use topology::RabbitSettings;

/// How long an ack or a publisher confirm may take before the link is taken for dead.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The publishing side's connection, kept between batches.
struct Publisher {
    _connection: Connection,
    channel: Channel,
}

pub struct RabbitBus {
    settings: RabbitSettings,
    publisher: Mutex<Option<Publisher>>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

async fn connect(url: &str) -> Result<Connection, BusError> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(unavailable)
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, BusError> {
    let channel = connection.create_channel().await.map_err(unavailable)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(unavailable)?;
    Ok(channel)
}

impl RabbitBus {
    pub fn new(settings: RabbitSettings) -> Self {
        Self {
            settings,
            publisher: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &RabbitSettings {
        &self.settings
    }

    /// Whether the broker answers (for readiness).
    pub async fn ping(&self) -> Result<(), BusError> {
        let connection = connect(&self.settings.url).await?;
        let _ = connection.close(200, "ping".into()).await;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, batch: &[OutgoingEvent]) -> Result<(), BusError> {
        self.publish_batch(batch).await
    }

    async fn subscribe(
        &self,
        sub: Subscription,
        mut stop: Stop,
    ) -> Result<tokio::task::JoinHandle<()>, BusError> {
        // Declare once up front so events published from now on are queued
        // even before the consumer's first session is running.
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        self.declare(&channel, &sub).await?;
        let _ = connection.close(200, "declared".into()).await;
        let bus = RabbitBus::new(self.settings.clone());
        Ok(tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match bus.consume_session(&sub, &mut stop).await {
                    Ok(_) => break,
                    Err(e) => {
                        failures += 1;
                        let wait = Duration::from_millis(100)
                            .saturating_mul(1 << failures.min(8))
                            .min(Duration::from_secs(15));
                        tracing::warn!(consumer = %sub.consumer, error = %e, retry_ms = wait.as_millis() as u64,
                            "Consumer lost the broker; reconnecting.");
                        tokio::select! {
                            () = &mut stop => break,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            tracing::info!(consumer = %sub.consumer, "Consumer stopped.");
        }))
    }

    async fn dead_letters(&self, consumer: &str) -> Result<Vec<DeadLetter>, BusError> {
        self.list_dead_letters(consumer).await
    }

    async fn has_consumer(&self, consumer: &str) -> Result<bool, BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let queue = self.settings.queue(consumer);
        let found = self.settings.queue_exists(&channel, &queue).await;
        let _ = connection.close(200, "looked".into()).await;
        found
    }

    async fn dead_letter_depth(&self, consumer: &str) -> Result<u64, BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let depth = self.settings.dead_letter_depth(&channel, consumer).await;
        let _ = connection.close(200, "counted".into()).await;
        depth
    }

    async fn replay(&self, consumer: &str, id: Option<Uuid>) -> Result<usize, BusError> {
        self.replay_dead_letters(consumer, id).await
    }

    async fn purge(&self, consumer: &str) -> Result<usize, BusError> {
        self.purge_dead_letters(consumer).await
    }
}
