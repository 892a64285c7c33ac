#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use crate::both;
use crate::helpers::{PASSWORD, TestApp, access, problem, refresh};

async fn profile_can_be_read_and_renamed(app: TestApp) {
    let pair = app.customer("ivan@example.com").await;
    let r = app
        .patch("/api/v1/users/me")
        .bearer_auth(access(&pair))
        .json(&json!({"name": "  Ivan the Second "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["name"], "Ivan the Second");
    for key in ["id", "email", "name", "roles", "created_at"] {
        assert!(me.get(key).is_some(), "{key}");
    }
    let body = problem(
        app.patch("/api/v1/users/me")
            .bearer_auth(access(&pair))
            .json(&json!({"name": ""}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "name");
    problem(app.get("/api/v1/users/me").send().await.unwrap(), 401).await;
}
both!(profile_can_be_read_and_renamed);

async fn password_change_needs_the_current_one_and_ends_sessions(app: TestApp) {
    let pair = app.customer("judy@example.com").await;
    let change = |current: &str, new: &str| {
        app.put("/api/v1/users/me/password")
            .bearer_auth(access(&pair))
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    let body = problem(
        change("wrong current pass", "a brand new passphrase")
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "current_password");
    problem(change(PASSWORD, "1q2w3e4r5t6y").await.unwrap(), 422).await;
    assert_eq!(
        change(PASSWORD, "a brand new passphrase")
            .await
            .unwrap()
            .status(),
        204
    );
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
    let r = app
        .delete("/api/v1/users/me")
        .bearer_auth(access(&pair))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.login("ken@example.com", PASSWORD).await.status(), 401);
    problem(
        app.get("/api/v1/users/me")
            .bearer_auth(access(&pair))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
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
    problem(
        app.get("/api/v1/users")
            .bearer_auth(access(&pair))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let admin = app.admin_token().await;
    for i in 0..3 {
        app.register(&format!("page{i}@example.com"), PASSWORD)
            .await;
    }
    // Paging: 5 users (admin, leo, 3 more), two at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit=2&cursor={c}"),
            None => "/api/v1/users?limit=2".to_owned(),
        };
        let page: Value = app
            .get(&path)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for u in page["items"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    problem(
        app.get("/api/v1/users?limit=0")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(
        app.get("/api/v1/users?limit=101")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(
        app.get("/api/v1/users?cursor=zzz")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(
        app.get("/api/v1/users?limit=abc")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
}
both!(only_admins_manage_users);

async fn admins_change_roles_and_disable_accounts(app: TestApp) {
    let pair = app.customer("mia@example.com").await;
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
    let path = format!("/api/v1/users/{id}");

    let one: Value = app
        .get(&path)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["email"], "mia@example.com");
    problem(
        app.get(&path)
            .bearer_auth(access(&pair))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    problem(
        app.get("/api/v1/users/01900000-0000-7000-8000-000000000000")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;

    // A customer cannot promote themselves.
    problem(
        app.patch(&path)
            .bearer_auth(access(&pair))
            .json(&json!({"roles": ["admin"]}))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    let r = app
        .patch(&path)
        .bearer_auth(&admin)
        .json(&json!({"roles": ["customer", "admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["roles"], json!(["customer", "admin"]));
    problem(
        app.patch(&path)
            .bearer_auth(&admin)
            .json(&json!({"roles": ["owner"]}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;

    let r = app
        .patch(&path)
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A disabled account can neither log in nor refresh.
    assert_eq!(app.login("mia@example.com", PASSWORD).await.status(), 401);
    problem(app.refresh_with(refresh(&pair)).await, 401).await;

    // Unknown and malformed ids.
    problem(
        app.patch("/api/v1/users/01900000-0000-7000-8000-000000000000")
            .bearer_auth(&admin)
            .json(&json!({"disabled": true}))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(
        app.patch("/api/v1/users/not-a-uuid")
            .bearer_auth(&admin)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;

    // An admin cannot lock themselves out.
    let admin_me: Value = app
        .get("/api/v1/users/me")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own = format!("/api/v1/users/{}", admin_me["id"].as_str().unwrap());
    problem(
        app.patch(&own)
            .bearer_auth(&admin)
            .json(&json!({"disabled": true}))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
}
both!(admins_change_roles_and_disable_accounts);
