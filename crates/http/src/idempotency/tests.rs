#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn keys_are_one_to_255_visible_ascii_characters() {
    let check = |value: &[u8]| {
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_bytes(value).unwrap());
        key_of(&headers)
    };
    assert_eq!(key_of(&HeaderMap::new()), Ok(None));
    assert_eq!(check(b"abc-123"), Ok(Some("abc-123".to_owned())));
    assert_eq!(check(&[b'k'; 255][..]), Ok(Some("k".repeat(255))));
    let bad: [&[u8]; 5] = [b"", &[b'k'; 256], b"a b", b"a\tb", b"caf\xc3\xa9"];
    for bad in bad {
        assert_eq!(check(bad), Err(InvalidKey), "{bad:?}");
    }
    let mut twice = HeaderMap::new();
    twice.append(IDEMPOTENCY_KEY, HeaderValue::from_static("a"));
    twice.append(IDEMPOTENCY_KEY, HeaderValue::from_static("a"));
    assert_eq!(key_of(&twice), Err(InvalidKey));
}

#[test]
fn fingerprints_tell_requests_apart() {
    let a = fingerprint(&Method::POST, "/orders", b"{}");
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a, fingerprint(&Method::POST, "/orders", b"{}"));
    assert_ne!(a, fingerprint(&Method::PUT, "/orders", b"{}"));
    assert_ne!(a, fingerprint(&Method::POST, "/orders?x=1", b"{}"));
    assert_ne!(a, fingerprint(&Method::POST, "/orders", b"{ }"));
}

#[test]
fn only_the_listed_headers_are_stored() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::LOCATION, HeaderValue::from_static("/orders/1"));
    headers.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
    headers.insert("x-request-id", HeaderValue::from_static("r"));
    let stored = stored_headers(&headers);
    let parsed: Vec<(String, String)> = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        parsed,
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("location".to_owned(), "/orders/1".to_owned()),
        ]
    );
}
