#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, access, problem, refresh};
use emporium_testkit::both;

async fn profile_can_be_read_and_renamed(app: TestApp) {
    let pair = app.customer("ivan@example.com").await;
    let rename = |name: &str| app.patch_user(access(&pair), "me", json!({"name": name}));
    let r = rename("  Ivan the Second ").await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["name"], "Ivan the Second");
    for key in ["id", "email", "name", "roles", "created_at"] {
        assert!(me.get(key).is_some(), "{key}");
    }
    let body = problem(rename("").await, 422).await;
    assert_eq!(body["errors"][0]["field"], "name");
    problem(app.get("/api/v1/users/me").send().await.unwrap(), 401).await;
}
both!(profile_can_be_read_and_renamed);

async fn password_change_needs_the_current_one_and_ends_sessions(app: TestApp) {
    let pair = app.customer("judy@example.com").await;
    let token = access(&pair);
    let r = app
        .change_password(token, "wrong current pass", "a brand new passphrase")
        .await;
    let body = problem(r, 422).await;
    assert_eq!(body["errors"][0]["field"], "current_password");
    problem(
        app.change_password(token, PASSWORD, "1q2w3e4r5t6y").await,
        422,
    )
    .await;
    let r = app
        .change_password(token, PASSWORD, "a brand new passphrase")
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.login("judy@example.com", PASSWORD).await.status(), 401);
    assert_eq!(
        app.login("judy@example.com", "a brand new passphrase")
            .await
            .status(),
        200
    );
    // The session that existed before the change is over.
    problem(app.refresh_with(refresh(&pair)).await, 401).await;
}
both!(password_change_needs_the_current_one_and_ends_sessions);

async fn closing_an_account_ends_it_and_frees_the_email(app: TestApp) {
    let pair = app.customer("ken@example.com").await;
    assert_eq!(app.close_account(access(&pair)).await.status(), 204);
    assert_eq!(app.login("ken@example.com", PASSWORD).await.status(), 401);
    problem(app.get_with("/api/v1/users/me", access(&pair)).await, 401).await;
    problem(app.refresh_with(refresh(&pair)).await, 401).await;
    assert_eq!(
        app.register("ken@example.com", PASSWORD).await.status(),
        201
    );
}
both!(closing_an_account_ends_it_and_frees_the_email);

async fn only_admins_manage_users(app: TestApp) {
    let pair = app.customer("leo@example.com").await;
    problem(app.get("/api/v1/users").send().await.unwrap(), 401).await;
    problem(app.get_with("/api/v1/users", access(&pair)).await, 403).await;
    let admin = app.admin_token().await;
    for i in 0..3 {
        app.register(&format!("page{i}@example.com"), PASSWORD)
            .await;
    }
    // Paging: 5 users (admin, leo, 3 more), two at a time.
    let seen = every_page(&app, &admin, 2).await;
    assert_eq!(seen.len(), 5, "{seen:?}");
    for query in ["limit=0", "limit=101", "cursor=zzz"] {
        let path = format!("/api/v1/users?{query}");
        problem(app.get_with(&path, &admin).await, 422).await;
    }
    // Any text that is not a plain number is the same 422 on `limit`, never a
    // parser's message.
    for bad in [
        "abc",
        "1e3",
        "%205",
        "%2B5",
        "5.0",
        "",
        "9223372036854775808",
    ] {
        let path = format!("/api/v1/users?limit={bad}");
        let body = problem(app.get_with(&path, &admin).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "limit", "{bad}: {body}");
        assert_eq!(
            body["errors"][0]["message"], "must be a number from 1 to 100",
            "{bad}: {body}"
        );
    }
}
both!(only_admins_manage_users);

