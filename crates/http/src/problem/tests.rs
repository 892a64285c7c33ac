#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn problem_bodies_quote_little_of_the_input() {
    let key = "a".repeat(8_000);
    let problem = Problem::validation(
        (0..80)
            .map(|_| FieldError::new(format!("attr.{key}"), format!("{key} is unknown")))
            .collect(),
    )
    .with_detail(key.clone());
    let body = problem.body_json();
    assert!(
        body.len() < 50 * 2 * (MAX_DETAIL + 30) + MAX_DETAIL + 300,
        "{}",
        body.len()
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 50);
}

#[test]
fn details_repeat_at_most_a_bounded_part_of_the_input() {
    let huge = format!(
        "{}: invalid type: null, expected a string",
        "k".repeat(100_000)
    );
    let detail = neutral(&huge);
    assert!(detail.len() <= MAX_DETAIL + "…".len(), "{}", detail.len());
    assert!(detail.ends_with('…'));
}

#[test]
fn logged_causes_are_bounded_on_a_character_boundary() {
    assert_eq!(logged_cause(&anyhow::anyhow!("short")), "short");
    let chained = anyhow::anyhow!("inner").context("outer");
    assert_eq!(logged_cause(&chained), "outer: inner");
    let cut = logged_cause(&anyhow::anyhow!("é".repeat(3000)));
    assert!(cut.len() <= MAX_LOGGED_CAUSE + "… (truncated)".len());
    assert!(cut.ends_with("… (truncated)"));
    assert!(cut.starts_with("éé"));
}

