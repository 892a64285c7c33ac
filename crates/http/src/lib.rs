//! HTTP plumbing shared by every service and the gateway.
//!
//! ## Layout
//! - [`problem`]: the one error body every listener answers with (RFC 9457
//!   `application/problem+json`), and the extractors that turn malformed input
//!   into it instead of axum's plain-text rejections.
//! - [`middleware`]: request ids, W3C trace context, the request span, metrics
//!   per route, and the safety net that turns any bare error response (unknown
//!   route, wrong method, oversized body, timeout, panic) into a problem.
//! - [`idempotency`]: `Idempotency-Key` on unsafe routes (Stripe's semantics):
//!   one execution per caller and key, stored answers replayed, keys in the
//!   service's own database.
//! - [`limits`]: connection caps (total, per client address) and the idle timeout.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.
//! - [`server`]: binding (port 0 in tests), HTTPS with rustls or plain HTTP behind
//!   an explicit flag, graceful shutdown that drains in-flight requests.
//! - [`text`]: what user-typed text may not contain (controls, invisible and
//!   bidirectional characters), for every service's validation.
//! - [`tls`]: the development certificate authority and service certificates,
//!   and the pooled HTTPS client that trusts it.
//! - [`paging`]: `Page<T>`, the `limit` rule and the cursor codec of every list.
//! - [`precondition`]: the `If-Match` extractor for versioned resources.
//! - [`time`]: RFC 3339 timestamps as every response shows them.
//! - [`store_error`]: how a `StoreError` is answered (409/422/503/500), once.
//! - [`rate`]: a rate limit per key (GCRA), checked and recorded at once.
//! - [`client`]: who the client is by address (trusted proxies, IPv6 by /64).
//! - [`shutdown`]: a cloneable shutdown signal fed by SIGINT/SIGTERM or a trigger.

pub mod client;
pub mod idempotency;
pub mod limits;
pub mod middleware;
pub mod ops;
pub mod paging;
pub mod path;
pub mod precondition;
pub mod problem;
pub mod rate;
pub mod server;
pub mod shutdown;
pub mod store_error;
pub mod text;
pub mod time;
pub mod tls;

pub use idempotency::IdempotencyLayer;
pub use middleware::{RequestContext, ServiceName, standard_layers};
pub use problem::{AppJson, AppPath, AppQuery, FieldError, Problem};
pub use server::{HttpServer, HttpSettings};
pub use shutdown::{Shutdown, ShutdownTrigger};
