#![allow(clippy::unwrap_used)]

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, access, problem, refresh};
use emporium_testkit::{both, count_of, statuses_at_once};

async fn register_returns_the_user_without_secrets(app: TestApp) {
    let r = app.register("Ada@Example.com", PASSWORD).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Test Person");
    assert_eq!(user["roles"], json!(["customer"]));
    assert_eq!(
        location,
        format!("/api/v1/users/{}", user["id"].as_str().unwrap())
    );
    let text = user.to_string();
    assert!(!text.contains("password") && !text.contains("argon2"));
}
both!(register_returns_the_user_without_secrets);

async fn duplicate_email_is_a_conflict(app: TestApp) {
    assert_eq!(
        app.register("bob@example.com", PASSWORD).await.status(),
        201
    );
    let body = problem(app.register("BOB@example.com ", PASSWORD).await, 409).await;
    assert_eq!(body["type"], "/problems/email-taken");
}
both!(duplicate_email_is_a_conflict);

async fn concurrent_registrations_of_one_email_create_one_account(app: TestApp) {
    let attempts = (0..20).map(|_| app.register("race@example.com", PASSWORD));
    let statuses = statuses_at_once(attempts).await;
    assert_eq!(count_of(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count_of(&statuses, 409), 19, "{statuses:?}");
    let admin = app.admin_token().await;
    let users = app.get_json("/api/v1/users?limit=100", &admin).await;
    let same = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["email"] == "race@example.com")
        .count();
    assert_eq!(same, 1);
}
both!(concurrent_registrations_of_one_email_create_one_account);

async fn weak_passwords_are_refused_with_reasons(app: TestApp) {
    for (password, message) in [
        ("short", "must be at least 12 characters"),
        ("1q2w3e4r5t6y", "is too common; choose another"),
    ] {
        let body = problem(app.register("weak@example.com", password).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "password");
        assert_eq!(body["errors"][0]["message"], message);
    }
    let long = "x".repeat(129);
    problem(app.register("weak@example.com", &long).await, 422).await;
    // No composition rules: a long phrase of lower-case words is fine.
    assert_eq!(
        app.register("weak@example.com", "purple monkey dishwasher")
            .await
            .status(),
        201
    );
}
both!(weak_passwords_are_refused_with_reasons);

async fn login_gives_a_bearer_pair(app: TestApp) {
    let pair = app.customer("carol@example.com").await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let me = app.me(access(&pair)).await;
    assert_eq!(me["email"], "carol@example.com");
}
both!(login_gives_a_bearer_pair);

async fn unknown_email_and_wrong_password_look_the_same(app: TestApp) {
    app.customer("dave@example.com").await;
    let wrong = app
        .login("dave@example.com", "not the password at all")
        .await;
    let unknown = app
        .login("nobody@example.com", "not the password at all")
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    assert_eq!(unknown.headers()["www-authenticate"], "Bearer");
    let a: Value = wrong.json().await.unwrap();
    let b: Value = unknown.json().await.unwrap();
    assert_eq!(a, b);
}
both!(unknown_email_and_wrong_password_look_the_same);

async fn failed_logins_are_throttled_per_account(app: TestApp) {
    app.customer("erin@example.com").await;
    // Past the limit (5) the account is slowed: one more attempt per interval
    // is evaluated, and the next waits for the interval, even the right password.
    for address in [
        "10.1.0.0",
        "10.1.0.1",
        "10.1.0.2",
        "10.1.0.3",
        "10.1.0.4",
        "10.1.0.98",
    ] {
        let r = app
            .login_from(address, "erin@example.com", "wrong wrong wrong")
            .await;
        assert_eq!(r.status(), 401, "{address}");
    }
    let r = app
        .login_from("10.1.0.99", "erin@example.com", PASSWORD)
        .await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    problem(r, 429).await;
}
both!(failed_logins_are_throttled_per_account, |s| s
    .login
    .max_failures_per_account =
    5);

