//! Errors as `application/problem+json` (RFC 9457), from one place.
//!
//! Handlers return `Result<_, E>` where each service's error enum converts into
//! [`Problem`]; nothing else writes an error body. Internal errors are logged
//! where they are converted and answered with an opaque 500.

use std::borrow::Cow;
use std::fmt;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Serialize};

mod strict;

use strict::*;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answer. `kind` is the last segment of the `type` URI (`/problems/<kind>`).
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    title: Cow<'a, str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty", default)]
    errors: Cow<'a, [FieldError]>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self {
            status,
            kind,
            title,
            detail: None,
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A problem that says no more than its status (used for bare error responses).
    pub fn from_status(status: StatusCode) -> Self {
        let (kind, title) = match status {
            StatusCode::BAD_REQUEST => ("bad-request", "The request is malformed."),
            StatusCode::UNAUTHORIZED => return Self::unauthorized("Authentication is required."),
            StatusCode::FORBIDDEN => ("forbidden", "You are not allowed to do this."),
            StatusCode::NOT_FOUND => ("not-found", "There is nothing here."),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method-not-allowed", "This method is not allowed here.")
            }
            StatusCode::NOT_ACCEPTABLE => ("not-acceptable", "No acceptable representation."),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "The request took too long."),
            StatusCode::CONFLICT => ("conflict", "The request conflicts with the current state."),
            StatusCode::PAYLOAD_TOO_LARGE => {
                ("payload-too-large", "The request body is too large.")
            }
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                ("header-too-large", "The request headers are too large.")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported-media-type",
                "The request body has an unsupported content type.",
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ("validation-error", "The request is invalid."),
            StatusCode::TOO_MANY_REQUESTS => ("too-many-requests", "Too many requests."),
            StatusCode::BAD_GATEWAY => ("bad-gateway", "An upstream service failed."),
            StatusCode::SERVICE_UNAVAILABLE => {
                ("unavailable", "The service is unavailable; try again.")
            }
            StatusCode::GATEWAY_TIMEOUT => ("upstream-timeout", "An upstream service timed out."),
            s if s.is_server_error() => ("internal", "Something went wrong on our side."),
            _ => ("error", "The request failed."),
        };
        Self::new(status, kind, title)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::from_status(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`, as every missing or bad credential answers.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or invalid credentials.",
        )
        .with_detail(detail)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::from_status(StatusCode::FORBIDDEN).with_detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::from_status(StatusCode::NOT_FOUND).with_detail(detail)
    }

    pub fn conflict(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            kind,
            "The request conflicts with the current state.",
        )
        .with_detail(detail)
    }

    /// 422 listing every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut p = Self::from_status(StatusCode::UNPROCESSABLE_ENTITY).with_detail(detail);
        p.errors = errors;
        p
    }

    /// 429 with `Retry-After` in whole seconds (at least one).
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let secs = retry_after_secs.max(1);
        Self::from_status(StatusCode::TOO_MANY_REQUESTS)
            .with_detail(format!("Try again in {secs} seconds."))
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    /// The opaque 500. Log the cause before calling this; it is never sent.
    pub fn internal() -> Self {
        Self::from_status(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Serialises the body (also used by the middleware that problem-izes bare errors).
    ///
    /// Details and field errors often quote what the client sent (a field
    /// name, a value): each is cut to [`MAX_DETAIL`] bytes, and at most 50
    /// field errors are listed, so an error never repeats a huge input.
    pub fn body_json(&self) -> Vec<u8> {
        let errors: Vec<FieldError> = self
            .errors
            .iter()
            .take(50)
            .map(|e| FieldError::new(shorten(&e.field), shorten(&e.message)))
            .collect();
        let body = Body {
            kind: Cow::Owned(format!("/problems/{}", self.kind)),
            title: Cow::Borrowed(self.title),
            status: self.status.as_u16(),
            detail: self.detail.as_deref().map(|d| Cow::Owned(shorten(d))),
            errors: Cow::Owned(errors),
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body_json();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        response
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                    .with_detail("Send the body as JSON with `Content-Type: application/json`.")
            }
            JsonRejection::JsonSyntaxError(e) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "The body is not valid JSON.",
            )
            .with_detail(neutral(&e.body_text())),
            JsonRejection::JsonDataError(e) => {
                let text = e.body_text();
                // serde's message: `<field path>: <what was wrong> at line L column C`.
                // It names the expected Rust type (`expected struct LoginRequest`); `neutral`
                // rewrites those to JSON words and keeps the field path.
                let message = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&text);
                let detail = if message.contains(EXPECTED_OBJECT_BODY) {
                    NOT_AN_OBJECT.to_owned()
                } else {
                    neutral(message)
                };
                Problem::from_status(StatusCode::UNPROCESSABLE_ENTITY).with_detail(detail)
            }
            other => Problem::from_status(other.status()).with_detail(other.body_text()),
        }
    }
}

/// `Json<T>` whose rejections are problems (415, 400, 422, 413). A struct must be
/// sent as a JSON object; anything else is a 422 that names no Rust type.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("Send the body as JSON with `Content-Type: application/json`."));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| Problem::from_status(rejection.status()))?;
        // No store keeps a NUL (PostgreSQL refuses it in text and JSON): refuse
        // it here, for every body, before it can turn into a 500.
        if has_nul(&bytes) {
            return Err(Problem::validation(vec![FieldError::new(
                "body",
                "must not contain NUL characters",
            )]));
        }
        match axum::Json::<ObjectBody<T>>::from_bytes(&bytes) {
            Ok(axum::Json(ObjectBody(value))) => Ok(Self(value)),
            // serde_json reports some wrong values as syntax errors (a number
            // where an enum's name belongs: "expected value"). If the body is
            // valid JSON, it is a wrong value: 422, as other data errors.
            Err(JsonRejection::JsonSyntaxError(e))
                if std::str::from_utf8(&bytes).is_ok_and(|text| {
                    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
                }) =>
            {
                let text = e.body_text();
                let message = text
                    .strip_prefix("Failed to parse the request body as JSON: ")
                    .unwrap_or(&text);
                Err(Problem::from_status(StatusCode::UNPROCESSABLE_ENTITY)
                    .with_detail(neutral(message)))
            }
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// The most of a 500's cause that goes to the log.
pub const MAX_LOGGED_CAUSE: usize = 2000;

/// A 500's cause for the log: the whole chain on one line (`{:#}`), cut to at
/// most [`MAX_LOGGED_CAUSE`] bytes on a character boundary. Never log `?cause`:
/// anyhow's Debug form appends a backtrace when one was captured, per request.
pub fn logged_cause(cause: &anyhow::Error) -> String {
    let mut text = format!("{cause:#}");
    if text.len() > MAX_LOGGED_CAUSE {
        let cut = (0..=MAX_LOGGED_CAUSE)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str("… (truncated)");
    }
    text
}

/// `application/json` or any `application/…+json`, as axum's `Json` accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether a JSON text holds a NUL: a raw zero byte, or the escape `\u0000`
/// (an escape is one preceded by an odd number of backslashes).
fn has_nul(json: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in json.iter().enumerate() {
        if b == 0 {
            return true;
        }
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if b == b'u'
            && backslashes % 2 == 1
            && json
                .get(i + 1..i + 5)
                .is_some_and(|hex| hex.iter().all(|h| *h == b'0'))
        {
            return true;
        }
        backslashes = 0;
    }
    false
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path<T>` whose rejections are problems: a malformed id is a 400. A route whose
/// parameters do not fit `T` is a bug: logged, and answered with the opaque 500.
#[derive(Debug, Clone, Copy)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| {
                if e.status().is_server_error() {
                    // Names Rust types (`Unsupported type ...`, `Path<(_, _)>`): log only.
                    tracing::error!(error = %e.body_text(), "path parameters do not fit the extractor");
                    return Problem::internal();
                }
                Problem::bad_request(format!(
                    "Invalid path parameter: {}",
                    neutral(&e.body_text())
                ))
            })
    }
}

/// `Query<T>` whose rejections are problems (400).
#[derive(Debug, Clone, Copy)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| {
                Problem::bad_request(format!("Invalid query string: {}", neutral(&e.body_text())))
            })
    }
}

#[cfg(test)]
mod tests;
