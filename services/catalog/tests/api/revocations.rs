//! Tokens of users demoted, disabled or deleted, and of ended sessions, are
//! refused within seconds once accounts' event arrives, not at expiry.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use emporium_contracts::accounts::{SessionRevoked, UserDisabled, UserRolesChanged};
use emporium_messaging::Bus;
use emporium_messaging::Envelope;
use emporium_messaging::bus::OutgoingEvent;
use uuid::Uuid;

use crate::helpers::{TestApp, problem};
use emporium_testkit::both;

async fn publish(app: &TestApp, envelope: Envelope) {
    app.bus
        .publish(&[OutgoingEvent {
            id: envelope.id,
            event_type: envelope.event_type.clone(),
            envelope: envelope.to_json(),
        }])
        .await
        .unwrap();
}

/// `GET /api/v1/warehouses` (an admin route) with `token`.
async fn warehouses(app: &TestApp, token: &str) -> reqwest::Response {
    app.get("/api/v1/warehouses")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn status_of(app: &TestApp, token: &str) -> u16 {
    warehouses(app, token).await.status().as_u16()
}

/// Polls until the admin route answers `want`, for at most five seconds.
async fn answers_within(app: &TestApp, token: &str, want: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if status_of(app, token).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn a_demoted_admin_is_refused_within_seconds(app: TestApp) {
    assert_eq!(status_of(&app, &app.admin).await, 200);
    let admin: Uuid = "01900000-0000-7000-8000-00000000000a".parse().unwrap();
    let event = UserRolesChanged {
        user_id: admin,
        roles: vec!["customer".into()],
        token_generation: 1,
    };
    publish(&app, Envelope::new(&event, Some(admin.to_string()), None)).await;
    assert!(
        answers_within(&app, &app.admin, 401).await,
        "the old token still works"
    );
    // A token issued after the change (of its generation) is the user's again.
    let renewed = crate::helpers::token_of_generation(admin, true, 1);
    assert_eq!(status_of(&app, &renewed).await, 200);
}
both!(a_demoted_admin_is_refused_within_seconds);

async fn an_ended_session_is_refused_within_seconds(app: TestApp) {
    let user: Uuid = "01900000-0000-7000-8000-00000000000b".parse().unwrap();
    let session = Uuid::now_v7();
    let token = crate::helpers::token_with_session(user, session);
    // A valid customer's token: refused on an admin route for its role (403).
    assert_eq!(status_of(&app, &token).await, 403);
    let event = SessionRevoked {
        user_id: user,
        session_id: Some(session),
        token_generation: None,
    };
    publish(&app, Envelope::new(&event, Some(user.to_string()), None)).await;
    // A customer is refused on an admin route either way (403); once the
    // session is revoked the token itself is refused (401).
    assert!(answers_within(&app, &token, 401).await);
    // Another session of the same user is untouched.
    let other = crate::helpers::token_with_session(user, Uuid::now_v7());
    assert_eq!(status_of(&app, &other).await, 403);
}
both!(an_ended_session_is_refused_within_seconds);

/// A disabled user's token is refused with the one 401 every bad credential
/// gets: a problem saying no more than that, and the Bearer challenge.
async fn a_disabled_users_token_gets_a_401_problem(app: TestApp) {
    assert_eq!(status_of(&app, &app.admin).await, 200);
    let admin: Uuid = "01900000-0000-7000-8000-00000000000a".parse().unwrap();
    let event = UserDisabled {
        user_id: admin,
        token_generation: Some(1),
    };
    publish(&app, Envelope::new(&event, Some(admin.to_string()), None)).await;
    assert!(
        answers_within(&app, &app.admin, 401).await,
        "the disabled user's token still works"
    );
    let r = warehouses(&app, &app.admin).await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body = problem(r, 401).await;
    assert_eq!(body["type"], "/problems/unauthorized");
    assert_eq!(body["title"], "Missing or invalid credentials.");
    assert_eq!(body["status"], 401);
    assert_eq!(body["detail"], "The token is invalid or expired.");
    // Another user's token is untouched (a customer on an admin route: 403).
    assert_eq!(status_of(&app, &app.customer).await, 403);
}
both!(a_disabled_users_token_gets_a_401_problem);
