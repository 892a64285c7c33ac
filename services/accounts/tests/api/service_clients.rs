#![allow(clippy::unwrap_used)]

use emporium_accounts::create_service_client;
use serde_json::Value;

use crate::helpers::{TestApp, problem};
use emporium_testkit::both;

async fn client_credentials_issue_scoped_service_tokens(app: TestApp) {
    let secret = create_service_client(
        app.store.as_ref(),
        "orders",
        &["stock:reserve", "payments:authorize"],
    )
    .await
    .unwrap();
    let grant =
        |form: Vec<(&'static str, String)>| app.post("/api/v1/auth/token").form(&form).send();
    let r = grant(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", "orders".into()),
        ("client_secret", secret.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["scope"], "stock:reserve payments:authorize");
    assert_eq!(token["token_type"], "Bearer");
    // A service token is not a person's: it cannot read /users/me.
    let r = app
        .get("/api/v1/users/me")
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    problem(r, 401).await;

    let r = grant(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", "orders".into()),
        ("client_secret", secret.clone()),
        ("scope", "stock:reserve".into()),
    ])
    .await
    .unwrap();
    let narrowed: Value = r.json().await.unwrap();
    assert_eq!(narrowed["scope"], "stock:reserve");

    let r = grant(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", "orders".into()),
        ("client_secret", secret.clone()),
        ("scope", "users:admin".into()),
    ])
    .await
    .unwrap();
    problem(r, 403).await;
    let r = grant(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", "orders".into()),
        ("client_secret", "wrong".into()),
    ])
    .await
    .unwrap();
    problem(r, 401).await;
    let r = grant(vec![("grant_type", "password".into())])
        .await
        .unwrap();
    problem(r, 422).await;
}
both!(client_credentials_issue_scoped_service_tokens);

async fn only_known_scopes_can_be_granted(app: TestApp) {
    let err = create_service_client(app.store.as_ref(), "orders", &["stock:resreve"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stock:resreve"), "{err}");
    assert!(
        app.store.client("orders").await.unwrap().is_none(),
        "nothing is stored for a refused client"
    );
    create_service_client(
        app.store.as_ref(),
        "orders",
        &emporium_contracts::scopes::ORDERS,
    )
    .await
    .unwrap();
    let stored = app.store.client("orders").await.unwrap().unwrap();
    assert_eq!(stored.scopes, emporium_contracts::scopes::ORDERS.join(" "));
}
both!(only_known_scopes_can_be_granted);

/// Both engines' migrations make the same tables and columns.
#[tokio::test]
async fn both_engines_have_the_same_schema() {
    emporium_testkit::schema::assert_schema_parity(
        |url| async move { emporium_accounts::store::connect(&url, 1).await.map(|_| ()) },
        &[],
        &[],
    )
    .await;
}