async fn failed_logins_are_throttled_per_address(app: TestApp) {
    let wrong = "wrong wrong wrong";
    for i in 0..5 {
        let email = format!("spray{i}@example.com");
        let r = app.login_from("10.2.0.1", &email, wrong).await;
        assert_eq!(r.status(), 401);
    }
    let r = app
        .login_from("10.2.0.1", "spray-next@example.com", wrong)
        .await;
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429).await;
    // Another address is not affected.
    let r = app
        .login_from("10.2.0.2", "spray-next@example.com", wrong)
        .await;
    assert_eq!(r.status(), 401);
    // The window is the service's time: once it has passed, the address is
    // heard again (the clock is moved, not waited for).
    app.clock.advance(std::time::Duration::from_secs(901));
    let r = app
        .login_from("10.2.0.1", "spray-later@example.com", wrong)
        .await;
    assert_eq!(r.status(), 401, "evaluated again after the window");
}
// Lowered from 30 to see the per-address limit work.
both!(failed_logins_are_throttled_per_address, |s| s
    .login
    .max_failures_per_address =
    5);

async fn refresh_rotates_and_reuse_revokes_the_family(app: TestApp) {
    let first = app.customer("frank@example.com").await;
    let r = app.refresh_with(refresh(&first)).await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    assert_ne!(refresh(&second), refresh(&first));
    // The new access token works.
    let me = app.get_with("/api/v1/users/me", access(&second)).await;
    assert_eq!(me.status(), 200);
    // The old refresh token is spent; presenting it revokes the family...
    problem(app.refresh_with(refresh(&first)).await, 401).await;
    // ...so the current one is dead too.
    problem(app.refresh_with(refresh(&second)).await, 401).await;
    // A new login starts a new family that works.
    let third = app.login_pair("frank@example.com", PASSWORD).await;
    assert_eq!(app.refresh_with(refresh(&third)).await.status(), 200);
}
both!(refresh_rotates_and_reuse_revokes_the_family);

/// Eight uses of one refresh token at once: exactly one rotates it. The
/// others are reuses of a spent token (the first of them revokes the family,
/// the rest find it revoked), so all seven get the same 401 problem, and the
/// winner's new pair dies with its family: its refresh token and its access
/// token are refused. Only a new login gets back in.
async fn racing_refreshes_let_exactly_one_through(app: TestApp) {
    let pair = app.customer("grace@example.com").await;
    let token = refresh(&pair).to_owned();
    let responses = join_all((0..8).map(|_| app.refresh_with(&token))).await;
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for r in responses {
        match r.status().as_u16() {
            200 => winners.push(r.json::<Value>().await.unwrap()),
            401 => {
                assert_eq!(r.headers()["www-authenticate"], "Bearer");
                losers.push(problem(r, 401).await);
            }
            other => panic!("a racing refresh answered {other}"),
        }
    }
    assert_eq!((winners.len(), losers.len()), (1, 7));
    for body in &losers {
        assert_eq!(
            body,
            &json!({
                "type": "/problems/unauthorized",
                "title": "Missing or invalid credentials.",
                "status": 401,
                "detail": "The refresh token is invalid."
            })
        );
    }
    let winner = &winners[0];
    assert_eq!(winner["token_type"], "Bearer");
    assert_ne!(refresh(winner), token);

    // The family is revoked: the winner's new refresh token is refused (and
    // is no reuse: it was never used)...
    let body = problem(app.refresh_with(refresh(winner)).await, 401).await;
    assert_eq!(body["detail"], "The refresh token is invalid.");
    // ...and so is its new access token, like the first login's.
    for access_token in [access(winner), access(&pair)] {
        let body = problem(app.get_with("/api/v1/users/me", access_token).await, 401).await;
        assert_eq!(body["detail"], "The session has ended.");
    }
    // A new login starts a family that works.
    let fresh = app.login_pair("grace@example.com", PASSWORD).await;
    assert_eq!(
        app.get_with("/api/v1/users/me", access(&fresh))
            .await
            .status(),
        200
    );
    assert_eq!(app.refresh_with(refresh(&fresh)).await.status(), 200);
}
both!(racing_refreshes_let_exactly_one_through);

async fn logout_revokes_the_refresh_family(app: TestApp) {
    let pair = app.customer("heidi@example.com").await;
    assert_eq!(app.logout(access(&pair)).await.status(), 204);
    problem(app.refresh_with(refresh(&pair)).await, 401).await;
    problem(app.post("/api/v1/auth/logout").send().await.unwrap(), 401).await;
}
both!(logout_revokes_the_refresh_family);

async fn jwks_publishes_the_signing_key(app: TestApp) {
    let r = app.get("/.well-known/jwks.json").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let set: Value = r.json().await.unwrap();
    let key = &set["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key["kid"].is_string());
    assert!(
        key.get("d").is_none(),
        "the private half is never published"
    );
}
both!(jwks_publishes_the_signing_key);
