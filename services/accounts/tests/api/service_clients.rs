#![allow(clippy::unwrap_used)]

use emporium_accounts::create_service_client;
use serde_json::Value;

use crate::helpers::{TestApp, access, problem};
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
    // A client-credentials grant for `orders`, with this secret and scope.
    let orders = |secret: &str, scope: Option<&str>| {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", "orders".to_owned()),
            ("client_secret", secret.to_owned()),
        ];
        form.extend(scope.map(|s| ("scope", s.to_owned())));
        grant(form)
    };
    let r = orders(&secret, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["scope"], "stock:reserve payments:authorize");
    assert_eq!(token["token_type"], "Bearer");
    // A service token is not a person's: it cannot read /users/me.
    problem(app.get_with("/api/v1/users/me", access(&token)).await, 401).await;

    let r = orders(&secret, Some("stock:reserve")).await.unwrap();
    let narrowed: Value = r.json().await.unwrap();
    assert_eq!(narrowed["scope"], "stock:reserve");

    let r = orders(&secret, Some("users:admin")).await.unwrap();
    problem(r, 403).await;
    let r = orders("wrong", None).await.unwrap();
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
    emporium_testkit::schema::assert_schema_parity(crate::helpers::migrate, &[], &[]).await;
}