async fn admins_change_roles_and_disable_accounts(app: TestApp) {
    let pair = app.customer("mia@example.com").await;
    let customer = access(&pair);
    let id = app.user_id(customer).await;
    let admin = app.admin_token().await;
    let path = format!("/api/v1/users/{id}");

    let one = app.get_json(&path, &admin).await;
    assert_eq!(one["email"], "mia@example.com");
    problem(app.get_with(&path, customer).await, 403).await;
    let unknown = "01900000-0000-7000-8000-000000000000";
    let r = app
        .get_with(&format!("/api/v1/users/{unknown}"), &admin)
        .await;
    problem(r, 404).await;

    // Changes in turn: who asks, whose account, what, and the answer; what
    // is allowed answers the account as changed.
    let (admin, mia) = (admin.as_str(), id.as_str());
    for (token, user, change, status) in [
        // A customer cannot promote themselves.
        (customer, mia, json!({"roles": ["admin"]}), 403),
        (admin, mia, json!({"roles": ["customer", "admin"]}), 200),
        (admin, mia, json!({"roles": ["owner"]}), 422),
        (admin, mia, json!({"disabled": true}), 200),
        // Unknown and malformed ids.
        (admin, unknown, json!({"disabled": true}), 404),
        (admin, "not-a-uuid", json!({}), 400),
    ] {
        let r = app.patch_user(token, user, change.clone()).await;
        if status != 200 {
            problem(r, status).await;
            continue;
        }
        assert_eq!(r.status(), 200, "{change}");
        let changed: Value = r.json().await.unwrap();
        for (field, value) in change.as_object().unwrap() {
            assert_eq!(&changed[field], value, "{change}: {changed}");
        }
    }
    // A disabled account can neither log in nor refresh.
    assert_eq!(app.login("mia@example.com", PASSWORD).await.status(), 401);
    problem(app.refresh_with(refresh(&pair)).await, 401).await;

    // An admin cannot lock themselves out.
    let own = app.user_id(admin).await;
    let r = app.patch_user(admin, &own, json!({"disabled": true})).await;
    let body = problem(r, 409).await;
    assert_eq!(body["type"], "/problems/self-lockout");
}
both!(admins_change_roles_and_disable_accounts);

async fn refused_as_self_lockout(app: &TestApp, admin: &str, id: &str, body: Value) {
    let r = app.patch_user(admin, id, body.clone()).await;
    let refusal = problem(r, 409).await;
    assert_eq!(refusal["type"], "/problems/self-lockout", "{body}");
}

/// An admin can neither drop their own admin role nor disable themselves:
/// 409 `self-lockout`, whether or not another admin would remain (so it is
/// not the last-admin rule answering), and nothing changes. Another admin
/// may demote them; the last admin left cannot close their account
/// (`last-admin`).
async fn admins_cannot_demote_or_disable_themselves(app: TestApp) {
    let root = app.admin_token().await;
    let root_id = app.user_id(&root).await;
    let own = [
        json!({"roles": ["customer"]}),
        json!({"disabled": true}),
        json!({"roles": ["customer"], "disabled": false}),
    ];
    for body in own.clone() {
        refused_as_self_lockout(&app, &root, &root_id, body).await;
    }
    let (_, deputy) = app.new_admin(&root, "deputy@example.com").await;
    // Two admins now: the store would allow it; the rule still refuses.
    for body in own {
        refused_as_self_lockout(&app, &root, &root_id, body).await;
    }
    let me = app
        .get_json(&format!("/api/v1/users/{root_id}"), &root)
        .await;
    assert_eq!(me["roles"], json!(["customer", "admin"]), "{me}");
    assert_eq!(me["disabled"], false, "{me}");
    assert_eq!(app.get_with("/api/v1/users", &root).await.status(), 200);

    // Another admin may do it.
    let r = app
        .patch_user(&deputy, &root_id, json!({"roles": ["customer"]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["roles"],
        json!(["customer"])
    );
    let body = problem(app.get_with("/api/v1/users", &root).await, 403).await;
    assert_eq!(body["type"], "/problems/forbidden");
    // The deputy is the last admin now, and cannot leave.
    let body = problem(app.close_account(&deputy).await, 409).await;
    assert_eq!(body["type"], "/problems/last-admin");
    assert_eq!(app.get_with("/api/v1/users", &deputy).await.status(), 200);
}
both!(admins_cannot_demote_or_disable_themselves);

/// Asserts a login's pair is dead: its refresh token and its access token
/// are refused, with the problems that say why.
async fn assert_session_over(app: &TestApp, pair: &Value) {
    let body = problem(app.refresh_with(refresh(pair)).await, 401).await;
    assert_eq!(body["detail"], "The refresh token is invalid.");
    let body = problem(app.get_with("/api/v1/users/me", access(pair)).await, 401).await;
    assert_eq!(body["detail"], "The session has ended.");
}

/// A password change ends every session of the user, not only the one that
/// changed it: two logins (two refresh families), both over afterwards.
async fn a_password_change_ends_every_session(app: TestApp) {
    let email = "two.logins@example.com";
    let first = app.customer(email).await;
    let second = app.login_pair(email, PASSWORD).await;
    assert_ne!(refresh(&first), refresh(&second));
    for pair in [&first, &second] {
        app.me(access(pair)).await;
    }
    let new = "a brand new passphrase";
    let r = app.change_password(access(&second), PASSWORD, new).await;
    assert_eq!(r.status(), 204);
    for pair in [&first, &second] {
        assert_session_over(&app, pair).await;
    }
    let fresh = app.login_pair(email, new).await;
    assert_eq!(app.refresh_with(refresh(&fresh)).await.status(), 200);
}
both!(a_password_change_ends_every_session);

/// Disabling an account ends every session for good: after it is enabled
/// again, the refresh tokens of both earlier logins stay refused (they were
/// revoked, not only blocked while disabled). While disabled, the account
/// gets the same 401 as a wrong password at login, and its tokens are refused.
async fn disabling_an_account_ends_every_session_for_good(app: TestApp) {
    let email = "two.devices@example.com";
    let first = app.customer(email).await;
    let second = app.login_pair(email, PASSWORD).await;
    let id = app.user_id(access(&first)).await;
    let admin = app.admin_token().await;

    let r = app.patch_user(&admin, &id, json!({"disabled": true})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["disabled"], true);
    let disabled = app.login(email, PASSWORD).await;
    assert_eq!(disabled.headers()["www-authenticate"], "Bearer");
    let disabled = problem(disabled, 401).await;
    let wrong = problem(app.login(email, "not the password at all").await, 401).await;
    assert_eq!(disabled, wrong, "a disabled account is not told apart");
    assert_eq!(disabled["type"], "/problems/unauthorized");
    assert_eq!(disabled["detail"], "The email or password is wrong.");
    for pair in [&first, &second] {
        let body = problem(app.refresh_with(refresh(pair)).await, 401).await;
        assert_eq!(body["detail"], "The refresh token is invalid.");
        let body = problem(app.get_with("/api/v1/users/me", access(pair)).await, 401).await;
        assert_eq!(body["detail"], "The account no longer exists.");
    }

    let r = app
        .patch_user(&admin, &id, json!({"disabled": false}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["disabled"], false);
    for pair in [&first, &second] {
        assert_session_over(&app, pair).await;
    }
    let fresh = app.login_pair(email, PASSWORD).await;
    assert_eq!(app.refresh_with(refresh(&fresh)).await.status(), 200);
}
both!(disabling_an_account_ends_every_session_for_good);

/// Every account on the pages of `/api/v1/users?limit={limit}`, in order.
async fn every_page(app: &TestApp, admin: &str, limit: i64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit={limit}&cursor={c}"),
            None => format!("/api/v1/users?limit={limit}"),
        };
        let r = app.get_with(&path, admin).await;
        assert_eq!(r.status(), 200, "{path}");
        let page: Value = r.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() as i64 <= limit, "{path}: {} items", items.len());
        all.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_ne!(
                    cursor.as_deref(),
                    Some(c),
                    "{path}: the cursor does not move"
                );
                cursor = Some(c.to_owned());
            }
            None => return all,
        }
    }
    panic!("the pages of {limit} never ended");
}

