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

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::bus::{Bus, BusError, DeadLetter, OutgoingEvent, RetryPolicy, Stop, Subscription};
use crate::envelope::Envelope;

const ATTEMPT_HEADER: &str = "x-emporium-attempt";
const ERROR_HEADER: &str = "x-emporium-last-error";
const CONTENT_TYPE: &str = "application/cloudevents+json";
/// The most deliveries one consumer applies side by side.
const MAX_LANES: u16 = 16;
/// How long an ack or a publisher confirm may take before the link is taken for dead.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RabbitSettings {
    /// `amqp://user:pass@host:5672/%2f` (or `amqps://`).
    pub url: String,
    /// The topic exchange every event is published to.
    pub exchange: String,
    /// Queue names are `<prefix><consumer>`, `….retry.<ms>`, `….dlq`.
    pub queue_prefix: String,
}

impl RabbitSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            exchange: "emporium.events".into(),
            queue_prefix: "emporium.".into(),
        }
    }

    pub fn queue(&self, consumer: &str) -> String {
        format!("{}{consumer}", self.queue_prefix)
    }

    pub fn dlq(&self, consumer: &str) -> String {
        format!("{}{consumer}.dlq", self.queue_prefix)
    }

    fn retry_queue(&self, consumer: &str, delay: Duration) -> String {
        format!(
            "{}{consumer}.retry.{}ms",
            self.queue_prefix,
            delay.as_millis()
        )
    }
}

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

/// The durable topic exchange every event goes through (idempotent).
async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BusError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

fn persistent(id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(id.into())
        .with_headers(headers)
}

fn header<'a>(props: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    props
        .headers()
        .as_ref()?
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

fn attempt_of(props: &BasicProperties) -> u32 {
    match header(props, ATTEMPT_HEADER) {
        Some(AMQPValue::LongInt(n)) => (*n).max(1) as u32,
        Some(AMQPValue::LongLongInt(n)) => (*n).max(1) as u32,
        Some(AMQPValue::ShortInt(n)) => (*n).max(1) as u32,
        _ => 1,
    }
}

fn text_header(props: &BasicProperties, name: &str) -> String {
    match header(props, name) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
        _ => String::new(),
    }
}

fn retry_headers(attempt: u32, error: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongInt(attempt as i32));
    // Long errors are cut: a header is not a log.
    let error: String = error.chars().take(2000).collect();
    headers.insert(
        ERROR_HEADER.into(),
        AMQPValue::LongString(error.as_str().into()),
    );
    headers
}

