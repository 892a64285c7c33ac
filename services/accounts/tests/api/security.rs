//! Regression tests for what an attack on the running shop got through.

#![allow(clippy::unwrap_used)]

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, access, problem, refresh};
use emporium_testkit::{both, count_of, statuses_at_once};

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
    let statuses = statuses_at_once(attempts).await;
    let evaluated = statuses.len() - count_of(&statuses, 429);
    assert!(
        evaluated <= 5,
        "{evaluated} attempts evaluated: {statuses:?}"
    );
    assert!(count_of(&statuses, 429) >= 95);
}
both!(a_burst_of_logins_cannot_pass_the_throttle);

/// Failures from other addresses do not lock the owner out: past the
/// per-account limit the account is slowed (one attempt per interval), so the
/// owner gets in within an interval, and a burst is evaluated once per interval.
async fn strangers_cannot_lock_an_account(app: TestApp) {
    let (victim, wrong) = ("victim@example.com", "not the password!");
    app.customer(victim).await;
    // Ten failures from ten addresses pass the per-account limit (5 here).
    for i in 0..10 {
        let address = format!("203.0.113.{i}");
        let r = app.login_from(&address, victim, wrong).await;
        let status = r.status().as_u16();
        assert!(status == 401 || status == 429, "{status}");
    }
    // A burst from many more addresses: at most one is evaluated per interval.
    let addresses: Vec<String> = (0..30).map(|i| format!("198.51.100.{i}")).collect();
    let burst_started = std::time::Instant::now();
    let burst = statuses_at_once(addresses.iter().map(|a| app.login_from(a, victim, wrong))).await;
    let burst_took = burst_started.elapsed();
    // One evaluated attempt per interval (2 s): a burst that straddles the
    // end of an interval may see a second.
    let evaluated = count_of(&burst, 401);
    let allowed = 1 + (burst_took.as_secs_f64() / 2.0).ceil() as usize;
    assert!(
        evaluated <= allowed,
        "{evaluated} in {burst_took:?}: {burst:?}"
    );
    // The owner, from a fresh address, retries and gets in within the interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    loop {
        let r = app.login_from("192.0.2.1", victim, PASSWORD).await;
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
        let address = format!("203.0.113.{i}");
        let r = app
            .login_from(&address, "owner@example.com", "not the password!")
            .await;
        assert_eq!(r.status(), 401);
    }
    let r = app
        .login_from("198.51.100.7", "owner@example.com", PASSWORD)
        .await;
    assert_eq!(r.status(), 200);
}
both!(a_few_failures_elsewhere_do_not_lock_the_owner_out);

/// Failures from one address against five accounts, each sent with another
/// `X-Forwarded-For`: where the peer is not a trusted proxy, the header is
/// ignored and the peer's address is throttled.
async fn spray(app: &TestApp) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (address, email) = (format!("203.0.113.{i}"), format!("sprayed{i}@example.com"));
        let r = app.login_from(&address, &email, "not the password!").await;
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
    let root_id = app.user_id(&root).await;
    // The deputy logs in as admin, then is demoted.
    let (deputy_id, deputy) = app.new_admin(&root, "deputy@example.com").await;
    assert_eq!(app.get_with("/api/v1/users", &deputy).await.status(), 200);
    let r = app
        .patch_user(&root, &deputy_id, json!({"roles": ["customer"]}))
        .await;
    assert_eq!(r.status(), 200);
    problem(app.get_with("/api/v1/users", &deputy).await, 403).await;
    for (id, body) in [
        (&deputy_id, json!({"roles": ["customer", "admin"]})),
        (&deputy_id, json!({"disabled": false})),
        (&root_id, json!({"disabled": true})),
    ] {
        problem(app.patch_user(&deputy, id, body).await, 403).await;
    }
    // The root admin is untouched.
    assert_eq!(app.get_with("/api/v1/users", &root).await.status(), 200);
}
both!(admin_routes_check_the_account_as_it_is_now);

/// A disabled admin's token does nothing (not even re-enabling itself), and
/// a token whose account was closed is refused on admin routes.
async fn disabled_and_closed_accounts_lose_their_tokens(app: TestApp) {
    let root = app.admin_token().await;
    let (former_id, former) = app.new_admin(&root, "former@example.com").await;
    assert_eq!(app.get_with("/api/v1/users", &former).await.status(), 200);
    let r = app
        .patch_user(&root, &former_id, json!({"disabled": true}))
        .await;
    assert_eq!(r.status(), 200);
    for path in [
        "/api/v1/users".to_owned(),
        format!("/api/v1/users/{former_id}"),
    ] {
        problem(app.get_with(&path, &former).await, 401).await;
    }
    let r = app
        .patch_user(&former, &former_id, json!({"disabled": false}))
        .await;
    problem(r, 401).await;

    // An admin who closes their account (another admin remains): the token is dead.
    let (_, leaving) = app.new_admin(&root, "leaving@example.com").await;
    assert_eq!(app.close_account(&leaving).await.status(), 204);
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
    let root_id = app.user_id(&root).await;
    let body = problem(app.close_account(&root).await, 409).await;
    assert_eq!(body["type"], "/problems/last-admin");
    let (second_id, second) = app.new_admin(&root, "second@example.com").await;
    assert_eq!(
        app.get_with("/api/v1/users", &second).await.status(),
        200,
        "two admins now"
    );
    let (a, b) = tokio::join!(
        app.patch_user(&root, &second_id, json!({"roles": ["customer"]})),
        app.patch_user(&second, &root_id, json!({"roles": ["customer"]})),
    );
    let statuses = [a.status().as_u16(), b.status().as_u16()];
    assert_eq!(count_of(&statuses, 200), 1, "{statuses:?}");
    // The one whose change went through is the last admin.
    let last = if statuses[0] == 200 { &root } else { &second };
    let users = app.get_json("/api/v1/users?limit=100", last).await;
    let admins = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["roles"].as_array().unwrap().contains(&json!("admin")))
        .count();
    assert_eq!(admins, 1);
    // The last admin cannot close the account either, nor leave with another
    // admin's help: demoting the last admin is refused by the store.
    let body = problem(app.close_account(last).await, 409).await;
    assert_eq!(body["type"], "/problems/last-admin");
    let users = app.get_with("/api/v1/users", last).await;
    assert_eq!(users.status(), 200, "still an admin");
}
both!(an_enabled_admin_always_remains);

