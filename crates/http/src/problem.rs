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

/// The detail of a 422 for a body that is an array, a string, a number or `null`
/// where an object is expected.
const NOT_AN_OBJECT: &str = "The body must be a JSON object.";

/// What [`ObjectBody`] says it expected; serde puts it in its error message.
const EXPECTED_OBJECT_BODY: &str = "expected a JSON object body";

/// Phrases serde's derived impls use to say what they expected, each followed by a
/// Rust type name (`struct LoginRequest`, `enum Role`), and the JSON words that
/// replace phrase and name. Longer phrases first.
const TYPE_PHRASES: &[(&[&str], &str)] = &[
    (
        &["any", "variant", "of", "untagged", "enum"],
        "any allowed form",
    ),
    (&["internally", "tagged", "enum"], "an object"),
    (&["adjacently", "tagged", "enum"], "an object"),
    (&["untagged", "enum"], "an allowed value"),
    (&["struct", "variant"], "an object"),
    (&["tuple", "variant"], "an array"),
    (&["tuple", "struct"], "an array"),
    (&["unit", "struct"], "null"),
    (&["struct"], "an object"),
    (&["enum"], "an allowed value"),
];

/// Rewrites a serde error message so that it names no Rust type: `invalid type:
/// string "x", expected struct Address` becomes `... expected an object`, and
/// `struct Foo with 2 elements` loses its count too. Field paths, positions and
/// everything else are kept.
fn neutral(message: &str) -> String {
    let words: Vec<&str> = message.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    'words: while i < words.len() {
        for (phrase, replacement) in TYPE_PHRASES {
            let name_at = i + phrase.len();
            if words.get(i..name_at) != Some(*phrase) {
                continue;
            }
            let Some(mut tail) = words.get(name_at).and_then(|w| type_name_tail(w)) else {
                continue;
            };
            let mut next = name_at + 1;
            // `struct Foo with 3 elements`, from a struct sent as an array.
            if let [with, count, elements, ..] = words.get(next..).unwrap_or_default()
                && *with == "with"
                && count.parse::<usize>().is_ok()
                && elements.starts_with("element")
            {
                tail = elements
                    .trim_start_matches("elements")
                    .trim_start_matches("element");
                next += 3;
            }
            out.push(format!("{replacement}{tail}"));
            i = next;
            continue 'words;
        }
        out.push(primitive(words[i]));
        i += 1;
    }
    shorten(&uuid_failure(&out.join(" ")))
}

/// A Rust primitive type name (`i64`, `u32,`) as the JSON it asks for.
fn primitive(word: &str) -> String {
    let name = word.trim_end_matches([',', ';', '.', ')']);
    let tail = &word[name.len()..];
    let plain = match name {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "an integer in range",
        "f32" | "f64" => "a number",
        "char" => "one character",
        _ => return word.to_owned(),
    };
    format!("{plain}{tail}")
}

/// `UUID parsing failed: invalid character: found `n` at 0 at line 1 column 9`
/// (the uuid crate's words) as `not a UUID at line 1 column 9`.
fn uuid_failure(message: &str) -> String {
    let Some(start) = message.find("UUID parsing failed") else {
        return message.to_owned();
    };
    let rest = &message[start..];
    let end = rest.find(" at line ").unwrap_or(rest.len());
    format!("{}not a UUID{}", &message[..start], &rest[end..])
}

/// The most of a client's own input an error detail repeats.
const MAX_DETAIL: usize = 300;

/// Details quote field names and values the client sent: bounded, so a huge
/// key is not sent back whole.
fn shorten(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_owned();
    }
    let cut = (0..=MAX_DETAIL)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// If `word` is a Rust type name (`Foo`, `Foo::Bar`, `Foo<T>`), possibly followed by
/// punctuation, returns that punctuation.
fn type_name_tail(word: &str) -> Option<&str> {
    let name = word.trim_end_matches([',', ';', '.', ')']);
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_');
    let rust_chars = name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '<' | '>'));
    (starts_well && rust_chars).then_some(&word[name.len()..])
}

/// A request body that must be a JSON object when `T` is a struct.
///
/// serde_json lets a struct be written as an array of its field values
/// (`["a@b.co", "pw"]`), and refuses other values with a message naming the Rust
/// type. Here a struct asks for a map instead, so anything but an object is a
/// data error saying [`EXPECTED_OBJECT_BODY`]. Types that ask for something else
/// (`Vec<_>`, `serde_json::Value`) are deserialised as they always are. Only the
/// top level is affected.
struct ObjectBody<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(Strict {
            inner: deserializer,
            top: true,
        })
        .map(Self)
    }
}

/// A deserializer that passes everything through, except that a struct is
/// read as a map only, at every depth: serde would otherwise take
/// `"price": [1, "EUR"]` for `{"amount": 1, "currency": "EUR"}`.
struct Strict<D> {
    inner: D,
    /// The body itself, rather than a value inside it (for the message).
    top: bool,
}

/// A struct's visitor that only accepts a map.
struct ObjectVisitor<V> {
    inner: V,
    top: bool,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for ObjectVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.top {
            f.write_str(EXPECTED_OBJECT_BODY.trim_start_matches("expected "))
        } else {
            f.write_str("an object")
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(StrictMap(map))
    }
}

/// Any other visitor, whose nested values are read strictly too.
struct StrictVisitor<V>(V);

macro_rules! forward_visits {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: serde::de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visits! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Strict {
            inner: d,
            top: false,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Strict {
            inner: d,
            top: false,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(StrictSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(StrictMap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(data)
    }
}

/// The elements of an array, each read strictly.
struct StrictSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// The values of an object, each read strictly (keys as they are).
struct StrictMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict {
            inner: d,
            top: false,
        })
    }
}

macro_rules! forward_to_inner {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

macro_rules! forward_strictly {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* StrictVisitor(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(ObjectVisitor {
            inner: visitor,
            top: self.top,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    forward_strictly! {
        deserialize_any();
        deserialize_option();
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
    }

    forward_to_inner! {
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
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
mod tests {
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
                "address: invalid type: string \"x\", expected an object at line 1 column 15",
            ),
            (
                "role: invalid type: integer `5`, expected enum Role at line 1 column 9",
                "role: invalid type: integer `5`, expected an allowed value at line 1 column 9",
            ),
            (
                "data did not match any variant of untagged enum Shape",
                "data did not match any allowed form",
            ),
            (
                "delta: invalid type: floating point `-9.2e18`, expected i64 at line 1 column 29",
                "delta: invalid type: floating point `-9.2e18`, expected an integer in range at line 1 column 29",
            ),
            (
                "position: invalid value: integer `70000`, expected i16 at line 1 column 5",
                "position: invalid value: integer `70000`, expected an integer in range at line 1 column 5",
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
                "invalid type: string \"a\", expected an object",
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
                "items[0].qty: invalid type: string \"1\", expected an integer in range at line 1 column 20",
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
}
