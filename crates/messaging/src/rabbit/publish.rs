//! Publishing with confirms: persistent messages, their attempt and error
//! headers, one message at a time (forwarding a delivery) or a whole batch
//! (the relay's events).

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use super::topology::declare_exchange;
use super::{Publisher, RabbitBus, SETTLE_TIMEOUT, confirm_channel, connect, unavailable};
use crate::bus::{BusError, OutgoingEvent};

const ATTEMPT_HEADER: &str = "x-emporium-attempt";
pub(super) const ERROR_HEADER: &str = "x-emporium-last-error";
const CONTENT_TYPE: &str = "application/cloudevents+json";

pub(super) fn persistent(id: &str, headers: FieldTable) -> BasicProperties {
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

/// The attempt a delivery is (1-based): 1 unless a retry copy says otherwise.
pub(super) fn attempt_of(props: &BasicProperties) -> u32 {
    match header(props, ATTEMPT_HEADER) {
        Some(AMQPValue::LongInt(n)) => (*n).max(1) as u32,
        Some(AMQPValue::LongLongInt(n)) => (*n).max(1) as u32,
        Some(AMQPValue::ShortInt(n)) => (*n).max(1) as u32,
        _ => 1,
    }
}

pub(super) fn text_header(props: &BasicProperties, name: &str) -> String {
    match header(props, name) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
        _ => String::new(),
    }
}

pub(super) fn retry_headers(attempt: u32, error: &str) -> FieldTable {
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
pub(super) async fn publish_confirmed(
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
    /// [`crate::Bus::publish`]: the batch on the kept confirm channel (opened
    /// again if it is gone), then every confirm awaited.
    pub(super) async fn publish_batch(&self, batch: &[OutgoingEvent]) -> Result<(), BusError> {
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
}