/// The same race many times, straight at the store (both engines): two
/// admins demoting each other at once never leave the shop without one.
async fn admins_demoting_each_other_leave_one(app: TestApp) {
    use emporium_accounts::store::{StoreError, UserChange};
    use emporium_messaging::outbox::Commit;
    let root = app.admin_token().await;
    let root_id: uuid::Uuid = app.user_id(&root).await.parse().unwrap();
    let pair = app.customer("rival@example.com").await;
    let rival_id: uuid::Uuid = app.user_id(access(&pair)).await.parse().unwrap();
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
        let none = Commit {
            now: 0,
            events: &[],
        };
        let (promote, demote_rival, demote_root) = (
            UserChange {
                user: other,
                ..admin.clone()
            },
            UserChange {
                user: rival_id,
                ..customer.clone()
            },
            UserChange {
                user: root_id,
                ..customer.clone()
            },
        );
        app.store.change_user(actor, &promote, none).await.unwrap();
        let (a, b) = tokio::join!(
            app.store.change_user(root_id, &demote_rival, none),
            app.store.change_user(rival_id, &demote_root, none),
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
    let token = access(&pair);
    assert_eq!(app.logout(token).await.status(), 204);
    problem(app.get_with("/api/v1/users/me", token).await, 401).await;

    let pair = app.login_pair("leaver@example.com", PASSWORD).await;
    let token = access(&pair);
    let r = app
        .change_password(token, PASSWORD, "another long passphrase")
        .await;
    assert_eq!(r.status(), 204);
    problem(app.get_with("/api/v1/users/me", token).await, 401).await;
}
both!(ended_sessions_refuse_their_tokens);

/// Guessing the current password on a password change is throttled before hashing.
async fn password_change_guesses_are_throttled(app: TestApp) {
    let pair = app.customer("guessed@example.com").await;
    let guesses: Vec<String> = (0..20).map(|i| format!("guess number {i}")).collect();
    let statuses = statuses_at_once(
        guesses
            .iter()
            .map(|guess| app.change_password(access(&pair), guess, "another long passphrase")),
    )
    .await;
    assert!(count_of(&statuses, 422) <= 5, "{statuses:?}");
    assert!(count_of(&statuses, 429) >= 15, "{statuses:?}");
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
        let pair = if round == 0 {
            pair.clone()
        } else {
            app.login_pair("racer@example.com", &password).await
        };
        let token = access(&pair);
        let next_password = format!("racing passphrase number {round}");
        let revoke = async {
            if round % 2 == 0 {
                app.logout(token).await
            } else {
                app.change_password(token, &password, &next_password).await
            }
        };
        let (refreshed, revoked) = tokio::join!(app.refresh_with(refresh(&pair)), revoke);
        assert_eq!(revoked.status(), 204, "round {round}");
        if round % 2 == 1 {
            password = next_password;
        }
        if refreshed.status() == StatusCode::OK {
            let fresh: Value = refreshed.json().await.unwrap();
            problem(app.get_with("/api/v1/users/me", access(&fresh)).await, 401).await;
            problem(app.refresh_with(refresh(&fresh)).await, 401).await;
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
    // The very key that was stored in the clear, not a new one in its place.
    let opened = crate::token_attacks::kek_ring(crate::helpers::KEK)
        .unwrap_key(&row.kid, &row.private_der)
        .unwrap();
    assert_eq!(opened, clear.private_der);
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
    let id = app.user_id(access(&pair)).await;
    let (own, root, id) = (access(&pair), root.as_str(), id.as_str());
    // Their own account as "me", and another's as an admin.
    for (token, user, body) in [
        (own, "me", json!({})),
        (own, "me", json!({"nmae": "typo"})),
        (root, id, json!({})),
        (root, id, json!({"roles": null})),
        (root, id, json!({"disable": true})),
    ] {
        let p = problem(app.patch_user(token, user, body.clone()).await, 422).await;
        assert_eq!(p["errors"][0]["field"], "body", "{body}");
    }
    let me = app.me(own).await;
    assert_eq!(me["disabled"], false);
    assert_eq!(me["name"], "Test Person");
}
both!(patches_without_a_known_field_are_refused);