/// Pages of users, whatever their size, hold every open account exactly
/// once, in the same order as one big page: disabled accounts included,
/// closed ones not.
async fn user_pages_cover_every_account_exactly_once(app: TestApp) {
    let admin = app.admin_token().await;
    let mut expected = vec!["root@shop.test".to_owned()];
    for i in 0..8 {
        let email = format!("pager{i}@example.com");
        assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
        expected.push(email);
    }
    let disabled = app.customer("pager.disabled@example.com").await;
    let disabled_id = app.user_id(access(&disabled)).await;
    let r = app
        .patch_user(&admin, &disabled_id, json!({"disabled": true}))
        .await;
    assert_eq!(r.status(), 200);
    expected.push("pager.disabled@example.com".to_owned());
    let closed = app.customer("pager.closed@example.com").await;
    assert_eq!(app.close_account(access(&closed)).await.status(), 204);
    expected.sort();

    let whole = every_page(&app, &admin, 100).await;
    let mut emails: Vec<String> = whole
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect();
    emails.sort();
    assert_eq!(emails, expected);
    let ids: Vec<&str> = whole.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in creation (id) order");
    let flagged = whole
        .iter()
        .find(|u| u["email"] == "pager.disabled@example.com")
        .unwrap();
    assert_eq!(flagged["disabled"], true);

    for limit in [1, 2, 3, 4, 9, 10, 11] {
        let paged = every_page(&app, &admin, limit).await;
        let mut ids: Vec<&str> = paged.iter().map(|u| u["id"].as_str().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), paged.len(), "pages of {limit}: an account twice");
        assert_eq!(paged, whole, "pages of {limit}");
    }
}
both!(user_pages_cover_every_account_exactly_once);
