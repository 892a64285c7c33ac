//! What goes over the wire: reading a body within its cap, the key and the
//! fingerprint of a request, and the answers stored, replayed or refused.

use super::*;

pub(super) enum Buffered {
    Complete(Bytes),
    /// Over [`MAX_BODY_BYTES`]: the whole body again, read part and rest.
    TooLarge(Body),
    Failed(axum::Error),
}

/// Reads an answer body up to [`MAX_BODY_BYTES`].
pub(super) async fn buffer(body: Body) -> Buffered {
    let mut stream = body.into_data_stream();
    let mut read: Vec<u8> = Vec::new();
    loop {
        let next = stream.next().await;
        let chunk = match next {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => return Buffered::Failed(e),
            None => break,
        };
        if read.len() + chunk.len() > MAX_BODY_BYTES {
            let head = [
                Ok::<Bytes, axum::Error>(Bytes::from(read)),
                Ok::<Bytes, axum::Error>(chunk),
            ];
            return Buffered::TooLarge(Body::from_stream(
                futures_util::stream::iter(head).chain(stream),
            ));
        }
        read.extend_from_slice(&chunk);
    }
    Buffered::Complete(Bytes::from(read))
}

/// The SHA-256 (hex) identifying a request: method, path and query, body.
pub fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> String {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    // Neither the method nor the path can hold a newline: the framing is unambiguous.
    digest.update(method.as_str().as_bytes());
    digest.update(b"\n");
    digest.update(path_and_query.as_bytes());
    digest.update(b"\n");
    digest.update(body);
    let mut hex = String::with_capacity(64);
    for byte in digest.finish().as_ref() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// An `Idempotency-Key` that is empty, too long, not visible ASCII, or sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidKey;

/// The key, if one was sent; `Err` if it is malformed or sent twice.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, InvalidKey> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidKey);
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(InvalidKey);
    }
    value
        .to_str()
        .map(|k| Some(k.to_owned()))
        .map_err(|_| InvalidKey)
}

pub(super) fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The kept headers as a JSON array of `[name, value]`.
pub(super) fn stored_headers(headers: &HeaderMap) -> String {
    let mut kept: Vec<(String, String)> = Vec::new();
    for name in KEPT_HEADERS {
        for value in headers.get_all(&name) {
            if let Ok(value) = value.to_str() {
                kept.push((name.as_str().to_owned(), value.to_owned()));
            }
        }
    }
    serde_json::to_string(&kept).unwrap_or_else(|_| "[]".to_owned())
}

/// The stored answer, marked as replayed.
pub(super) fn replay(row: store::KeyRow) -> Response {
    let status = row
        .response_status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok());
    let Some(status) = status else {
        tracing::error!("A stored idempotent answer has no valid status.");
        return Problem::internal().into_response();
    };
    let headers: Vec<(String, String)> = row
        .response_headers
        .as_deref()
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default();
    let mut response = Response::new(Body::from(row.response_body.unwrap_or_default()));
    *response.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

pub(super) fn in_use() -> Response {
    Problem::new(
        StatusCode::CONFLICT,
        "idempotency-key-in-use",
        "A request with this idempotency key is in progress.",
    )
    .with_detail("Retry after the first request with this key has finished.")
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    .into_response()
}

pub(super) fn count(outcome: &'static str) {
    metrics::counter!("idempotency_requests_total", "outcome" => outcome).increment(1);
}

pub(super) fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
