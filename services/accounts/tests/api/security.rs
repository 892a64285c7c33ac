//! Regression tests for what an attack on the running shop got through.

#![allow(clippy::unwrap_used)]

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, access, problem};
use emporium_testkit::both;

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

/// Failures from other addresses do not lock the owner out: past the
/// per-account limit the account is slowed (one attempt per interval), so the
/// owner gets in within an interval, and a burst is evaluated once per interval.
async fn strangers_cannot_lock_an_account(app: TestApp) {
    app.customer("victim@example.com").await;
    let attempt = |address: String, password: &'static str| {
        app.post("/api/v1/auth/login")
            .header("x-forwarded-for", address)
            .json(&json!({"email": "victim@example.com", "password": password}))
            .send()
    };
    // Ten failures from ten addresses pass the per-account limit (5 here).
    for i in 0..10 {
        let status = attempt(format!("203.0.113.{i}"), "not the password!")
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(status == 401 || status == 429, "{status}");
    }
    // A burst from many more addresses: at most one is evaluated per interval.
    let burst_started = std::time::Instant::now();
    let burst: Vec<u16> =
        join_all((0..30).map(|i| attempt(format!("198.51.100.{i}"), "not the password!")))
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
    let burst_took = burst_started.elapsed();
    // One evaluated attempt per interval (2 s): a burst that straddles the
    // end of an interval may see a second.
    let evaluated = burst.iter().filter(|s| **s == 401).count();
    let allowed = 1 + (burst_took.as_secs_f64() / 2.0).ceil() as usize;
    assert!(
        evaluated <= allowed,
        "{evaluated} in {burst_took:?}: {burst:?}"
    );
    // The owner, from a fresh address, retries and gets in within the interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    loop {
        let r = attempt("192.0.2.1".into(), PASSWORD).await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(
            std::time::Instant::now() < deadline,
            "the owner is locked out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
both!(strangers_cannot_lock_an_account, |s| {
    s.login.max_failures_per_account = 5;
    s.login.account_slow_interval_secs = 2;
});

/// With the defaults, six failures from six addresses do not lock the owner out.
async fn a_few_failures_elsewhere_do_not_lock_the_owner_out(app: TestApp) {
    app.customer("owner@example.com").await;
    for i in 0..6 {
        let r = app
            .post("/api/v1/auth/login")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": "owner@example.com", "password": "not the password!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post("/api/v1/auth/login")
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
both!(a_few_failures_elsewhere_do_not_lock_the_owner_out);

/// Failures from one address against five accounts, each sent with another
/// `X-Forwarded-For`: where the peer is not a trusted proxy, the header is
/// ignored and the peer's address is throttled.
async fn spray(app: &TestApp) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = app
            .post("/api/v1/auth/login")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"email": format!("sprayed{i}@example.com"), "password": "not the password!"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    statuses
}

async fn forwarded_for_is_trusted_only_from_proxies(app: TestApp) {
    assert_eq!(spray(&app).await, [401, 401, 401, 401, 401, 429]);
}
both!(forwarded_for_is_trusted_only_from_proxies, |s| {
    s.login.trusted_proxies = "".into();
    s.login.max_failures_per_address = 5;
});

/// The same spray from the gateway (a trusted proxy): six addresses, no 429.
async fn forwarded_for_from_the_gateway_names_the_client(app: TestApp) {
    assert_eq!(spray(&app).await, [401; 6]);
}
both!(forwarded_for_from_the_gateway_names_the_client, |s| s
    .login
    .max_failures_per_address =
    5);

/// A demoted or disabled admin's still-valid token can do nothing an admin can.
async fn admin_routes_check_the_account_as_it_is_now(app: TestApp) {
    let root = app.admin_token().await;
    let pair = app.customer("deputy@example.com").await;
    let deputy_id = user_id(&app, access(&pair)).await;
    let root_id = user_id(&app, &root).await;
    let r = app
        .admin_patch(&root, &deputy_id, json!({"roles": ["customer", "admin"]}))
        .await;
    assert_eq!(r.status(), 200);
    // The deputy logs in as admin, then is demoted.
    let deputy = app.access_token("deputy@example.com").await;
    assert_eq!(app.get_with("/api/v1/users", &deputy).await.status(), 200);
    let r = app
        .admin_patch(&root, &deputy_id, json!({"roles": ["customer"]}))
        .await;
    assert_eq!(r.status(), 200);
    problem(app.get_with("/api/v1/users", &deputy).await, 403).await;
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
        .admin_patch(&deputy, &root_id, json!({"disabled": true}))
        .await;
    problem(r, 403).await;
    // The root admin is untouched.
    assert_eq!(app.get_with("/api/v1/users", &root).await.status(), 200);
}
both!(admin_routes_check_the_account_as_it_is_now);

/// A disabled admin's token does nothing (not even re-enabling itself), and
/// a token whose account was closed is refused on admin routes.
async fn disabled_and_closed_accounts_lose_their_tokens(app: TestApp) {
    let root = app.admin_token().await;
    let pair = app.customer("former@example.com").await;
    let former_id = user_id(&app, access(&pair)).await;
    let r = app
        .admin_patch(&root, &former_id, json!({"roles": ["customer", "admin"]}))
        .await;
    assert_eq!(r.status(), 200);
    let former = app.access_token("former@example.com").await;
    assert_eq!(app.get_with("/api/v1/users", &former).await.status(), 200);
    let r = app
        .admin_patch(&root, &former_id, json!({"disabled": true}))
        .await;
    assert_eq!(r.status(), 200);
    for r in [
        app.get("/api/v1/users").bearer_auth(&former).send(),
        app.get(&format!("/api/v1/users/{former_id}"))
            .bearer_auth(&former)
            .send(),
    ] {
        problem(r.await.unwrap(), 401).await;
    }
    let r = app
        .admin_patch(&former, &former_id, json!({"disabled": false}))
        .await;
    problem(r, 401).await;

    // An admin who closes their account (another admin remains): the token is dead.
    let pair = app.customer("leaving@example.com").await;
    let leaving_id = user_id(&app, access(&pair)).await;
    let r = app
        .admin_patch(&root, &leaving_id, json!({"roles": ["customer", "admin"]}))
        .await;
    assert_eq!(r.status(), 200);
    let leaving = app.access_token("leaving@example.com").await;
    let r = app
        .delete("/api/v1/users/me")
        .bearer_auth(&leaving)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(app.get_with("/api/v1/users", &leaving).await, 401).await;
}
both!(disabled_and_closed_accounts_lose_their_tokens);

/// When password hashing is saturated, the answer is 503 with Retry-After at
/// once, never a 500 or a long wait, and the service recovers.
async fn saturated_hashing_answers_503(app: TestApp) {
    let emails: Vec<String> = (0..12).map(|i| format!("flood{i}@example.com")).collect();
    let responses = join_all(emails.iter().map(|email| async {
        let started = std::time::Instant::now();
        let response = app.register(email, PASSWORD).await;
        (response, started.elapsed())
    }))
    .await;
    let mut busy = 0;
    for (r, took) in responses {
        match r.status().as_u16() {
            201 => {}
            503 => {
                // Refused at once: not after waiting its turn at the hashers.
                assert!(
                    took < std::time::Duration::from_secs(2),
                    "503 after {took:?}"
                );
                assert_eq!(r.headers()["retry-after"], "1");
                problem(r, 503).await;
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        busy >= 1,
        "one thread and one place: a burst must be refused"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.register("after@example.com", PASSWORD).await.status(),
        201
    );
}
both!(saturated_hashing_answers_503, |s| {
    s.hashing.threads = 1;
    s.hashing.queue = 1;
});

/// The last enabled admin cannot close the account; two admins demoting each
/// other at once leave one admin.
async fn an_enabled_admin_always_remains(app: TestApp) {
    let root = app.admin_token().await;
    let root_id = user_id(&app, &root).await;
    let body = problem(
        app.delete("/api/v1/users/me")
            .bearer_auth(&root)
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    assert_eq!(body["type"], "/problems/last-admin");
    let pair = app.customer("second@example.com").await;
    let second_id = user_id(&app, access(&pair)).await;
    let r = app
        .admin_patch(&root, &second_id, json!({"roles": ["customer", "admin"]}))
        .await;
    assert_eq!(r.status(), 200);
    let second = app.access_token("second@example.com").await;
    let users = |token: &str| app.get("/api/v1/users").bearer_auth(token).send();
    assert_eq!(
        users(&second).await.unwrap().status(),
        200,
        "two admins now"
    );
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
    // The last admin cannot close the account either, nor leave with another
    // admin's help: demoting the last admin is refused by the store.
    let last = if statuses[0] == StatusCode::OK {
        &root
    } else {
        &second
    };
    let body = problem(
        app.delete("/api/v1/users/me")
            .bearer_auth(last)
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    assert_eq!(body["type"], "/problems/last-admin");
    let users = app.get_with("/api/v1/users", last).await;
    assert_eq!(users.status(), 200, "still an admin");
}
both!(an_enabled_admin_always_remains);

/// The same race many times, straight at the store (both engines): two
/// admins demoting each other at once never leave the shop without one.
async fn admins_demoting_each_other_leave_one(app: TestApp) {
    use emporium_accounts::store::{StoreError, UserChange};
    let root = app.admin_token().await;
    let root_id: uuid::Uuid = user_id(&app, &root).await.parse().unwrap();
    let pair = app.customer("rival@example.com").await;
    let rival_id: uuid::Uuid = user_id(&app, access(&pair)).await.parse().unwrap();
    let admin = UserChange {
        roles: Some("customer,admin".into()),
        ..Default::default()
    };
    let customer = UserChange {
        roles: Some("customer".into()),
        ..Default::default()
    };
    for round in 0..10 {
        // Whoever is admin now makes the other one an admin again.
        let (actor, other) = if app
            .store
            .user_by_id(root_id)
            .await
            .unwrap()
            .unwrap()
            .roles
            .contains("admin")
        {
            (root_id, rival_id)
        } else {
            (rival_id, root_id)
        };
        app.store
            .change_user(actor, other, &admin, 0, &[])
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            app.store.change_user(root_id, rival_id, &customer, 0, &[]),
            app.store.change_user(rival_id, root_id, &customer, 0, &[]),
        );
        let won = [a.is_ok(), b.is_ok()];
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
        for lost in [a, b].into_iter().filter_map(Result::err) {
            assert!(
                matches!(
                    lost,
                    StoreError::Refused(emporium_accounts::store::refused::NOT_AN_ADMIN)
                ),
                "round {round}: {lost:?}"
            );
        }
        assert!(app.store.any_admin().await.unwrap(), "round {round}");
    }
}
both!(admins_demoting_each_other_leave_one);

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
    problem(app.get_with("/api/v1/users/me", &token).await, 401).await;

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
    problem(app.get_with("/api/v1/users/me", &token).await, 401).await;
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
both!(registrations_are_throttled_per_address, |s| s
    .login
    .max_registrations_per_address =
    3);

/// Database files are readable by their owner only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app =
        <TestApp as emporium_testkit::TestService>::spawn(crate::helpers::Backend::Sqlite, |_| {})
            .await;
    app.customer("files@example.com").await;
    let path = app.db_path().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{path}{suffix}");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{file} has mode {:o}", mode & 0o777);
    }
}

/// With no enabled admin, the bootstrap never hands the role to an account
/// someone registered with the configured admin email: it refuses to start.
async fn a_squatted_admin_email_is_never_promoted(app: TestApp) {
    // This app was started without an admin (see the settings below).
    assert_eq!(app.register("boss@shop.test", PASSWORD).await.status(), 201);
    let mut settings = crate::helpers::settings(app.db_url());
    settings.admin_email = "boss@shop.test".into();
    let started = emporium_accounts::Application::build_with_bus(settings, app.bus.clone()).await;
    let error = format!("{:#}", started.err().expect("the bootstrap refuses"));
    assert!(error.contains("belongs to an existing account"), "{error}");
    let squatter = app
        .store
        .user_by_email("boss@shop.test")
        .await
        .unwrap()
        .unwrap();
    assert!(!squatter.roles.contains("admin"));
}
both!(a_squatted_admin_email_is_never_promoted, |s| s
    .admin_email =
    "".into());

/// A refresh racing a logout or a password change never yields a session
/// that outlives them (the rows are locked; the new tokens are refused).
async fn a_refresh_cannot_slip_past_a_revocation(app: TestApp) {
    let pair = app.customer("racer@example.com").await;
    let mut password = PASSWORD.to_owned();
    for round in 0..6 {
        let pair: Value = if round == 0 {
            pair.clone()
        } else {
            app.login("racer@example.com", &password)
                .await
                .json()
                .await
                .unwrap()
        };
        let token = access(&pair).to_owned();
        let refresh_token = pair["refresh_token"].as_str().unwrap().to_owned();
        let next_password = format!("racing passphrase number {round}");
        let revoke = async {
            if round % 2 == 0 {
                app.post("/api/v1/auth/logout")
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
            } else {
                app.put("/api/v1/users/me/password")
                    .bearer_auth(&token)
                    .json(&json!({"current_password": password, "new_password": next_password}))
                    .send()
                    .await
                    .unwrap()
            }
        };
        let (refreshed, revoked) = tokio::join!(app.refresh_with(&refresh_token), revoke);
        assert_eq!(revoked.status(), 204, "round {round}");
        if round % 2 == 1 {
            password = next_password;
        }
        if refreshed.status() == StatusCode::OK {
            let fresh: Value = refreshed.json().await.unwrap();
            problem(
                app.get("/api/v1/users/me")
                    .bearer_auth(access(&fresh))
                    .send()
                    .await
                    .unwrap(),
                401,
            )
            .await;
            problem(
                app.refresh_with(fresh["refresh_token"].as_str().unwrap())
                    .await,
                401,
            )
            .await;
        } else {
            assert_eq!(refreshed.status(), 401, "round {round}");
        }
    }
}
both!(a_refresh_cannot_slip_past_a_revocation);

/// Keys an older version stored in the clear are wrapped at the next start,
/// and keep signing.
async fn keys_stored_in_the_clear_are_wrapped_on_start(app: TestApp) {
    let newest = app.store.signing_keys().await.unwrap()[0].created_at;
    let clear = emporium_accounts::tokens::new_signing_key(newest + 1000);
    app.store.insert_signing_key(&clear).await.unwrap();
    let settings = crate::helpers::settings(app.db_url());
    let restarted = emporium_accounts::Application::build_with_bus(settings, app.bus.clone())
        .await
        .unwrap();
    drop(restarted);
    let stored = app.store.signing_keys().await.unwrap();
    let row = stored.iter().find(|k| k.kid == clear.kid).unwrap();
    assert!(emporium_accounts::kek::is_wrapped(&row.private_der));
    assert_ne!(row.private_der, clear.private_der);
    assert!(
        stored
            .iter()
            .all(|k| emporium_accounts::kek::is_wrapped(&k.private_der))
    );
}
both!(keys_stored_in_the_clear_are_wrapped_on_start);

/// A PATCH naming no field it can change is refused (422), not a silent 200.
async fn patches_without_a_known_field_are_refused(app: TestApp) {
    let root = app.admin_token().await;
    let pair = app.customer("patchy@example.com").await;
    let id = user_id(&app, access(&pair)).await;
    for body in [json!({}), json!({"nmae": "typo"})] {
        let r = app
            .patch("/api/v1/users/me")
            .bearer_auth(access(&pair))
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = problem(r, 422).await;
        assert_eq!(p["errors"][0]["field"], "body");
    }
    for body in [json!({}), json!({"roles": null}), json!({"disable": true})] {
        let r = app
            .patch(&format!("/api/v1/users/{id}"))
            .bearer_auth(&root)
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = problem(r, 422).await;
        assert_eq!(p["errors"][0]["field"], "body", "{body}");
    }
    let me: Value = app
        .get("/api/v1/users/me")
        .bearer_auth(access(&pair))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["disabled"], false);
    assert_eq!(me["name"], "Test Person");
}
both!(patches_without_a_known_field_are_refused);
