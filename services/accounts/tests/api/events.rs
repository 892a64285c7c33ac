//! What accounts tells other services, through the outbox and the bus.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emporium_contracts::Event;
use emporium_contracts::accounts::{
    SessionRevoked, UserDeleted, UserDisabled, UserProfileUpdated, UserRegistered, UserRolesChanged,
};
use emporium_messaging::{Bus, Envelope, EventHandler, HandlerError, RetryPolicy, Subscription};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{PASSWORD, TestApp, access, problem};
use emporium_testkit::both;

/// Records every event it is handed.
#[derive(Default)]
struct Recorder(Mutex<Vec<Envelope>>);

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

async fn listen(app: &TestApp) -> (Arc<Recorder>, watch::Sender<bool>) {
    let recorder = Arc::new(Recorder::default());
    let (tx, mut rx) = watch::channel(false);
    app.bus
        .subscribe(
            Subscription {
                consumer: "listener".into(),
                event_types: [
                    UserRegistered::TYPE,
                    UserProfileUpdated::TYPE,
                    UserDisabled::TYPE,
                    UserDeleted::TYPE,
                    UserRolesChanged::TYPE,
                    SessionRevoked::TYPE,
                ]
                .map(str::to_owned)
                .to_vec(),
                handler: recorder.clone(),
                retry: RetryPolicy::default(),
                prefetch: 16,
            },
            Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
        )
        .await
        .unwrap();
    (recorder, tx)
}

/// Waits until `count` events about `subject` have arrived (others, such as
/// the admin's registration at start-up, may or may not be there).
async fn wait_for_subject(recorder: &Recorder, subject: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.subject.as_deref() == Some(subject))
            .count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {count} events about {subject}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let pair: Value = app
        .login("nora@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    app.patch("/api/v1/users/me")
        .bearer_auth(access(&pair))
        .json(&json!({"name": "Nora B."}))
        .send()
        .await
        .unwrap();
    let me: Value = app
        .get("/api/v1/users/me")
        .bearer_auth(access(&pair))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = me["id"].as_str().unwrap().to_owned();
    let admin = app.admin_token().await;
    let r = app
        .patch(&format!("/api/v1/users/{id}"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Re-enable, then the user closes the account.
    app.patch(&format!("/api/v1/users/{id}"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    let pair: Value = app
        .login("nora@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.delete("/api/v1/users/me")
            .bearer_auth(access(&pair))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // Nora's four changes (the admin's registration at start-up may have been
    // relayed before this listener subscribed, so it is not counted on).
    wait_for_subject(&recorder, &id, 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events: Vec<Envelope> = recorder.0.lock().unwrap().clone();
    let mine: Vec<&Envelope> = events
        .iter()
        .filter(|e| e.subject.as_deref() == Some(id.as_str()))
        .collect();
    let types: Vec<&str> = mine.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
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
    let me: Value = app
        .get("/api/v1/users/me")
        .bearer_auth(access(&pair))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = me["id"].as_str().unwrap().to_owned();
    let admin = app.admin_token().await;
    let patch = |body: Value| {
        app.patch(&format!("/api/v1/users/{id}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    assert_eq!(
        patch(json!({"roles": ["customer", "admin"]}))
            .await
            .unwrap()
            .status(),
        200
    );
    // The same roles again change nothing and announce nothing.
    assert_eq!(
        patch(json!({"roles": ["customer", "admin"]}))
            .await
            .unwrap()
            .status(),
        200
    );
    let session: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            access(&pair).split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let r = app
        .post("/api/v1/auth/logout")
        .bearer_auth(access(&pair))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let pair: Value = app
        .login("vera@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .put("/api/v1/users/me/password")
        .bearer_auth(access(&pair))
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        patch(json!({"disabled": true})).await.unwrap().status(),
        200
    );

    // Vera's five (her registration and four revocations).
    wait_for_subject(&recorder, &id, 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events: Vec<Envelope> = recorder.0.lock().unwrap().clone();
    let mine: Vec<&Envelope> = events
        .iter()
        .filter(|e| {
            e.subject.as_deref() == Some(id.as_str()) && e.event_type != UserRegistered::TYPE
        })
        .collect();
    let types: Vec<&str> = mine.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
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
    let payload = access(&pair).split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let old = pair["refresh_token"].as_str().unwrap();
    assert_eq!(app.refresh_with(old).await.status(), 200);
    problem(app.refresh_with(old).await, 401).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = recorder.0.lock().unwrap().clone();
        let revoked: Vec<SessionRevoked> = seen
            .iter()
            .filter(|e| e.event_type == SessionRevoked::TYPE)
            .map(|e| e.decode().unwrap())
            .collect();
        if let Some(r) = revoked.first() {
            assert_eq!(
                r.session_id.map(|s| s.to_string()).as_deref(),
                claims["sid"].as_str()
            );
            break;
        }
        assert!(Instant::now() < deadline, "no session.revoked: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
both!(refresh_token_reuse_is_announced);
