//! The typed provider client (`emporium_client::provider`) against the real
//! sandbox over HTTPS: what payments will call.

use std::sync::Arc;

use emporium_client::provider::{CardProvider, ProviderError};
use emporium_client::{ClientSettings, ServiceClient, StaticToken};
use emporium_contracts::provider::{AuthorizationStatus, AuthorizeRequest, TokenRequest, decline};
use emporium_testkit::both;

use crate::helpers::{API_KEY, TestApp};

fn provider(app: &TestApp, settings: ClientSettings) -> CardProvider {
    let base = reqwest::Url::parse(&app.base).unwrap();
    let key = Arc::new(StaticToken::new(API_KEY));
    let client = emporium_testkit::https_client();
    CardProvider::new(ServiceClient::new(client, base, key, settings))
}

/// `attempts` tries of `timeout_ms` each, with short backoffs.
fn quick(attempts: u32, timeout_ms: u64) -> ClientSettings {
    ClientSettings {
        timeout_ms,
        max_attempts: attempts,
        backoff_base_ms: 10,
        backoff_max_ms: 50,
    }
}

fn card(number: &str) -> TokenRequest {
    TokenRequest {
        number: number.into(),
        exp_month: 12,
        exp_year: 2031,
        cvc: "123".into(),
    }
}

/// An authorization of `amount` EUR on `token` under a new reference.
fn eur(token: &str, amount: i64) -> AuthorizeRequest {
    AuthorizeRequest {
        token: token.into(),
        amount,
        currency: "EUR".into(),
        reference: uuid::Uuid::new_v4(),
    }
}

/// Every answer of the provider arrives as the outcome a payment acts on.
async fn outcomes_arrive_typed(app: TestApp) {
    let p = provider(&app, ClientSettings::default());
    let token = p.tokenize(&card("4242424242424242")).await.unwrap();
    assert_eq!(
        (token.brand.as_str(), token.last4.as_str()),
        ("visa", "4242")
    );
    // One request, sent twice: a retry is the same request under the same key.
    let order = eur(&token.token, 900);
    let a = p.authorize("order-1:authorize", &order).await.unwrap();
    assert_eq!(a.status, AuthorizationStatus::Authorized);
    let again = p.authorize("order-1:authorize", &order).await.unwrap();
    assert_eq!(
        again.id, a.id,
        "a retried key answers the same authorization"
    );
    let captured = p.capture("order-1:capture", a.id, 600).await.unwrap();
    assert_eq!(
        (captured.status, captured.captured),
        (AuthorizationStatus::Captured, 600)
    );
    let refunded = p.refund("order-1:refund-1", a.id, 600).await.unwrap();
    assert_eq!(refunded.refunded, 600);
    let over = p.refund("order-1:refund-2", a.id, 1).await.unwrap_err();
    assert!(
        matches!(over, ProviderError::Refused(ref why) if why.contains("amount-too-large")),
        "{over}"
    );
    let void = p.void("order-1:void", a.id).await.unwrap_err();
    assert!(
        matches!(void, ProviderError::Refused(ref why) if why.contains("wrong-state")),
        "{void}"
    );
    let record = p.authorization(a.id).await.unwrap();
    assert_eq!(record.operations.len(), 3);
    for (number, code) in [
        ("4000000000000002", decline::CARD_DECLINED),
        ("4000000000009995", decline::INSUFFICIENT_FUNDS),
    ] {
        let token = p.tokenize(&card(number)).await.unwrap();
        let refused = p
            .authorize(&format!("{number}:authorize"), &eur(&token.token, 100))
            .await;
        assert!(
            matches!(refused, Err(ProviderError::Declined(c)) if c == code),
            "{number}"
        );
    }
    let unknown = p
        .capture("nobody:capture", uuid::Uuid::new_v4(), 1)
        .await
        .unwrap_err();
    assert!(matches!(unknown, ProviderError::NotFound), "{unknown}");
    let invalid = p
        .authorize("bad:authorize", &eur(&token.token, 0))
        .await
        .unwrap_err();
    assert!(matches!(invalid, ProviderError::Invalid(_)), "{invalid}");
}
both!(outcomes_arrive_typed);

/// A card whose network always fails: the client retries (same key) and
/// then reports the provider unavailable, and nothing was authorized.
async fn a_gateway_error_is_retried_then_reported(app: TestApp) {
    let p = provider(&app, quick(3, 2_000));
    let token = p.tokenize(&card("4000000000000119")).await.unwrap();
    let error = p
        .authorize("flaky:authorize", &eur(&token.token, 100))
        .await
        .unwrap_err();
    let ProviderError::Call(call) = error else {
        panic!("not a call failure: {error}");
    };
    assert_eq!(call.status(), Some(503));
    assert!(call.is_retryable());
    assert_eq!(app.authorizations_with(&token.token).await, 0);
}
both!(a_gateway_error_is_retried_then_reported);

/// Through refused calls, hangs and lost answers, the client's own retries
/// with one key authorize exactly once.
async fn the_client_rides_out_transient_failures(app: TestApp) {
    let p = provider(&app, quick(30, 400));
    for n in 0..10 {
        let token = app.token_without_faults().await;
        let key = format!("order-{n}:authorize");
        let a = p.authorize(&key, &eur(&token, 100)).await.unwrap();
        assert_eq!(a.amount, 100);
        assert_eq!(app.authorizations_with(&token).await, 1, "{key}");
    }
}
both!(the_client_rides_out_transient_failures, |s| {
    s.sandbox.faults.failure_rate = 0.5;
    s.sandbox.faults.hang_ms = 1_000;
});
