//! [`ServiceClient`]: one upstream, and the calls made to it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use emporium_http::RequestContext;
use emporium_http::middleware::{REQUEST_ID, TRACEPARENT};
use emporium_telemetry::{Span, SpanKind, TraceParent};
use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CallError, RemoteProblem};
use crate::token::TokenSource;

/// The header that makes a non-idempotent call safe to repeat.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Timeouts and retries of one upstream (`[clients.<name>]` in a service's settings).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    /// Each attempt must be answered within this.
    pub timeout_ms: u64,
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The first backoff; each retry doubles it, up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 2_000,
            max_attempts: 3,
            backoff_base_ms: 50,
            backoff_max_ms: 1_000,
        }
    }
}

/// A successful answer: its status and decoded body.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub status: StatusCode,
    pub body: T,
}

/// Calls to one other service. Cheap to clone; build once per upstream.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: reqwest::Url,
    tokens: Arc<dyn TokenSource>,
    settings: ClientSettings,
    /// An outside party (the card provider): its calls are spans of ours,
    /// but no trace context or request id is sent to it.
    outside: bool,
}

impl ServiceClient {
    /// `http` is the process's pooled client (`emporium_http::tls::client`);
    /// `base` the upstream's origin, e.g. `https://catalog:8443`.
    pub fn new(
        http: reqwest::Client,
        base: reqwest::Url,
        tokens: Arc<dyn TokenSource>,
        settings: ClientSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                base,
                tokens,
                settings,
                outside: false,
            }),
        }
    }

    /// The same upstream as an outside party: calls to it are still spans
    /// of the request they are made for, but its `traceparent` and
    /// `x-request-id` stay here.
    pub fn outside_party(self) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                base: inner.base.clone(),
                tokens: inner.tokens.clone(),
                settings: inner.settings.clone(),
                outside: true,
            }),
        }
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// A call of `method` on `path` (absolute, starting with `/`).
    pub fn call(&self, method: Method, path: impl Into<String>) -> Call<'_> {
        Call {
            client: self,
            method,
            path: path.into(),
            body: None,
            key: None,
            context: None,
            timeout: Duration::from_millis(self.inner.settings.timeout_ms),
        }
    }

    pub fn get(&self, path: impl Into<String>) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: impl Into<String>) -> Call<'_> {
        self.call(Method::POST, path)
    }

    fn backoff(&self, retry: u32, retry_after_s: Option<u64>) -> Duration {
        let s = &self.inner.settings;
        let ceiling = s
            .backoff_base_ms
            .saturating_mul(1u64 << retry.min(16))
            .min(s.backoff_max_ms);
        // Full jitter: anywhere between nothing and the ceiling, so callers
        // that failed together do not come back together.
        let jitter = uuid::Uuid::new_v4().as_u64_pair().0 % ceiling.saturating_add(1);
        let wait = match retry_after_s {
            Some(after) => after
                .saturating_mul(1_000)
                .min(s.backoff_max_ms)
                .max(jitter),
            None => jitter,
        };
        Duration::from_millis(wait)
    }
}

/// One call being built. Nothing is sent until [`send`](Call::send).
#[derive(Debug)]
pub struct Call<'c> {
    client: &'c ServiceClient,
    method: Method,
    path: String,
    body: Option<Bytes>,
    key: Option<HeaderValue>,
    context: Option<&'c RequestContext>,
    timeout: Duration,
}

impl<'c> Call<'c> {
    /// The JSON body, serialized once for every attempt.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Request(e.to_string()))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }

    /// Sends `Idempotency-Key: key` and allows retries of a non-idempotent method.
    /// Keys are 1–255 visible ASCII characters; anything else fails the call.
    pub fn idempotency_key(mut self, key: &str) -> Result<Self, CallError> {
        let valid = (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(CallError::Request(
                "an idempotency key is 1 to 255 visible ASCII characters".into(),
            ));
        }
        self.key = HeaderValue::from_str(key).ok();
        Ok(self)
    }

    /// The request this call is made on behalf of: its id and trace go along.
    pub fn context(mut self, context: &'c RequestContext) -> Self {
        self.context = Some(context);
        self
    }

    /// Overrides the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether repeating this call cannot do a thing twice.
    fn repeatable(&self) -> bool {
        self.key.is_some() || self.method.is_idempotent()
    }