/// Publishes one message on a confirm channel and waits for the broker's ack.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    props: BasicProperties,
) -> Result<(), BusError> {
    let pending = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            payload,
            props,
        )
        .await
        .map_err(unavailable)?;
    let confirm = tokio::time::timeout(SETTLE_TIMEOUT, pending)
        .await
        .map_err(|_| unavailable("no publisher confirm in time"))?
        .map_err(unavailable)?;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(BusError::Nacked)
    }
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

    /// Declares the exchange and a consumer's queues and bindings (idempotent).
    pub async fn declare(&self, channel: &Channel, sub: &Subscription) -> Result<(), BusError> {
        let s = &self.settings;
        declare_exchange(channel, &s.exchange).await?;
        let main = s.queue(&sub.consumer);
        channel
            .queue_declare(main.as_str().into(), durable(), quorum())
            .await
            .map_err(unavailable)?;
        for event_type in &sub.event_types {
            channel
                .queue_bind(
                    main.as_str().into(),
                    s.exchange.as_str().into(),
                    event_type.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        for attempt in 1..sub.retry.max_attempts {
            let delay = sub.retry.delay_after(attempt);
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(main.as_str().into()),
            );
            channel
                .queue_declare(
                    s.retry_queue(&sub.consumer, delay).as_str().into(),
                    durable(),
                    args,
                )
                .await
                .map_err(unavailable)?;
        }
        channel
            .queue_declare(s.dlq(&sub.consumer).as_str().into(), durable(), quorum())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Deletes a consumer's queues (tests and decommissioning).
    pub async fn delete_queues(&self, consumer: &str, retry: RetryPolicy) -> Result<(), BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let mut names = vec![self.settings.queue(consumer), self.settings.dlq(consumer)];
        for attempt in 1..retry.max_attempts {
            names.push(
                self.settings
                    .retry_queue(consumer, retry.delay_after(attempt)),
            );
        }
        for name in names {
            let _ = channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    /// Deletes the exchange (tests; never in a running shop).
    pub async fn delete_exchange(&self) -> Result<(), BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        channel
            .exchange_delete(
                self.settings.exchange.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    async fn consume_session(&self, sub: &Subscription, stop: &mut Stop) -> Result<bool, BusError> {
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
            let (tx, mut rx) = tokio::sync::mpsc::channel::<lapin::message::Delivery>(64);
            lanes.push(tx);
            let (settings, sub, forward, failed_tx) = (
                self.settings.clone(),
                sub.clone(),
                forward.clone(),
                failed_tx.clone(),
            );
            workers.spawn(async move {
                while let Some(delivery) = rx.recv().await {
                    if let Err(e) = handle(&settings, &sub, &forward, delivery).await {
                        let _ = failed_tx.send(e).await;
                        break;
                    }
                }
            });
        }
        drop(failed_tx);
        let outcome = loop {
            let next = tokio::select! {
                () = &mut *stop => break Ok(true),
                Some(e) = failed.recv() => break Err(e),
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

    /// Takes every message of a queue without acking, for inspection or replay;
    /// the caller acks or requeues them.
    async fn drain(
        channel: &Channel,
        queue: &str,
    ) -> Result<Vec<lapin::message::Delivery>, BusError> {
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
}

async fn requeue_rest(
    channel: &Channel,
    rest: &[lapin::message::Delivery],
) -> Result<(), BusError> {
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

#[async_trait::async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, batch: &[OutgoingEvent]) -> Result<(), BusError> {
        let mut guard = self.publisher.lock().await;
        let usable = guard
            .as_ref()
            .is_some_and(|p| p.channel.status().connected());
        if !usable {
            let connection = connect(&self.settings.url).await?;
            let channel = confirm_channel(&connection).await?;
            declare_exchange(&channel, &self.settings.exchange).await?;
            *guard = Some(Publisher {
                _connection: connection,
                channel,
            });
        }
        let Some(publisher) = guard.as_ref() else {
            return Err(unavailable("no channel"));
        };
        // Publish the whole batch, then wait for every confirm: one round trip's
        // worth of latency for the batch, not one per message.
        let mut confirms = Vec::with_capacity(batch.len());
        let mut failure = None;
        for event in batch {
            let sent = publisher
                .channel
                .basic_publish(
                    self.settings.exchange.as_str().into(),
                    event.event_type.as_str().into(),
                    BasicPublishOptions::default(),
                    event.envelope.as_bytes(),
                    persistent(&event.id.to_string(), FieldTable::default()),
                )
                .await;
            match sent {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    failure = Some(unavailable(e));
                    break;
                }
            }
        }
        for confirm in confirms {
            match tokio::time::timeout(SETTLE_TIMEOUT, confirm).await {
                Ok(Ok(c)) if c.is_ack() => {}
                Ok(Ok(_)) => failure = failure.or(Some(BusError::Nacked)),
                Ok(Err(e)) => failure = failure.or(Some(unavailable(e))),
                Err(_) => failure = failure.or(Some(unavailable("no publisher confirm in time"))),
            }
        }
        match failure {
            None => Ok(()),
            Some(e) => {
                *guard = None;
                Err(e)
            }
        }
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
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let taken = Self::drain(&channel, &self.settings.dlq(consumer)).await?;
        let letters = taken.iter().map(dead_letter).collect();
        requeue_rest(&channel, &taken).await?;
        let _ = connection.close(200, "listed".into()).await;
        Ok(letters)
    }

    async fn replay(&self, consumer: &str, id: Option<Uuid>) -> Result<usize, BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let forward = confirm_channel(&connection).await?;
        let taken = Self::drain(&channel, &self.settings.dlq(consumer)).await?;
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

    async fn purge(&self, consumer: &str) -> Result<usize, BusError> {
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

fn dead_letter(delivery: &lapin::message::Delivery) -> DeadLetter {
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

/// Applies one delivery and settles it: ack on success; otherwise a confirmed
/// copy to the next delay queue (or the dead-letter queue), then ack.
async fn handle(
    settings: &RabbitSettings,
    sub: &Subscription,
    forward: &Channel,
    delivery: lapin::message::Delivery,
) -> Result<(), BusError> {
    let attempt = attempt_of(&delivery.properties);
    let envelope: Result<Envelope, _> = serde_json::from_slice(&delivery.data);
    let (event_type, id, outcome) = match envelope {
        Ok(env) => (
            env.event_type.clone(),
            env.id.to_string(),
            sub.handler.handle(&env).await.map_err(|e| e.0),
        ),
        Err(e) => (
            "malformed".to_owned(),
            String::new(),
            Err(format!("malformed envelope: {e}")),
        ),
    };
    let labels = [("consumer", sub.consumer.clone()), ("type", event_type)];
    match outcome {
        Ok(()) => metrics::counter!("events_consumed_total", &labels).increment(1),
        Err(error) => {
            metrics::counter!("events_failed_total", &labels).increment(1);
            let malformed = id.is_empty();
            let (queue, headers) = if attempt < sub.retry.max_attempts && !malformed {
                metrics::counter!("events_retried_total", &labels).increment(1);
                let delay = sub.retry.delay_after(attempt);
                (
                    settings.retry_queue(&sub.consumer, delay),
                    retry_headers(attempt + 1, &error),
                )
            } else {
                metrics::counter!("events_dead_lettered_total", &labels).increment(1);
                tracing::warn!(consumer = %sub.consumer, %error, attempt, "Event dead-lettered.");
                (settings.dlq(&sub.consumer), retry_headers(attempt, &error))
            };
            publish_confirmed(
                forward,
                "",
                &queue,
                &delivery.data,
                persistent(&id, headers),
            )
            .await?;
        }
    }
    tokio::time::timeout(SETTLE_TIMEOUT, delivery.ack(BasicAckOptions::default()))
        .await
        .map_err(|_| unavailable("the ack was not sent in time"))?
        .map_err(unavailable)?;
    Ok(())
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
