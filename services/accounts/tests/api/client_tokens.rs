//! The service client's token source against the real token endpoint: one
//! token for many calls, renewed before it expires, one fetch for a crowd.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium_accounts::create_service_client;
use emporium_client::{CallError, ClientCredentials, TokenSource};
use emporium_config::Secret;

use crate::helpers::{TestApp, https_client, jwt_claims};
use emporium_testkit::both;

async fn source(app: &TestApp, secret: &str) -> Arc<ClientCredentials> {
    Arc::new(ClientCredentials::new(
        https_client(),
        reqwest::Url::parse(&app.url("/api/v1/auth/token")).unwrap(),
        "orders",
        Secret::new(secret),
        Some(emporium_contracts::scopes::STOCK_RESERVE.to_owned()),
    ))
}

/// Creates the `orders` client with the scopes it has in the shop; returns
/// a token source holding its secret.
async fn orders_source(app: &TestApp) -> Arc<ClientCredentials> {
    let scopes = emporium_contracts::scopes::ORDERS;
    let secret = create_service_client(app.store.as_ref(), "orders", &scopes)
        .await
        .unwrap();
    source(app, &secret).await
}

async fn one_token_serves_many_calls_and_a_crowd_waits_for_one_fetch(app: TestApp) {
    let tokens = orders_source(&app).await;
    let crowd: Vec<_> = (0..50)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for t in crowd {
        seen.push(t.await.unwrap());
    }
    assert_eq!(tokens.fetches(), 1, "50 concurrent callers, one fetch");
    assert!(seen.iter().all(|t| *t == seen[0]));
    for _ in 0..100 {
        assert_eq!(tokens.token().await.unwrap(), seen[0]);
    }
    assert_eq!(
        tokens.fetches(),
        1,
        "a held token is reused, never fetched per call"
    );

    // The token is a real one, narrowed to the scope asked for.
    let claims = jwt_claims(&seen[0]);
    assert_eq!(claims["sub"], "orders");
    assert_eq!(claims["scope"], "stock:reserve");

    // After a 401 the caller invalidates it, and the next call fetches anew.
    tokens.invalidate(&seen[0]);
    tokens.token().await.unwrap();
    assert_eq!(tokens.fetches(), 2);
}
both!(one_token_serves_many_calls_and_a_crowd_waits_for_one_fetch);

/// Service tokens live 4 s here: the source renews after half of that, before
/// the held one expires, so no call ever carries an expired token.
async fn a_token_is_renewed_before_it_expires(app: TestApp) {
    let tokens = orders_source(&app).await;
    // The lifetime counts from when the first request left, so does this.
    let asked_at = Instant::now();
    tokens.token().await.unwrap();
    let fetched_at = Instant::now();
    let deadline = fetched_at + Duration::from_secs(10);
    while tokens.fetches() == 1 {
        assert!(Instant::now() < deadline, "the token was never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokens.token().await.unwrap();
    }
    // Renewal is due half-way (2 s after the request left), long before the
    // 4 s expiry; a source that waited for the expiry would come after 4 s.
    assert!(
        asked_at.elapsed() >= Duration::from_millis(1_950),
        "renewed after {:?}: before it was due",
        asked_at.elapsed()
    );
    assert!(
        asked_at.elapsed() < Duration::from_millis(3_900),
        "renewed only {:?} after the first was asked for, at its expiry",
        asked_at.elapsed()
    );
}
both!(a_token_is_renewed_before_it_expires, |s| s
    .tokens
    .service_ttl_secs =
    4);

async fn a_wrong_secret_is_a_definite_error(app: TestApp) {
    create_service_client(app.store.as_ref(), "orders", &[])
        .await
        .unwrap();
    let tokens = source(&app, "not the secret").await;
    let error = tokens.token().await.unwrap_err();
    let CallError::Token(inner) = &error else {
        panic!("{error:?}")
    };
    let problem = inner.problem().unwrap();
    assert_eq!(problem.status, 401);
    assert_eq!(problem.kind(), "unauthorized");
    assert!(!error.is_retryable(), "a refused client does not retry");
}
both!(a_wrong_secret_is_a_definite_error);
