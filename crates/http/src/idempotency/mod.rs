//! `Idempotency-Key` for unsafe requests, with the semantics of Stripe's API.
//!
//! A client that may retry a request (`POST /orders` after a timeout) sends a
//! key it made up, unique per operation (a UUID); the layer makes sure the
//! operation runs at most once per key and answers every retry with the
//! first answer.
//!
//! ## Semantics
//! - Keys belong to a caller ([`IdempotencyLayer::principal`], as Stripe scopes
//!   them per account): two callers may use the same key independently. A
//!   request without a caller passes through untouched, so the handler can
//!   answer 401. Safe methods (GET, HEAD, OPTIONS, TRACE) always pass through.
//! - The key is 1–255 visible ASCII characters; without one the answer is 400
//!   `idempotency-key-missing` (unless [`IdempotencyLayer::required`] is off,
//!   when the request passes through), a malformed one is 400
//!   `idempotency-key-invalid`.
//! - A request is identified by the SHA-256 of its method, path and query, and
//!   body ([`fingerprint`]). A key used again with another request is 422
//!   `idempotency-key-reused`.
//! - The first request with a key claims it in one statement and runs. While
//!   it runs, every other request with the key is 409 `idempotency-key-in-use`
//!   with `Retry-After: 1`: concurrent requests execute once, and the others
//!   are told to retry rather than wait. Once it has finished, a retry gets
//!   the stored answer (status, the headers `Content-Type`, `Location`,
//!   `ETag`, `Cache-Control`, `Retry-After`, and the body) with
//!   `Idempotent-Replayed: true`; headers added by outer layers (request id,
//!   security headers) are added to the replay by those layers again.
//! - Only answers of requests that ran to a result are stored. A 5xx (our
//!   handlers are transactional: it committed nothing), 401, 403, 408 or 429
//!   forgets the key, so that a retry executes again. So does an answer body
//!   larger than 1 MiB, which is returned but not stored.
//! - The running request holds a lease ([`IdempotencyLayer::lease`], 60 s):
//!   if its executor died (crash, panic, dropped connection), a retry after
//!   the lease takes the key over and executes. The lease must exceed the
//!   request timeout, or a slow request may run twice. The lease's end also
//!   fences the first executor: once taken over, its result is not stored.
//! - Keys expire [`IdempotencyLayer::ttl`] (24 h) after their request began:
//!   the same key then executes again. Expired rows are purged by
//!   [`IdempotencyLayer::purge_expired`], which the layer also runs in the
//!   background at most once per [`IdempotencyLayer::purge_interval`].
//!
//! All times come from the injected [`Clock`](emporium_db::Clock). Services
//! create the table with [`migrate`] beside their own migrations.

mod store;
mod wire;

use store::Claim;
use wire::*;
pub use wire::{InvalidKey, fingerprint, key_of};

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use emporium_db::{Db, SharedClock};
use futures_util::StreamExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::{Layer, Service, ServiceExt};

use crate::problem::{Problem, logged_cause};
pub use store::{MIGRATIONS, migrate};

/// The request header carrying the key.
/// The answers about a key itself, for the layer and for handlers that read
/// a key of their own (`key_of`).
pub mod problems {
    use axum::http::StatusCode;

    use crate::Problem;

    /// 400: a key is required and none was sent.
    pub fn missing() -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "idempotency-key-missing",
            "The Idempotency-Key header is required.",
        )
        .with_detail("Send a unique key (a UUID) per operation in Idempotency-Key.")
    }

    /// 400: the key is not 1 to 255 visible ASCII characters, or came twice.
    pub fn invalid() -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "idempotency-key-invalid",
            "The Idempotency-Key header is invalid.",
        )
        .with_detail("Send one key of 1 to 255 visible ASCII characters.")
    }

    /// 422: the key was used with a different request.
    pub fn reused() -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "This idempotency key was used with a different request.",
        )
        .with_detail("Use a new Idempotency-Key for a different request.")
    }
}

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set to `true` on an answer replayed from the store.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Largest request body fingerprinted, and largest answer body stored.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The answer headers stored and replayed.
const KEPT_HEADERS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::ETAG,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
];

