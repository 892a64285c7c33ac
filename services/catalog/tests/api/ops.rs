//! The operations endpoints.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, problem};
use emporium_testkit::both;

/// `/readyz` reports the database: 200 while it answers, 503 (a problem)
/// once it is unreachable, while `/healthz` (alive) still answers 200.
async fn readyz_answers_503_once_the_database_is_unreachable(app: TestApp) {
    let r = app.get("/readyz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");

    app.take_database_down().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = app.get("/readyz").send().await.unwrap();
        if r.status() == 503 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {} without a database",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = problem(r, 503).await;
    assert_eq!(body["type"], "/problems/unavailable");
    assert_eq!(body["detail"], "A dependency is unreachable.");
    let r = app.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200, "alive all the same");
}
both!(readyz_answers_503_once_the_database_is_unreachable);

/// Both engines' migrations make the same tables and columns; the search
/// index is the one difference, on purpose.
#[tokio::test]
async fn both_engines_have_the_same_schema() {
    emporium_testkit::schema::assert_schema_parity(
        |url| async move { emporium_catalog::store::connect(&url, 1).await.map(|_| ()) },
        &["products.search"],
        &[],
    )
    .await;
}
