//! A consumer's session on one connection: deliveries spread over lanes by
//! subject, each settled through [`crate::settle::settle`]: ack on success,
//! otherwise a confirmed copy to the next delay queue (or the dead-letter
//! queue), then ack.

use futures_util::StreamExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use uuid::Uuid;

use super::publish::{attempt_of, persistent, publish_confirmed, retry_headers};
use super::{RabbitBus, RabbitSettings, SETTLE_TIMEOUT, confirm_channel, connect, unavailable};
use crate::bus::{BusError, DEAD_LETTER_GAUGE_EVERY, Stop, Subscription, gauge_dead_letters};
use crate::settle::{Failure, Settler, settle};

/// The most deliveries one consumer applies side by side.
const MAX_LANES: u16 = 16;

impl RabbitBus {
    /// Consumes until `stop` resolves (`Ok(true)`) or the link fails (`Err`).
    pub(super) async fn consume_session(
        &self,
        sub: &Subscription,
        stop: &mut Stop,
    ) -> Result<bool, BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        self.declare(&channel, sub).await?;
        channel
            .basic_qos(sub.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let forward = confirm_channel(&connection).await?;
        let mut deliveries = channel
            .basic_consume(
                self.settings.queue(&sub.consumer).as_str().into(),
                format!("{}-{}", sub.consumer, Uuid::now_v7().simple()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(consumer = %sub.consumer, "Consuming from RabbitMQ.");

        // Deliveries are handled in lanes: one subject always goes to the same
        // lane, so events about one thing are applied in order, while events
        // about different things are applied side by side.
        let lane_count = usize::from(sub.prefetch.clamp(1, MAX_LANES));
        let (failed_tx, mut failed) = tokio::sync::mpsc::channel::<BusError>(lane_count);
        let mut lanes = Vec::with_capacity(lane_count);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..lane_count {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Delivery>(64);
            lanes.push(tx);
            let (settings, sub, forward, failed_tx) = (
                self.settings.clone(),
                sub.clone(),
                forward.clone(),
                failed_tx.clone(),
            );
            workers.spawn(async move {
                while let Some(delivery) = rx.recv().await {
                    if let Err(e) = handle(&settings, &sub, &forward, &delivery).await {
                        let _ = failed_tx.send(e).await;
                        break;
                    }
                }
            });
        }
        drop(failed_tx);
        // The dead-letter gauge is read on a channel of its own: a failed
        // ask closes only that one, and the next tick opens another.
        let mut probe = None;
        let mut gauge = tokio::time::interval(DEAD_LETTER_GAUGE_EVERY);
        gauge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            let next = tokio::select! {
                () = &mut *stop => break Ok(true),
                Some(e) = failed.recv() => break Err(e),
                _ = gauge.tick() => {
                    if probe.is_none() {
                        probe = connection.create_channel().await.ok();
                    }
                    let depth = match &probe {
                        Some(channel) => self.settings.dead_letter_depth(channel, &sub.consumer).await,
                        None => Err(unavailable("no channel to ask on")),
                    };
                    match depth {
                        Ok(depth) => gauge_dead_letters(&sub.consumer, depth),
                        Err(e) => {
                            probe = None;
                            tracing::debug!(consumer = %sub.consumer, error = %e, "Dead letters not counted.");
                        }
                    }
                    continue;
                }
                next = deliveries.next() => next,
            };
            let delivery = match next {
                None => break Err(unavailable("the consumer was cancelled")),
                Some(Err(e)) => break Err(unavailable(e)),
                Some(Ok(d)) => d,
            };
            let lane = lane_of(&delivery.data, lane_count);
            if lanes[lane].send(delivery).await.is_err() {
                break Err(unavailable("a lane stopped"));
            }
        };
        // Let the lanes finish what they hold (acks need the connection), then
        // close. A lane stuck on a dead link is abandoned: its unacked
        // deliveries come back on the next connection.
        drop(lanes);
        let drained = tokio::time::timeout(SETTLE_TIMEOUT, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            workers.abort_all();
        }
        let _ = connection.close(200, "stopping".into()).await;
        outcome
    }
}

/// Applies one delivery and settles it.
async fn handle(
    settings: &RabbitSettings,
    sub: &Subscription,
    forward: &Channel,
    delivery: &Delivery,
) -> Result<(), BusError> {
    let settler = Delivered {
        settings,
        consumer: &sub.consumer,
        forward,
        delivery,
    };
    let attempt = attempt_of(&delivery.properties);
    settle(sub, attempt, &delivery.data, &settler).await
}

/// One delivery on its lane, settled through the broker. Every way ends with
/// the ack, and a failure's copy is confirmed before it.
struct Delivered<'a> {
    settings: &'a RabbitSettings,
    consumer: &'a str,
    /// A confirm channel on the consuming connection.
    forward: &'a Channel,
    delivery: &'a Delivery,
}

impl Delivered<'_> {
    async fn ack(&self) -> Result<(), BusError> {
        tokio::time::timeout(
            SETTLE_TIMEOUT,
            self.delivery.ack(BasicAckOptions::default()),
        )
        .await
        .map_err(|_| unavailable("the ack was not sent in time"))?
        .map_err(unavailable)?;
        Ok(())
    }

    /// A confirmed copy of the delivery to `queue` (through the default
    /// exchange), then the ack.
    async fn move_to(&self, queue: &str, id: &str, headers: FieldTable) -> Result<(), BusError> {
        publish_confirmed(
            self.forward,
            "",
            queue,
            &self.delivery.data,
            persistent(id, headers),
        )
        .await?;
        self.ack().await
    }
}

#[async_trait::async_trait]
impl<'a> Settler for Delivered<'a> {
    type Error = BusError;
    /// A payload that is not an envelope cannot get better by waiting.
    const DEAD_LETTER_MALFORMED: bool = true;

    async fn done(&self) -> Result<(), BusError> {
        self.ack().await
    }

    async fn retry(&self, failure: &Failure) -> Result<(), BusError> {
        let queue = self.settings.retry_queue(self.consumer, failure.delay);
        let headers = retry_headers(failure.attempt + 1, &failure.error);
        self.move_to(&queue, &failure.id, headers).await
    }

    async fn dead_letter(&self, failure: &Failure) -> Result<(), BusError> {
        let queue = self.settings.dlq(self.consumer);
        let headers = retry_headers(failure.attempt, &failure.error);
        self.move_to(&queue, &failure.id, headers).await
    }
}

/// The lane of a delivery: by its subject, so one subject's events stay in order.
fn lane_of(data: &[u8], lanes: usize) -> usize {
    #[derive(serde::Deserialize)]
    struct Subject<'a> {
        #[serde(borrow)]
        subject: Option<std::borrow::Cow<'a, str>>,
    }
    let subject = serde_json::from_slice::<Subject>(data)
        .ok()
        .and_then(|s| s.subject)
        .unwrap_or_default();
    let hash = subject.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % lanes as u64) as usize
}
