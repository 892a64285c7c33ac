//! A consumer's dead-letter queue: listing (take every message, requeue them
//! all), replaying (a confirmed fresh copy to the main queue, then ack) and
//! purging.

use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use uuid::Uuid;

use super::publish::{ERROR_HEADER, attempt_of, persistent, publish_confirmed, text_header};
use super::{RabbitBus, confirm_channel, connect, unavailable};
use crate::bus::{BusError, DeadLetter};

impl RabbitBus {
    /// [`crate::Bus::dead_letters`].
    pub(super) async fn list_dead_letters(
        &self,
        consumer: &str,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let taken = drain(&channel, &self.settings.dlq(consumer)).await?;
        let letters = taken.iter().map(dead_letter).collect();
        requeue_rest(&channel, &taken).await?;
        let _ = connection.close(200, "listed".into()).await;
        Ok(letters)
    }

    /// [`crate::Bus::replay`].
    pub(super) async fn replay_dead_letters(
        &self,
        consumer: &str,
        id: Option<Uuid>,
    ) -> Result<usize, BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let forward = confirm_channel(&connection).await?;
        let taken = drain(&channel, &self.settings.dlq(consumer)).await?;
        let main = self.settings.queue(consumer);
        let mut replayed = 0;
        let mut rest = Vec::new();
        for delivery in taken {
            let letter = dead_letter(&delivery);
            if id.is_none_or(|wanted| wanted == letter.id) {
                // A fresh start: no attempt header, so the first retry is attempt 2 again.
                publish_confirmed(
                    &forward,
                    "",
                    &main,
                    &delivery.data,
                    persistent(&letter.id.to_string(), FieldTable::default()),
                )
                .await?;
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(unavailable)?;
                replayed += 1;
            } else {
                rest.push(delivery);
            }
        }
        requeue_rest(&channel, &rest).await?;
        let _ = connection.close(200, "replayed".into()).await;
        Ok(replayed)
    }

    /// [`crate::Bus::purge`].
    pub(super) async fn purge_dead_letters(&self, consumer: &str) -> Result<usize, BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let purged = channel
            .queue_purge(
                self.settings.dlq(consumer).as_str().into(),
                QueuePurgeOptions::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = connection.close(200, "purged".into()).await;
        Ok(purged as usize)
    }
}

/// Takes every message of a queue without acking, for inspection or replay;
/// the caller acks or requeues them.
async fn drain(channel: &Channel, queue: &str) -> Result<Vec<Delivery>, BusError> {
    let mut taken = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(unavailable)?
    {
        taken.push(message.delivery);
        if taken.len() >= 100_000 {
            break;
        }
    }
    Ok(taken)
}

async fn requeue_rest(channel: &Channel, rest: &[Delivery]) -> Result<(), BusError> {
    if let Some(last) = rest.iter().map(|d| d.delivery_tag).max() {
        channel
            .basic_nack(
                last,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

fn dead_letter(delivery: &Delivery) -> DeadLetter {
    let envelope: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&delivery.data).into_owned())
    });
    let id = envelope
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_default();
    let event_type = envelope
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or("malformed")
        .to_owned();
    DeadLetter {
        id,
        event_type,
        attempts: attempt_of(&delivery.properties),
        last_error: text_header(&delivery.properties, ERROR_HEADER),
        envelope,
    }
}