#[test]
fn nul_characters_are_found_in_json_text() {
    assert!(has_nul(br#"{"name":"a\u0000b"}"#));
    assert!(
        has_nul(br#"{"name":"\\\u0000"}"#),
        "an escape after an escaped backslash"
    );
    assert!(has_nul(b"{\"name\":\"a\0b\"}"));
    assert!(
        !has_nul(br#"{"name":"\\u0000"}"#),
        "a backslash, then the text u0000"
    );
    assert!(!has_nul(br#"{"name":"\u0001 u0000"}"#));
}

#[test]
fn validation_lists_fields() {
    let p = Problem::validation(vec![FieldError::new("email", "is not an email address")]);
    let v: serde_json::Value = serde_json::from_slice(&p.body_json()).unwrap();
    assert_eq!(v["status"], 422);
    assert_eq!(v["type"], "/problems/validation-error");
    assert_eq!(v["errors"][0]["field"], "email");
}

#[test]
fn unauthorized_carries_the_bearer_challenge() {
    let r = Problem::unauthorized("x").into_response();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
}

#[test]
fn retry_after_is_at_least_one_second() {
    let r = Problem::too_many_requests(0).into_response();
    assert_eq!(r.headers()[header::RETRY_AFTER], "1");
}

#[test]
fn every_status_of_the_table_has_its_own_kind() {
    for (status, kind) in [
        (400, "bad-request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not-found"),
        (405, "method-not-allowed"),
        (406, "not-acceptable"),
        (408, "timeout"),
        (409, "conflict"),
        (413, "payload-too-large"),
        (415, "unsupported-media-type"),
        (422, "validation-error"),
        (429, "too-many-requests"),
        (431, "header-too-large"),
        (500, "internal"),
        (502, "bad-gateway"),
        (503, "unavailable"),
        (504, "upstream-timeout"),
        (501, "internal"),
        (418, "error"),
    ] {
        let p = Problem::from_status(StatusCode::from_u16(status).unwrap());
        assert_eq!(p.kind, kind, "{status}");
        assert_eq!(p.status.as_u16(), status);
    }
    let r = Problem::from_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).into_response();
    assert_eq!(r.status(), 431);
    assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
}

#[test]
fn serde_messages_lose_rust_type_names() {
    for (raw, want) in [
        (
            "invalid type: sequence, expected struct LoginRequest at line 1 column 0",
            "invalid type: sequence, expected an object at line 1 column 0",
        ),
        (
            "invalid length 0, expected struct LoginRequest with 2 elements at line 1 column 2",
            "invalid length 0, expected an object at line 1 column 2",
        ),
        (
            "invalid length 1, expected tuple struct Pair with 1 element",
            "invalid length 1, expected an array",
        ),
        (
            "address: invalid type: string \"x\", expected struct Address at line 1 column 15",
            "address: invalid type: string, expected an object at line 1 column 15",
        ),
        (
            "role: invalid type: integer `5`, expected enum Role at line 1 column 9",
            "role: invalid type: integer, expected an allowed value at line 1 column 9",
        ),
        (
            "data did not match any variant of untagged enum Shape",
            "data did not match any allowed form",
        ),
        (
            "delta: invalid type: floating point `-9.2e18`, expected i64 at line 1 column 29",
            "delta: invalid type: floating point, expected an integer in range at line 1 column 29",
        ),
        (
            "position: invalid value: integer `70000`, expected i16 at line 1 column 5",
            "position: invalid value: integer, expected an integer in range at line 1 column 5",
        ),
        (
            "category_id: UUID parsing failed: invalid character: found `n` at 0 at line 1 column 80",
            "category_id: not a UUID at line 1 column 80",
        ),
        (
            "invalid type: map, expected internally tagged enum Event",
            "invalid type: map, expected an object",
        ),
        (
            "invalid type: string \"a\", expected struct variant Shape::Circle",
            "invalid type: string, expected an object",
        ),
        (
            "invalid type: null, expected unit struct Marker,",
            "invalid type: null, expected null,",
        ),
        // Nothing to rewrite.
        (
            "missing field `email` at line 1 column 2",
            "missing field `email` at line 1 column 2",
        ),
        (
            "items[0].qty: invalid type: string \"1\", expected u32 at line 1 column 20",
            "items[0].qty: invalid type: string, expected an integer in range at line 1 column 20",
        ),
        (
            "unknown variant `x`, expected `customer` or `admin`",
            "unknown variant `x`, expected `customer` or `admin`",
        ),
        ("struct", "struct"),
        ("", ""),
    ] {
        assert_eq!(neutral(raw), want, "{raw:?}");
    }
}

mod extractors {
    #![allow(clippy::unwrap_used)]
    use super::super::*;
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    #[derive(Deserialize)]
    struct SecretRequestShape {
        name: String,
        count: u32,
        #[serde(default)]
        part: Option<HiddenPart>,
        #[serde(default)]
        kind: Option<HiddenKind>,
    }

    #[derive(Deserialize)]
    struct HiddenPart {
        label: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum HiddenKind {
        Plain,
        Fancy,
    }

    async fn shaped(AppJson(body): AppJson<SecretRequestShape>) -> String {
        let part = body.part.map(|p| p.label).unwrap_or_default();
        let kind = match body.kind {
            Some(HiddenKind::Plain) => "plain",
            Some(HiddenKind::Fancy) => "fancy",
            None => "",
        };
        format!("{} {} {part} {kind}", body.name, body.count)
    }

    async fn anything(AppJson(body): AppJson<serde_json::Value>) -> String {
        body.to_string()
    }

    async fn listed(AppJson(body): AppJson<Vec<u32>>) -> String {
        body.len().to_string()
    }

    async fn by_id(AppPath(id): AppPath<u64>) -> String {
        id.to_string()
    }

    async fn misrouted(AppPath((a, b)): AppPath<(u64, u64)>) -> String {
        format!("{a}{b}")
    }

    fn app() -> Router {
        Router::new()
            .route("/shaped", post(shaped))
            .route("/anything", post(anything))
            .route("/listed", post(listed))
            .route("/items/{id}", get(by_id))
            .route("/misrouted/{id}", get(misrouted))
    }

    async fn call(request: axum::http::Request<Body>) -> (StatusCode, String, String) {
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn post_json(path: &str, body: &str) -> (StatusCode, String, String) {
        call(
            axum::http::Request::post(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
    }

    fn assert_names_no_type(body: &str) {
        for name in [
            "SecretRequestShape",
            "HiddenPart",
            "HiddenKind",
            "struct",
            "enum",
        ] {
            assert!(!body.contains(name), "{name} in {body}");
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_a_422_naming_no_type() {
        // `["a", 1]` would have been accepted as the struct's fields in order.
        for body in [
            "[1,2]",
            "[\"a\", 1]",
            "[]",
            " [ ] ",
            "\"text\"",
            "5",
            "true",
            "null",
        ] {
            let (status, content_type, text) = post_json("/shaped", body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
            assert_eq!(content_type, PROBLEM_JSON, "{body}");
            assert_names_no_type(&text);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "/problems/validation-error");
            assert_eq!(v["detail"], NOT_AN_OBJECT, "{body}");
        }
    }

    #[tokio::test]
    async fn invalid_utf8_in_a_string_is_malformed_json() {
        let mut body = br#"{"name": ""#.to_vec();
        body.extend_from_slice(b"\xff\xfe");
        body.extend_from_slice(br#"", "count": 1}"#);
        let (status, _, text) = call(
            axum::http::Request::post("/shaped")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("/problems/malformed-json"), "{text}");
    }

    #[tokio::test]
    async fn nested_type_errors_keep_the_field_and_name_no_type() {
        for (body, field) in [
            (r#"{"name": "a", "count": 1, "part": "x"}"#, "part: "),
            (r#"{"name": "a", "count": 1, "part": []}"#, "part: "),
            (r#"{"name": "a", "count": 1, "part": [1]}"#, "part: "),
            // serde alone takes an array for a struct's fields in order.
            (r#"{"name": "a", "count": 1, "part": ["x"]}"#, "part: "),
            (r#"{"name": "a", "count": 1, "kind": "weird"}"#, "kind: "),
            // serde_json calls these syntax errors; they are values.
            (r#"{"name": "a", "count": 1, "kind": 5}"#, "kind: "),
            (r#"{"name": "a", "count": 1, "kind": ["plain"]}"#, "kind: "),
            (r#"{"name": "a", "count": "1"}"#, "count: "),
        ] {
            let (status, content_type, text) = post_json("/shaped", body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
            assert_eq!(content_type, PROBLEM_JSON);
            assert_names_no_type(&text);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let detail = v["detail"].as_str().unwrap();
            assert!(detail.starts_with(field), "{body}: {detail}");
        }
        let (status, _, text) = post_json("/shaped", r#"{"name": "a"}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text.contains("missing field `count`"), "{text}");
    }

    #[tokio::test]
    async fn objects_and_other_shapes_still_work() {
        let (status, _, text) = post_json(
            "/shaped",
            r#"{"name": "a", "count": 2, "part": {"label": "b"}, "kind": "fancy"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(text, "a 2 b fancy");
        // Handlers that take any value or a list still get arrays.
        let (status, _, text) = post_json("/anything", "[1,2]").await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "[1,2]"));
        let (status, _, text) = post_json("/listed", "[1,2,3]").await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "3"));
        // Syntax errors and content types are as before.
        let (status, content_type, text) = post_json("/shaped", r#"{"name": "#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type, PROBLEM_JSON);
        assert!(text.contains("/problems/malformed-json"), "{text}");
        let (status, content_type, _) = call(
            axum::http::Request::post("/shaped")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("[1,2]"))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(content_type, PROBLEM_JSON);
    }

    #[tokio::test]
    async fn path_errors_are_400_and_misfits_an_opaque_500() {
        let request = |uri: &str| axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let (status, _, text) = call(request("/items/7")).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "7"));
        let (status, content_type, text) = call(request("/items/abc")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type, PROBLEM_JSON);
        assert!(text.contains("Invalid path parameter"), "{text}");
        let (status, content_type, text) = call(request("/misrouted/1")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, PROBLEM_JSON);
        assert!(!text.contains("Path<"), "{text}");
        assert!(text.contains("/problems/internal"), "{text}");
    }
}

/// What a client sent with the wrong type is not repeated: a card number or a
/// password must not come back in an error (or reach a log through one).
#[test]
fn values_the_input_held_are_not_repeated() {
    for (raw, want) in [
        (
            "number: invalid type: integer `4242424242424242`, expected a string at line 1 column 26",
            "number: invalid type: integer, expected a string at line 1 column 26",
        ),
        (
            "exp_month: invalid type: string \"4242 \\\" 4242\", expected i64 at line 1 column 40",
            "exp_month: invalid type: string, expected an integer in range at line 1 column 40",
        ),
        (
            "amount: invalid value: integer `-300`, expected u8",
            "amount: invalid value: integer, expected an integer in range",
        ),
        (
            "x: invalid type: floating point `1.5`, expected i64",
            "x: invalid type: floating point, expected an integer in range",
        ),
        (
            "x: invalid type: boolean `true`, expected a string",
            "x: invalid type: boolean, expected a string",
        ),
        ("a string with no value", "a string with no value"),
        (
            "unknown field `pin`, expected one of `a`, `b`",
            "unknown field `pin`, expected one of `a`, `b`",
        ),
    ] {
        assert_eq!(neutral(raw), want, "{raw:?}");
    }
}