/// Who a request's key belongs to; `None` lets the request pass through.
pub type PrincipalFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// How long an [`IdempotencyLayer`] keeps and leases keys.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a key is remembered after its request began (24 h).
    pub ttl: Duration,
    /// How long a running request holds its key before a retry may take it
    /// over (60 s).
    pub lease: Duration,
    /// The least time between two background purges (60 s).
    pub purge_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 60 * 60),
            lease: Duration::from_secs(60),
            purge_interval: Duration::from_secs(60),
        }
    }
}

/// The idempotency layer: a [`tower::Layer`] for a route
/// (`post(create).layer(idempotency)`), or the state of the [`idempotency`]
/// middleware function.
#[derive(Clone)]
pub struct IdempotencyLayer {
    db: Db,
    clock: SharedClock,
    principal: PrincipalFn,
    required: bool,
    timing: Timing,
    /// Clock time (ms) of the last background purge, shared by all clones.
    last_purge: Arc<AtomicI64>,
}

impl std::fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("engine", &self.db.engine())
            .field("required", &self.required)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayer {
    /// Keys required, kept 24 h, leases of 60 s, and every request in one
    /// key space until [`principal`](Self::principal) says whose it is (set
    /// it in every service with more than one caller).
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self {
            db,
            clock,
            principal: Arc::new(|_: &Parts| Some(String::new())),
            required: true,
            timing: Timing::default(),
            last_purge: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Who the key belongs to (the account, the user); `None` passes the
    /// request through untouched so the handler can answer 401.
    pub fn principal(mut self, principal: PrincipalFn) -> Self {
        self.principal = principal;
        self
    }

    /// Whether a request without a key is refused (400, the default) or
    /// passes through.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// How long keys are kept and leased, and how often they are purged.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Deletes the keys older than the TTL; returns how many.
    pub async fn purge_expired(&self) -> anyhow::Result<u64> {
        self.purge_as_of(self.clock.now_ms()).await
    }

    /// Deletes the keys that had expired at `now` (the time the purge was
    /// decided on, not when its task got to run).
    async fn purge_as_of(&self, now: i64) -> anyhow::Result<u64> {
        store::purge(&self.db, now.saturating_sub(ms(self.timing.ttl)), now).await
    }

    /// Runs a purge in the background if none ran within the purge interval.
    fn maybe_purge(&self, now: i64) {
        let last = self.last_purge.load(Ordering::Acquire);
        if last != i64::MIN && now.saturating_sub(last) < ms(self.timing.purge_interval) {
            return;
        }
        if self
            .last_purge
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let layer = self.clone();
        tokio::spawn(async move {
            match layer.purge_as_of(now).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "Expired idempotency keys purged."),
                Err(cause) => tracing::warn!(
                    error = %logged_cause(&cause),
                    "Purging expired idempotency keys failed."
                ),
            }
        });
    }

    /// Applies the idempotency rules to `request`; `run` executes it.
    pub async fn handle<F, Fut>(&self, request: Request, run: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        if is_safe(request.method()) {
            return run(request).await;
        }
        let (parts, body) = request.into_parts();
        let Some(principal) = (self.principal)(&parts) else {
            return run(Request::from_parts(parts, body)).await;
        };
        let key = match key_of(&parts.headers) {
            Ok(Some(key)) => key,
            Ok(None) if !self.required => {
                return run(Request::from_parts(parts, body)).await;
            }
            Ok(None) => {
                count("missing");
                return problems::missing().into_response();
            }
            Err(InvalidKey) => {
                count("invalid");
                return problems::invalid().into_response();
            }
        };
        let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                count("too_large");
                return Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE)
                    .with_detail("A request with an Idempotency-Key may carry at most 1 MiB.")
                    .into_response();
            }
            Err(_) => {
                return Problem::bad_request("The request body could not be read.").into_response();
            }
        };
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map(|OriginalUri(uri)| uri)
            .unwrap_or(&parts.uri)
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let fingerprint = fingerprint(&parts.method, &path, &bytes);
        let request = Request::from_parts(parts, Body::from(bytes));
        let claim = Claim {
            principal,
            key,
            locked_until: 0,
        };
        match self.claim(claim, &fingerprint).await {
            Ok(Claimed::Run(claim)) => self.execute(claim, request, run).await,
            Ok(Claimed::Answer(response)) => response,
            Err(cause) => {
                count("error");
                tracing::error!(error = %logged_cause(&cause), "Idempotency key lookup failed.");
                Problem::internal().into_response()
            }
        }
    }

    /// Claims the key (new, expired or abandoned) or tells what to answer instead.
    async fn claim(&self, mut claim: Claim, fingerprint: &str) -> anyhow::Result<Claimed> {
        // A row can vanish (a failed execution forgets it) or be taken over
        // between two statements; a few rounds settle it.
        for _ in 0..3 {
            let now = self.clock.now_ms();
            self.maybe_purge(now);
            claim.locked_until = now.saturating_add(ms(self.timing.lease));
            if store::insert(&self.db, &claim, fingerprint, now).await? {
                return Ok(Claimed::Run(claim));
            }
            let Some(row) = store::get(&self.db, &claim).await? else {
                continue;
            };
            let expired_before = now.saturating_sub(ms(self.timing.ttl));
            let expired = row.created_at < expired_before;
            let abandoned = row.state == store::IN_FLIGHT && row.locked_until < now;
            if expired || abandoned {
                let times = (now, expired_before);
                if store::take_over(&self.db, &claim, fingerprint, times).await? {
                    if abandoned && !expired {
                        tracing::warn!("An idempotency key whose lease ran out was taken over.");
                    }
                    return Ok(Claimed::Run(claim));
                }
                continue;
            }
            if row.fingerprint != fingerprint {
                count("reused");
                return Ok(Claimed::Answer(problems::reused().into_response()));
            }
            if row.state == store::DONE {
                count("replayed");
                return Ok(Claimed::Answer(replay(row)));
            }
            count("in_flight");
            return Ok(Claimed::Answer(in_use()));
        }
        count("in_flight");
        Ok(Claimed::Answer(in_use()))
    }

    /// Runs the claimed request and stores (or forgets) its answer.
    async fn execute<F, Fut>(&self, claim: Claim, request: Request, run: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        count("executed");
        let response = run(request).await;
        let status = response.status();
        if status.is_server_error() || matches!(status.as_u16(), 401 | 403 | 408 | 429) {
            self.release(&claim).await;
            return response;
        }
        let (parts, body) = response.into_parts();
        let bytes = match buffer(body).await {
            Buffered::Complete(bytes) => bytes,
            Buffered::TooLarge(body) => {
                tracing::warn!(
                    "An answer too large to store for its idempotency key was returned unstored."
                );
                self.release(&claim).await;
                return Response::from_parts(parts, body);
            }
            Buffered::Failed(e) => {
                tracing::error!(error = %e, "An answer body failed while being stored.");
                self.release(&claim).await;
                return Problem::internal().into_response();
            }
        };
        let headers = stored_headers(&parts.headers);
        let answer = store::Answer {
            status: i32::from(status.as_u16()),
            headers: &headers,
            body: &bytes,
        };
        let stored = store::finish(&self.db, &claim, &answer).await;
        match stored {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "An idempotent answer was not stored: the key's lease ran out and it was taken over."
            ),
            Err(cause) => tracing::error!(
                error = %logged_cause(&cause),
                "An idempotent answer could not be stored; the key stays in flight until its lease ends."
            ),
        }
        Response::from_parts(parts, Body::from(bytes))
    }

    /// Forgets the key so that a retry executes again.
    async fn release(&self, claim: &Claim) {
        match store::release(&self.db, claim).await {
            Ok(_) => {}
            Err(cause) => tracing::error!(
                error = %logged_cause(&cause),
                "An idempotency key could not be released; it stays in flight until its lease ends."
            ),
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`IdempotencyLayer`] wraps a route in.
#[derive(Clone, Debug)]
pub struct IdempotencyService<S> {
    inner: S,
    layer: IdempotencyLayer,
}

impl<S> Service<Request> for IdempotencyService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The ready service answers this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let run = move |request: Request| async move {
                match inner.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            Ok(layer.handle(request, run).await)
        })
    }
}

/// The layer as a middleware function, for
/// `axum::middleware::from_fn_with_state(layer, idempotency)` where a
/// [`tower::Layer`] does not fit.
pub async fn idempotency(
    State(layer): State<IdempotencyLayer>,
    request: Request,
    next: Next,
) -> Response {
    layer.handle(request, |request| next.run(request)).await
}

enum Claimed {
    Run(Claim),
    Answer(Response),
}

#[cfg(test)]
mod tests;
