//! Hostile and malformed input: always a 4xx problem, never a 500, nothing stored.

#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::helpers::{TestApp, problem};
use emporium_testkit::{both, problem_fields};

/// The emails of the accounts on the first page of `GET /api/v1/users`.
async fn emails(app: &TestApp) -> Vec<String> {
    let admin = app.admin_token().await;
    let users = app.get_json("/api/v1/users", &admin).await;
    users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

async fn malformed_bodies_get_problems(app: TestApp) {
    let register = "/api/v1/auth/register";
    let send_raw = |body: Vec<u8>, content_type: &'static str| {
        app.post(register)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // Not JSON at all, truncated JSON, invalid UTF-8.
    let b = problem(
        send_raw(b"{not json".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(b["type"], "/problems/malformed-json");
    problem(
        send_raw(b"{\"email\": \"a@b.co\"".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        send_raw(
            b"{\"email\": \"\xff\xfe@example.com\", \"password\": \"x\", \"name\": \"y\"}".to_vec(),
            "application/json",
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    // Wrong content type.
    problem(
        send_raw(b"email=a".to_vec(), "text/plain").await.unwrap(),
        415,
    )
    .await;
    // Wrong JSON shapes and types.
    problem(
        send_raw(b"[]".to_vec(), "application/json").await.unwrap(),
        422,
    )
    .await;
    problem(
        app.post(register)
            .json(&json!({"email": 5, "password": true, "name": null}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    // Missing fields are named.
    let b = problem(
        app.post(register).json(&json!({})).send().await.unwrap(),
        422,
    )
    .await;
    assert_eq!(problem_fields(&b), ["email", "name", "password"]);
    // A 10,000-character email.
    let long = format!("{}@example.com", "a".repeat(10_000));
    let b = problem(app.register(&long, crate::helpers::PASSWORD).await, 422).await;
    assert_eq!(b["errors"][0]["field"], "email");
    // A 2 MB body.
    let big =
        json!({"email": "big@example.com", "password": "x".repeat(2 * 1024 * 1024), "name": "Big"});
    problem(app.post(register).json(&big).send().await.unwrap(), 413).await;
    // Control characters in the name.
    let r = app
        .post(register)
        .json(&json!({"email": "ctl@example.com", "password": crate::helpers::PASSWORD, "name": "a\u{0}b"}))
        .send()
        .await
        .unwrap();
    problem(r, 422).await;
    // Login with junk: 422 for missing, 401 for nonsense, never 500.
    problem(
        app.post("/api/v1/auth/login")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(app.login(&"x".repeat(10_000), "whatever at all").await, 401).await;
    problem(app.refresh_with(&"x".repeat(5000)).await, 401).await;

    // Nothing of the above was stored.
    assert_eq!(
        emails(&app).await,
        ["root@shop.test"],
        "only the admin exists"
    );
}
both!(malformed_bodies_get_problems);

async fn unknown_routes_and_methods_get_problems(app: TestApp) {
    problem(app.get("/api/v1/nowhere").send().await.unwrap(), 404).await;
    let r = app.delete("/api/v1/auth/login").send().await.unwrap();
    assert!(r.headers().contains_key("allow"));
    problem(r, 405).await;
}
both!(unknown_routes_and_methods_get_problems);

async fn operations_endpoints_answer(app: TestApp) {
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 200);
    app.get("/api/v1/nowhere").send().await.unwrap();
    let r = app.get("/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("service=\"accounts\""));
    let doc = app.fetch("/openapi.json").await;
    assert!(doc["paths"]["/api/v1/auth/login"]["post"].is_object());
    // Request ids are echoed, and made up when absent.
    let r = app
        .get("/healthz")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app.get("/healthz").send().await.unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
}
both!(operations_endpoints_answer);

async fn lookalike_and_hidden_emails_are_refused(app: TestApp) {
    use crate::helpers::PASSWORD;
    assert_eq!(
        app.register("victim@example.com", PASSWORD).await.status(),
        201
    );
    // Fullwidth spellings normalise to the address that exists.
    for lookalike in [
        "ｖｉｃｔｉｍ@example.com",
        "ＶＩＣＴＩＭ＠ＥＸＡＭＰＬＥ．ＣＯＭ",
        " Victim@Example.com ",
    ] {
        let b = problem(app.register(lookalike, PASSWORD).await, 409).await;
        assert_eq!(b["type"], "/problems/email-taken", "{lookalike:?}");
    }
    // Invisible, direction-changing and special characters are refused outright.
    for hidden in [
        "vic\u{200B}tim@example.com",
        "\u{FEFF}victim@example.com",
        "vic\u{2060}tim@example.com",
        "victim\u{202E}@example.com",
        "<script>@example.com",
        "\"victim\"@example.com",
        "victim;drop@example.com",
        // A Cyrillic `і` among Latin letters: a look-alike of the victim.
        "v\u{456}ctim@example.com",
    ] {
        let b = problem(app.register(hidden, PASSWORD).await, 422).await;
        assert_eq!(b["errors"][0]["field"], "email", "{hidden:?}");
    }
    // So are display names that hide text.
    for name in ["Ada\u{200B}", "\u{202E}adA", "Ada\u{2028}Lovelace"] {
        let r = app
            .register_named("named@example.com", PASSWORD, name)
            .await;
        let b = problem(r, 422).await;
        assert_eq!(b["errors"][0]["field"], "name", "{name:?}");
    }
    // The fullwidth spelling reaches the one account.
    assert_eq!(
        app.login("ｖｉｃｔｉｍ@example.com", PASSWORD)
            .await
            .status(),
        200
    );

    let emails = emails(&app).await;
    assert_eq!(emails.len(), 2, "{emails:?}");
    assert!(
        emails.iter().any(|e| e == "victim@example.com"),
        "{emails:?}"
    );
}
both!(lookalike_and_hidden_emails_are_refused);

/// An address with characters beyond ASCII that looks like an existing
/// account's (its UTS #39 skeleton) cannot register: 409, as a duplicate.
async fn addresses_that_look_like_another_are_taken(app: TestApp) {
    use crate::helpers::PASSWORD;
    assert_eq!(
        app.register("alice@example.com", PASSWORD).await.status(),
        201
    );
    assert_eq!(
        app.register("coco@example.com", PASSWORD).await.status(),
        201
    );
    for lookalike in [
        "\u{251}lice@example.com",                  // Latin alpha
        "al\u{131}ce@example.com",                  // dotless i
        "\u{441}\u{43e}\u{441}\u{43e}@example.com", // all Cyrillic, looks like coco
        "alice@ex\u{251}mple.com",                  // in the domain
    ] {
        let r = app.register(lookalike, PASSWORD).await;
        let body = problem(r, 409).await;
        assert_eq!(body["type"], "/problems/email-taken", "{lookalike:?}");
    }
    // An address of its own in another script registers.
    assert_eq!(
        app.register("\u{43c}\u{438}\u{440}@example.com", PASSWORD)
            .await
            .status(),
        201
    );
    // Plain ASCII look-alikes are ordinary distinct mailboxes.
    assert_eq!(
        app.register("a1ice@example.com", PASSWORD).await.status(),
        201
    );
    // Two look-alikes beyond ASCII at once (Latin alpha and dotless i):
    // exactly one gets in.
    for round in 0..5 {
        let alpha = format!("\u{251}lice{round}@example.org");
        let dotless = format!("al\u{131}ce{round}@example.org");
        let (r1, r2) = tokio::join!(
            app.register(&alpha, PASSWORD),
            app.register(&dotless, PASSWORD)
        );
        let statuses = [r1.status().as_u16(), r2.status().as_u16()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
    }
}
both!(addresses_that_look_like_another_are_taken);
