//! The events accounts publishes. Each is written to the outbox in the
//! transaction of the change it reports, with the user id as subject and the
//! request's trace context, and relayed to the bus.

use emporium_contracts::accounts::{
    SessionRevoked, UserDeleted, UserDisabled, UserProfileUpdated, UserRegistered, UserRolesChanged,
};
use emporium_http::RequestContext;
use emporium_messaging::Envelope;
use uuid::Uuid;

/// The trace context to carry into events caused by this request.
pub fn trace_of(ctx: Option<&RequestContext>) -> Option<String> {
    ctx.map(|c| c.trace.header_value())
}

pub fn registered(user_id: Uuid, email: &str, name: &str, trace: Option<String>) -> Envelope {
    let event = UserRegistered {
        user_id,
        email: email.to_owned(),
        name: name.to_owned(),
    };
    Envelope::new(&event, Some(user_id.to_string()), trace)
}

pub fn profile_updated(user_id: Uuid, name: &str, trace: Option<String>) -> Envelope {
    let event = UserProfileUpdated {
        user_id,
        name: name.to_owned(),
    };
    Envelope::new(&event, Some(user_id.to_string()), trace)
}

/// The account was disabled; tokens below `generation` are void.
pub fn disabled(user_id: Uuid, generation: i64, trace: Option<String>) -> Envelope {
    let event = UserDisabled {
        user_id,
        token_generation: Some(generation),
    };
    Envelope::new(&event, Some(user_id.to_string()), trace)
}

/// The account was closed; tokens below `generation` are void.
pub fn deleted(user_id: Uuid, generation: i64, trace: Option<String>) -> Envelope {
    let event = UserDeleted {
        user_id,
        token_generation: Some(generation),
    };
    Envelope::new(&event, Some(user_id.to_string()), trace)
}

/// New roles; tokens below `generation` carry the old ones and are void.
pub fn roles_changed(
    user_id: Uuid,
    roles: &str,
    generation: i64,
    trace: Option<String>,
) -> Envelope {
    let event = UserRolesChanged {
        user_id,
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        token_generation: generation,
    };
    Envelope::new(&event, Some(user_id.to_string()), trace)
}

/// One session ended (a logout), or every session of the user: tokens below
/// `generation` are void (a password change).
pub fn session_revoked(
    user_id: Uuid,
    session_id: Option<Uuid>,
    generation: Option<i64>,
    trace: Option<String>,
) -> Envelope {
    let event = SessionRevoked {
        user_id,
        session_id,
        token_generation: generation,
    };
    Envelope::new(&event, Some(user_id.to_string()), trace)
}