    /// Sends the call (with retries where safe) and decodes a 2xx body as `T`
    /// (`serde::de::IgnoredAny` to ignore it).
    pub async fn send<T: DeserializeOwned>(self) -> Result<Reply<T>, CallError> {
        let attempts = if self.repeatable() {
            self.client.inner.settings.max_attempts.max(1)
        } else {
            1
        };
        let mut refreshed_token = false;
        let mut attempt = 0;
        // Whether any attempt may have reached the other side.
        let mut maybe_sent = false;
        loop {
            attempt += 1;
            let result = self.traced_attempt(attempt).await;
            let error = match result {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            // A refused token may be one the other side no longer trusts (a
            // rotated key, a revocation): fetch another once and try again.
            if let (CallError::Problem(p), false) = (&error.0, refreshed_token)
                && p.status == 401
                && let Some(token) = &error.1
            {
                refreshed_token = true;
                self.client.inner.tokens.invalidate(token);
                continue;
            }
            let error = match error.0 {
                CallError::NotSent(e) if maybe_sent => CallError::Unreachable(e),
                e => e,
            };
            maybe_sent |= !error.never_sent();
            if attempt >= attempts || !error.is_retryable() {
                return Err(error);
            }
            let wait = self
                .client
                .backoff(attempt - 1, error.problem().and_then(|p| p.retry_after_s));
            tracing::info!(method = %self.method, path = %self.path, attempt, error = %error,
                wait_ms = wait.as_millis() as u64, "Retrying a call to another service.");
            metrics::counter!("service_client_retries_total").increment(1);
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt as a client span of the request it is made for: the
    /// `traceparent` sent names this span, so the service called continues
    /// the trace under it. Without a request, no span and no trace context.
    async fn traced_attempt<T: DeserializeOwned>(
        &self,
        attempt: u32,
    ) -> Result<Reply<T>, (CallError, Option<Arc<str>>)> {
        // The request this call is made for: the one it was handed, else the
        // one the task is serving.
        let current;
        let context = match self.context {
            Some(context) => context,
            None => match RequestContext::current() {
                Some(found) => {
                    current = found;
                    &current
                }
                None => return self.attempt(None).await,
            },
        };
        let own = context.trace.child();
        let base = &self.client.inner.base;
        let mut span = Span::start(
            context.service,
            SpanKind::Client,
            &own,
            Some(context.trace.parent_id),
            || format!("{} {}", self.method, base.host_str().unwrap_or_default()).into(),
        );
        if span.is_recording() {
            span.set("http.request.method", self.method.to_string());
            span.set(
                "server.address",
                base.host_str().unwrap_or_default().to_owned(),
            );
            if let Some(port) = base.port_or_known_default() {
                span.set("server.port", i64::from(port));
            }
            span.set_text("url.path", &self.path);
            if attempt > 1 {
                span.set("http.request.resend_count", i64::from(attempt - 1));
            }
        }
        let sent = (!self.client.inner.outside).then_some((&own, context.request_id.as_str()));
        let result = self.attempt(sent).await;
        match &result {
            Ok(reply) => span.set(
                "http.response.status_code",
                i64::from(reply.status.as_u16()),
            ),
            Err((CallError::Problem(p), _)) => {
                span.set("http.response.status_code", i64::from(p.status));
                if p.status >= 500 {
                    span.set("error.type", p.status.to_string());
                    span.fail(format!("answered {}", p.status));
                }
            }
            Err((e, _)) => {
                span.set("error.type", e.kind());
                span.fail(e.to_string());
            }
        }
        result
    }

    /// One attempt, sending `sent`'s trace context and request id when
    /// given; on failure also the token it used (to invalidate on 401).
    async fn attempt<T: DeserializeOwned>(
        &self,
        sent: Option<(&TraceParent, &str)>,
    ) -> Result<Reply<T>, (CallError, Option<Arc<str>>)> {
        let token = self
            .client
            .inner
            .tokens
            .token()
            .await
            .map_err(|e| (e, None))?;
        let fail = |e: CallError| (e, Some(token.clone()));
        let url = self
            .client
            .inner
            .base
            .join(&self.path)
            .map_err(|e| fail(CallError::Request(format!("bad path {:?}: {e}", self.path))))?;
        let mut request = self
            .client
            .inner
            .http
            .request(self.method.clone(), url)
            .timeout(self.timeout)
            .bearer_auth(&token)
            .header(http::header::ACCEPT, "application/json");
        if let Some((trace, request_id)) = sent {
            request = request
                .header(REQUEST_ID, request_id)
                .header(TRACEPARENT, trace.header_value());
        }
        if let Some(key) = &self.key {
            request = request.header(IDEMPOTENCY_KEY, key.clone());
        }
        if let Some(body) = &self.body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| fail(CallError::from_reqwest(&e, self.timeout)))?;
        let status = response.status();
        if status.is_success() {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| fail(CallError::from_reqwest(&e, self.timeout)))?;
            let body = if bytes.is_empty() {
                serde_json::from_slice(b"null")
            } else {
                serde_json::from_slice(&bytes)
            }
            .map_err(|e| {
                fail(CallError::Decode(format!(
                    "{} {}: {e}",
                    self.method, self.path
                )))
            })?;
            return Ok(Reply { status, body });
        }
        let retry_after_s = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = response.bytes().await.unwrap_or_default();
        let problem = RemoteProblem::from_answer(status, &bytes, retry_after_s);
        Err(fail(CallError::Problem(problem)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::token::StaticToken;

    fn client(settings: ClientSettings) -> ServiceClient {
        ServiceClient::new(
            reqwest::Client::new(),
            reqwest::Url::parse("https://catalog.invalid").unwrap(),
            Arc::new(StaticToken::new("t")),
            settings,
        )
    }

    #[test]
    fn backoff_stays_under_its_ceiling_and_honours_retry_after() {
        let c = client(ClientSettings::default());
        for retry in 0..40 {
            let ceiling = (50u64 << retry.min(16)).min(1_000);
            assert!(c.backoff(retry, None) <= Duration::from_millis(ceiling));
        }
        // Full jitter: spread over the whole window, not a fixed wait.
        let waits: Vec<Duration> = (0..200).map(|_| c.backoff(3, None)).collect();
        let ceiling = Duration::from_millis(400);
        assert!(waits.iter().any(|w| *w > ceiling / 2), "{waits:?}");
        assert!(waits.iter().any(|w| *w < ceiling / 2), "{waits:?}");
        assert!(c.backoff(0, Some(1)) >= Duration::from_millis(1_000));
        assert_eq!(
            c.backoff(0, Some(3_600)),
            Duration::from_millis(1_000),
            "capped"
        );
    }

    #[test]
    fn only_keyed_or_idempotent_calls_repeat() {
        let c = client(ClientSettings::default());
        assert!(c.get("/x").repeatable());
        assert!(!c.post("/x").repeatable());
        assert!(
            c.post("/x")
                .idempotency_key("order-1:reserve")
                .unwrap()
                .repeatable()
        );
        for bad in ["", "a b", "ü", &"k".repeat(256)] {
            assert!(c.post("/x").idempotency_key(bad).is_err(), "{bad:?}");
        }
    }
}
