//! Errors as `application/problem+json` (RFC 9457), from one place.
//!
//! Handlers return `Result<_, E>` where each service's error enum converts into
//! [`Problem`]; nothing else writes an error body. Internal errors are logged
//! where they are converted and answered with an opaque 500.

use std::borrow::Cow;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    pub fn body_json(&self) -> Vec<u8> {
        let body = Body {
            kind: Cow::Owned(format!("/problems/{}", self.kind)),
            title: Cow::Borrowed(self.title),
            status: self.status.as_u16(),
            detail: self.detail.as_deref().map(Cow::Borrowed),
            errors: Cow::Borrowed(&self.errors),
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
            .with_detail(e.body_text()),
            JsonRejection::JsonDataError(e) => {
                let text = e.body_text();
                // serde's message names the field and the expected type, never our internals.
                let detail = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&text)
                    .to_owned();
                Problem::from_status(StatusCode::UNPROCESSABLE_ENTITY).with_detail(detail)
            }
            other => Problem::from_status(other.status()).with_detail(other.body_text()),
        }
    }
}

/// `Json<T>` whose rejections are problems (415, 400, 422, 413).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path<T>` whose rejections are problems: a malformed id is a 400.
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
                Problem::bad_request(format!("Invalid path parameter: {}", e.body_text()))
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
                Problem::bad_request(format!("Invalid query string: {}", e.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
}
