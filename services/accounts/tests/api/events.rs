//! What accounts tells other services, through the outbox and the bus.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use emporium_contracts::Event;
use emporium_contracts::accounts::{
    REVOKING_TYPES, SessionRevoked, UserDeleted, UserDisabled, UserProfileUpdated, UserRegistered,
    UserRolesChanged,
};
use emporium_messaging::Envelope;
use emporium_testkit::events::{Recorder, types};
use serde_json::json;
use tokio::sync::watch;

use crate::helpers::{PASSWORD, TestApp, access, jwt_claims, problem, refresh};
use emporium_testkit::both;

/// Listens for every event accounts publishes: registrations, profile
/// changes, and the ones that revoke tokens.
async fn listen(app: &TestApp) -> (Arc<Recorder>, watch::Sender<bool>) {
    let mut event_types = vec![UserRegistered::TYPE, UserProfileUpdated::TYPE];
    event_types.extend(REVOKING_TYPES);
    emporium_testkit::events::listen(&*app.bus, &event_types).await
}

/// The events about `subject`, in order.
fn about<'a>(events: &'a [Envelope], subject: &str) -> Vec<&'a Envelope> {
    events
        .iter()
        .filter(|e| e.subject.as_deref() == Some(subject))
        .collect()
}

/// Waits until `count` events about `subject` have arrived (others, such as
/// the admin's registration at start-up, may or may not be there), and a
/// little longer for any that should not come; returns every event.
async fn wait_for_subject(recorder: &Recorder, subject: &str, count: usize) -> Vec<Envelope> {
    let what = format!("{count} events about {subject}");
    recorder
        .wait_until(Duration::from_secs(20), &what, |seen| {
            about(seen, subject).len() >= count
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    recorder.events()
}

async fn account_changes_are_published_in_order(app: TestApp) {
    let (recorder, _stop) = listen(&app).await;
    let r = app
        .post("/api/v1/auth/register")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&json!({"email": "nora@example.com", "password": PASSWORD, "name": "Nora"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A refused registration changes nothing and tells nobody.
    problem(app.register("nora@example.com", PASSWORD).await, 409).await;
    let pair = app.login_pair("nora@example.com", PASSWORD).await;
    let renamed = json!({"name": "Nora B."});
    let r = app.patch_user(access(&pair), "me", renamed).await;
    assert_eq!(r.status(), 200);
    let id = app.user_id(access(&pair)).await;
    let admin = app.admin_token().await;
    // Disable and re-enable, then the user closes the account.
    for disabled in [true, false] {
        let r = app
            .patch_user(&admin, &id, json!({"disabled": disabled}))
            .await;
        assert_eq!(r.status(), 200);
    }
    let pair = app.login_pair("nora@example.com", PASSWORD).await;
    assert_eq!(app.close_account(access(&pair)).await.status(), 204);

    // Nora's four changes (the admin's registration at start-up may have been
    // relayed before this listener subscribed, so it is not counted on).
    let events = wait_for_subject(&recorder, &id, 4).await;
    let mine = about(&events, &id);
    assert_eq!(
        types(mine.iter().copied()),
        vec![
            UserRegistered::TYPE,
            UserProfileUpdated::TYPE,
            UserDisabled::TYPE,
            UserDeleted::TYPE
        ],
        "exactly these, in this order"
    );
    let registered: UserRegistered = mine[0].decode().unwrap();
    assert_eq!(registered.email, "nora@example.com");
    assert_eq!(registered.name, "Nora");
    assert_eq!(mine[0].source, "/emporium/accounts");
    assert!(
        mine[0]
            .traceparent
            .as_deref()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the event carries the request's trace"
    );
    let renamed: UserProfileUpdated = mine[1].decode().unwrap();
    assert_eq!(renamed.name, "Nora B.");
    let nora_registrations = events
        .iter()
        .filter(|e| e.event_type == UserRegistered::TYPE && e.data["email"] == "nora@example.com")
        .count();
    assert_eq!(
        nora_registrations, 1,
        "the refused second registration published nothing"
    );
}
both!(account_changes_are_published_in_order);

/// What ends tokens elsewhere is announced, with the token generation from
/// which the user's tokens are valid again: new roles, a logout (its session),
/// a password change (every session), disabling and closing.
async fn revocations_are_published_with_the_token_generation(app: TestApp) {
    let (recorder, _stop) = listen(&app).await;
    let pair = app.customer("vera@example.com").await;
    let id = app.user_id(access(&pair)).await;
    let admin = app.admin_token().await;
    // Promoted twice: the same roles again change nothing and announce nothing.
    for _ in 0..2 {
        let r = app
            .patch_user(&admin, &id, json!({"roles": ["customer", "admin"]}))
            .await;
        assert_eq!(r.status(), 200);
    }
    let session = jwt_claims(access(&pair));
    assert_eq!(app.logout(access(&pair)).await.status(), 204);
    let pair = app.login_pair("vera@example.com", PASSWORD).await;
    let r = app
        .change_password(access(&pair), PASSWORD, "a brand new passphrase")
        .await;
    assert_eq!(r.status(), 204);
    let r = app.patch_user(&admin, &id, json!({"disabled": true})).await;
    assert_eq!(r.status(), 200);

    // Vera's five (her registration and four revocations).
    let events = wait_for_subject(&recorder, &id, 5).await;
    let mine: Vec<&Envelope> = about(&events, &id)
        .into_iter()
        .filter(|e| e.event_type != UserRegistered::TYPE)
        .collect();
    assert_eq!(
        types(mine.iter().copied()),
        [
            UserRolesChanged::TYPE,
            SessionRevoked::TYPE,
            SessionRevoked::TYPE,
            UserDisabled::TYPE
        ],
        "{events:?}"
    );
    let promoted: UserRolesChanged = mine[0].decode().unwrap();
    assert_eq!(promoted.roles, ["customer", "admin"]);
    assert_eq!(promoted.token_generation, 1);
    let logout: SessionRevoked = mine[1].decode().unwrap();
    assert_eq!(
        logout.session_id.map(|s| s.to_string()).as_deref(),
        session["sid"].as_str()
    );
    assert_eq!(
        logout.token_generation, None,
        "a logout ends one session only"
    );
    let password: SessionRevoked = mine[2].decode().unwrap();
    assert_eq!(password.session_id, None);
    assert_eq!(password.token_generation, Some(2));
    let disabled: UserDisabled = mine[3].decode().unwrap();
    assert_eq!(disabled.token_generation, Some(3));
}
both!(revocations_are_published_with_the_token_generation);

/// A reused refresh token ends its session everywhere: the revocation of its
/// family is announced, so other services refuse the session's access tokens.
async fn refresh_token_reuse_is_announced(app: TestApp) {
    let (recorder, _stop) = listen(&app).await;
    let pair = app.customer("reused@example.com").await;
    let claims = jwt_claims(access(&pair));
    let old = refresh(&pair);
    assert_eq!(app.refresh_with(old).await.status(), 200);
    problem(app.refresh_with(old).await, 401).await;
    let seen = recorder
        .wait_until(Duration::from_secs(10), "a session.revoked", |seen| {
            seen.iter().any(|e| e.event_type == SessionRevoked::TYPE)
        })
        .await;
    let revoked: Vec<SessionRevoked> = seen
        .iter()
        .filter(|e| e.event_type == SessionRevoked::TYPE)
        .map(|e| e.decode().unwrap())
        .collect();
    assert_eq!(
        revoked[0].session_id.map(|s| s.to_string()).as_deref(),
        claims["sid"].as_str()
    );
}
both!(refresh_token_reuse_is_announced);
