//! The CloudEvents 1.0 JSON envelope every event travels in.

use chrono::{DateTime, Utc};
use emporium_contracts::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/json";

/// A CloudEvents 1.0 event in structured JSON mode, with the W3C trace context
/// as the `traceparent` extension attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// UUIDv7: unique, and ordered by creation time.
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// The aggregate the event is about (a user id, an order id): relays keep
    /// events of one subject in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("expected an event of type {expected}, got {actual}")]
    WrongType {
        expected: &'static str,
        actual: String,
    },
    #[error("the event data does not match its type: {0}")]
    BadData(#[from] serde_json::Error),
}

impl Envelope {
    pub fn new<E: Event>(event: &E, subject: Option<String>, traceparent: Option<String>) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id: Uuid::now_v7(),
            source: E::SOURCE.to_owned(),
            event_type: E::TYPE.to_owned(),
            time: Utc::now(),
            subject,
            datacontenttype: CONTENT_TYPE.to_owned(),
            data: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
            traceparent,
        }
    }

    /// The payload, if this envelope carries an `E`.
    pub fn decode<E: Event>(&self) -> Result<E, EnvelopeError> {
        if self.event_type != E::TYPE {
            return Err(EnvelopeError::WrongType {
                expected: E::TYPE,
                actual: self.event_type.clone(),
            });
        }
        Ok(serde_json::from_value(self.data.clone())?)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use emporium_contracts::accounts::{UserDeleted, UserRegistered};

    use super::*;

    #[test]
    fn round_trips_as_cloudevents_json() {
        let user_id = Uuid::now_v7();
        let event = UserRegistered {
            user_id,
            email: "a@b.co".into(),
            name: "A".into(),
        };
        let env = Envelope::new(&event, Some(user_id.to_string()), Some("00-x".into()));
        let json: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "emporium.accounts.user.registered.v1");
        assert_eq!(json["source"], "/emporium/accounts");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["subject"], user_id.to_string());
        assert_eq!(json["data"]["email"], "a@b.co");
        assert_eq!(json["traceparent"], "00-x");
        assert!(json["time"].as_str().unwrap().ends_with('Z'));
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.decode::<UserRegistered>().unwrap(), event);
        assert!(back.decode::<UserDeleted>().is_err());
    }
}
