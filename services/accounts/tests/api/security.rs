//! Regression tests for what an attack on the running shop got through.

#![allow(clippy::unwrap_used)]

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{PASSWORD, TestApp, access, problem};

async fn user_id(app: &TestApp, token: &str) -> String {
    let me: Value = app
        .get("/api/v1/users/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["id"].as_str().unwrap().to_owned()
}

/// 100 logins at once, 99 wrong and then the right one: the slot is taken
/// before the password is checked, so at most 5 are evaluated.
async fn a_burst_of_logins_cannot_pass_the_throttle(app: TestApp) {
    app.customer("burst@example.com").await;
    let attempts = (0..100).map(|i| {
        let password = if i == 99 {
            PASSWORD
        } else {
            "a wrong password here"
        };
        app.login("burst@example.com", password)
    });
    let statuses: Vec<u16> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    let evaluated = statuses.iter().filter(|s| **s != 429).count();
    assert!(
        evaluated <= 5,
        "{evaluated} attempts evaluated: {statuses:?}"
    );
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 95);
}
both!(a_burst_of_logins_cannot_pass_the_throttle);

/// Failures from other addresses do not lock the owner out (per-account limit is high).
async fn strangers_cannot_lock_an_account(app: TestApp) {
    app.customer("victim@example.com").await;
    for i in 0..6 {
        let r = app
            .post("/api/v1/auth/login")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": "victim@example.com", "password": "not the password!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post("/api/v1/auth/login")
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"email": "victim@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the owner from a fresh address gets in");
}
both!(strangers_cannot_lock_an_account);

/// X-Forwarded-For from a peer that is not a trusted proxy is ignored.
async fn forwarded_for_is_trusted_only_from_proxies(app: TestApp) {
    app.customer("spoof@example.com").await;
    for i in 0..5 {
        let r = app
            .post("/api/v1/auth/login")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": "spoof@example.com", "password": "not the password!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post("/api/v1/auth/login")
        .header("x-forwarded-for", "198.51.100.99")
        .json(&json!({"email": "spoof@example.com", "password": "not the password!"}))
        .send()
        .await
        .unwrap();
    problem(r, 429).await;
}
both!(
    forwarded_for_is_trusted_only_from_proxies,
    [("login.trusted_proxies", "")]
);

/// A demoted or disabled admin's still-valid token can do nothing an admin can.
async fn admin_routes_check_the_account_as_it_is_now(app: TestApp) {
    let root = app.admin_token().await;
    let pair = app.customer("deputy@example.com").await;
    let deputy_id = user_id(&app, access(&pair)).await;
    let root_id = user_id(&app, &root).await;
    let r = app
        .patch(&format!("/api/v1/users/{deputy_id}"))
        .bearer_auth(&root)
        .json(&json!({"roles": ["customer", "admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The deputy logs in as admin, then is demoted.
    let deputy: Value = app
        .login("deputy@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let deputy = access(&deputy).to_owned();
    assert_eq!(
        app.get("/api/v1/users")
            .bearer_auth(&deputy)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = app
        .patch(&format!("/api/v1/users/{deputy_id}"))
        .bearer_auth(&root)
        .json(&json!({"roles": ["customer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    problem(
        app.get("/api/v1/users")
            .bearer_auth(&deputy)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    for body in [
        json!({"roles": ["customer", "admin"]}),
        json!({"disabled": false}),
    ] {
        let r = app
            .patch(&format!("/api/v1/users/{deputy_id}"))
            .bearer_auth(&deputy)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(r, 403).await;
    }
    let r = app
        .patch(&format!("/api/v1/users/{root_id}"))
        .bearer_auth(&deputy)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    problem(r, 403).await;
    // The root admin is untouched.
    assert_eq!(
        app.get("/api/v1/users")
            .bearer_auth(&root)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
both!(admin_routes_check_the_account_as_it_is_now);

/// The last enabled admin cannot close the account; two admins demoting each
/// other at once leave one admin.
async fn an_enabled_admin_always_remains(app: TestApp) {
    let root = app.admin_token().await;
    let root_id = user_id(&app, &root).await;
    problem(
        app.delete("/api/v1/users/me")
            .bearer_auth(&root)
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    let pair = app.customer("second@example.com").await;
    let second_id = user_id(&app, access(&pair)).await;
    app.patch(&format!("/api/v1/users/{second_id}"))
        .bearer_auth(&root)
        .json(&json!({"roles": ["customer", "admin"]}))
        .send()
        .await
        .unwrap();
    let second: Value = app
        .login("second@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let second = access(&second).to_owned();
    let (a, b) = tokio::join!(
        app.patch(&format!("/api/v1/users/{second_id}"))
            .bearer_auth(&root)
            .json(&json!({"roles": ["customer"]}))
            .send(),
        app.patch(&format!("/api/v1/users/{root_id}"))
            .bearer_auth(&second)
            .json(&json!({"roles": ["customer"]}))
            .send(),
    );
    let statuses = [a.unwrap().status(), b.unwrap().status()];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    let users: Value = app
        .get("/api/v1/users?limit=100")
        .bearer_auth(if statuses[0] == StatusCode::OK {
            &root
        } else {
            &second
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admins = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["roles"].as_array().unwrap().contains(&json!("admin")))
        .count();
    assert_eq!(admins, 1);
}
both!(an_enabled_admin_always_remains);

/// After logout or a password change the old access token stops working at once.
async fn ended_sessions_refuse_their_tokens(app: TestApp) {
    let pair = app.customer("leaver@example.com").await;
    let token = access(&pair).to_owned();
    let r = app
        .post("/api/v1/auth/logout")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(
        app.get("/api/v1/users/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;

    let pair: Value = app
        .login("leaver@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = access(&pair).to_owned();
    let r = app
        .put("/api/v1/users/me/password")
        .bearer_auth(&token)
        .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(
        app.get("/api/v1/users/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
}
both!(ended_sessions_refuse_their_tokens);

/// Guessing the current password on a password change is throttled before hashing.
async fn password_change_guesses_are_throttled(app: TestApp) {
    let pair = app.customer("guessed@example.com").await;
    let token = access(&pair).to_owned();
    let guesses = (0..20).map(|i| {
        app.put("/api/v1/users/me/password")
            .bearer_auth(&token)
            .json(&json!({"current_password": format!("guess number {i}"), "new_password": "another long passphrase"}))
            .send()
    });
    let statuses: Vec<u16> = join_all(guesses)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().filter(|s| **s == 422).count() <= 5,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 15,
        "{statuses:?}"
    );
}
both!(password_change_guesses_are_throttled);

/// Registrations are throttled per address.
async fn registrations_are_throttled_per_address(app: TestApp) {
    for i in 0..3 {
        assert_eq!(
            app.register(&format!("r{i}@example.com"), PASSWORD)
                .await
                .status(),
            201
        );
    }
    problem(app.register("r3@example.com", PASSWORD).await, 429).await;
}
both!(
    registrations_are_throttled_per_address,
    [("login.max_registrations_per_address", "3")]
);

/// Database files are readable by their owner only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    app.customer("files@example.com").await;
    let path = app.db_path().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{path}{suffix}");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{file} has mode {:o}", mode & 0o777);
    }
}
