//! Feeds a service's token deny list from accounts' events, so a disabled,
//! deleted or demoted user, or an ended session, is refused within seconds.

use std::sync::Arc;

use emporium_auth::Verifier;
use emporium_contracts::accounts::{
    REVOKING_TYPES, SessionRevoked, UserDeleted, UserDisabled, UserRolesChanged,
};

use crate::bus::{EventHandler, HandlerError, RetryPolicy, Subscription};
use crate::envelope::Envelope;

/// Applies revoking events to the verifier's deny list. In memory, so
/// redeliveries are harmless without an inbox.
pub struct RevocationFeed {
    pub verifier: Arc<Verifier>,
}

impl RevocationFeed {
    /// The subscription `<service>.revocations` for these events.
    pub fn subscription(service: &str, verifier: Arc<Verifier>) -> Subscription {
        Subscription {
            consumer: format!("{service}.revocations"),
            event_types: REVOKING_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            handler: Arc::new(Self { verifier }),
            retry: RetryPolicy::default(),
            prefetch: 64,
        }
    }
}

#[async_trait::async_trait]
impl EventHandler for RevocationFeed {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let at = event.time.timestamp();
        let deny = &self.verifier.revocations;
        // Without a generation (an event from before they existed) every
        // token of the user is void.
        let every = i64::MAX;
        let subject = |user: uuid::Uuid, generation: Option<i64>| {
            deny.revoke_subject(&user.to_string(), generation.unwrap_or(every), at);
        };
        let decoded = if let Ok(e) = event.decode::<UserDisabled>() {
            subject(e.user_id, e.token_generation);
            Ok(())
        } else if let Ok(e) = event.decode::<UserDeleted>() {
            subject(e.user_id, e.token_generation);
            Ok(())
        } else if let Ok(e) = event.decode::<UserRolesChanged>() {
            subject(e.user_id, Some(e.token_generation));
            Ok(())
        } else {
            event.decode::<SessionRevoked>().map(|e| {
                if let Some(sid) = e.session_id {
                    deny.revoke_session(&sid.to_string(), at);
                }
                if e.token_generation.is_some() {
                    subject(e.user_id, e.token_generation);
                }
            })
        };
        deny.forget_expired(chrono::Utc::now().timestamp());
        metrics::counter!("auth_revocations_applied_total").increment(1);
        decoded.map_err(HandlerError::new)
    }
}
