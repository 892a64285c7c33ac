//! Steps the API tests share: sending a request and reading its answer,
//! settling a reservation, and settings for tests of expiry.

#![allow(clippy::unwrap_used)]

use emporium_catalog::CatalogSettings;
use reqwest::{RequestBuilder, Response};
use serde_json::Value;

use crate::helpers::{TestApp, problem, problem_of};

/// Sends `request`: the answer, whatever its status.
pub async fn send(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}

/// Sends `request` and reads the answer's body as JSON, whatever its status.
pub async fn json_of(request: RequestBuilder) -> Value {
    send(request).await.json().await.unwrap()
}

/// Sends `request` and asserts the answer is a problem with `status`
/// (see [`problem`]); returns its body.
pub async fn refused(request: RequestBuilder, status: u16) -> Value {
    problem(send(request).await, status).await
}

/// As [`refused`], and the problem's type is `/problems/<kind>`.
pub async fn refused_of(request: RequestBuilder, status: u16, kind: &str) -> Value {
    problem_of(send(request).await, status, kind).await
}

/// Sends `request` once per case, as the bearer of its token (or with no
/// credentials for `None`), and asserts each answer is a problem with the
/// case's status.
pub async fn refused_to(request: RequestBuilder, cases: &[(Option<&str>, u16)]) {
    for (token, status) in cases {
        let mut attempt = request.try_clone().unwrap();
        if let Some(token) = token {
            attempt = attempt.bearer_auth(token);
        }
        refused(attempt, *status).await;
    }
}

/// `action` (`commit` or `release`) of reservation `id`, sent as the service
/// client holding `token`: the answer, whatever its status.
pub async fn settle(app: &TestApp, token: &str, id: &str, action: &str) -> Response {
    send(
        app.post(&format!("/internal/v1/reservations/{id}/{action}"))
            .bearer_auth(token),
    )
    .await
}

/// `product`'s `available`, as anyone reads the product.
pub async fn available(app: &TestApp, product: &str) -> Value {
    let p = json_of(app.get(&format!("/api/v1/products/{product}"))).await;
    p["available"].clone()
}

/// (on hand, reserved) of `product`'s first stock row.
pub async fn on_hand_and_reserved(app: &TestApp, product: &str) -> (i64, i64) {
    let s = &app.stock(product).await[0];
    (
        s["on_hand"].as_i64().unwrap(),
        s["reserved"].as_i64().unwrap(),
    )
}

/// Reservation `id` as its owner (`orders`) reads it, whatever the status.
pub async fn reservation(app: &TestApp, id: &str) -> Value {
    json_of(
        app.get(&format!("/internal/v1/reservations/{id}"))
            .bearer_auth(&app.orders),
    )
    .await
}

/// Settings where a reservation lives `ttl_secs` and the sweeper runs every
/// `sweep_every_ms`: the tweak `both!` takes (as `crate::fixtures::expiring(…)`).
pub fn expiring(ttl_secs: u64, sweep_every_ms: u64) -> impl FnOnce(&mut CatalogSettings) + Send {
    move |s: &mut CatalogSettings| {
        s.reservations.ttl_secs = ttl_secs;
        s.reservations.sweep_every_ms = sweep_every_ms;
    }
}
