//! Names and declarations: the exchange, each consumer's main queue, its delay
//! queues (one per backoff step) and its dead-letter queue.

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::{RabbitBus, connect, unavailable};
use crate::bus::{BusError, RetryPolicy, Subscription};

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

    /// The number of messages in queue `name`, asked on `channel`
    /// (passively: a queue that is not there is never created; `None`, and
    /// the broker then closes `channel`).
    async fn depth_of(&self, channel: &Channel, name: &str) -> Result<Option<u64>, BusError> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(name.into(), passive, FieldTable::default())
            .await
        {
            Ok(queue) => Ok(Some(u64::from(queue.message_count()))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The depth of `consumer`'s dead-letter queue, asked on `channel`; a
    /// queue that is not there holds no dead letter.
    pub async fn dead_letter_depth(
        &self,
        channel: &Channel,
        consumer: &str,
    ) -> Result<u64, BusError> {
        Ok(self
            .depth_of(channel, &self.dlq(consumer))
            .await?
            .unwrap_or(0))
    }

    /// Whether queue `name` exists, asked on `channel`.
    pub async fn queue_exists(&self, channel: &Channel, name: &str) -> Result<bool, BusError> {
        Ok(self.depth_of(channel, name).await?.is_some())
    }

    pub(super) fn retry_queue(&self, consumer: &str, delay: Duration) -> String {
        format!(
            "{}{consumer}.retry.{}ms",
            self.queue_prefix,
            delay.as_millis()
        )
    }
}

/// The durable topic exchange every event goes through (idempotent).
pub(super) async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BusError> {
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

impl RabbitBus {
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

    /// Deletes a consumer's queues and then the exchange of `settings` from
    /// any context — a `Drop` while a failed test unwinds, no runtime at hand:
    /// a small runtime on a thread of its own does the I/O. Failures are
    /// reported on standard error; nothing here panics. (Tests, so a failing
    /// one leaves nothing behind on the broker; never in a running shop.)
    pub fn remove_blocking(settings: RabbitSettings, consumer: String, retry: RetryPolicy) {
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let exchange = settings.exchange.clone();
                let bus = RabbitBus::new(settings);
                if let Err(e) = bus.delete_queues(&consumer, retry).await {
                    eprintln!("cleanup: the queues of {consumer} were not deleted: {e}");
                }
                if let Err(e) = bus.delete_exchange().await {
                    eprintln!("cleanup: the exchange {exchange} was not deleted: {e}");
                }
            });
        });
        let _ = done.join();
    }

    /// Deletes the exchange (tests; never in a running shop).
    pub async fn delete_exchange(&self) -> Result<(), BusError> {
        let connection = connect(&self.settings.url).await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        channel
            .exchange_delete(
                self.settings.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }
}

/// Whether the broker answered 404 (no such queue or exchange).
fn not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if *e.kind() == lapin::protocol::AMQPErrorKind::Soft(lapin::protocol::AMQPSoftError::NOTFOUND)
    )
}
