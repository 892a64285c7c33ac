//! How one service calls another.
//!
//! A [`ServiceClient`] is built once per upstream and cloned freely: it holds
//! the pooled HTTPS client (connections and TLS sessions are reused, never a
//! handshake per call), the upstream's base URL, a [`TokenSource`] that keeps
//! one service token and refreshes it before it expires (never a token request
//! per call), and the [`ClientSettings`] for timeouts and retries.
//!
//! Every [`Call`] passes on the caller's request id and a child of its
//! `traceparent`, carries an optional `Idempotency-Key`, gives each attempt a
//! timeout, and decodes a problem+json answer into a [`CallError`] that says
//! whether trying again can help. Retries (bounded, exponential backoff with
//! full jitter, `Retry-After` honoured up to the cap) happen only for calls
//! that are safe to repeat: idempotent methods, or calls with a key.
//!
//! ## Layout
//! - [`call`]: [`ServiceClient`], [`Call`] and the retry loop.
//! - [`error`]: [`CallError`] and [`RemoteProblem`].
//! - [`token`]: [`TokenSource`], [`ClientCredentials`] (OAuth 2.0 against
//!   accounts) and [`StaticToken`].
//! - [`catalog`]: the typed clients of catalog's reservation API and its
//!   batched product lookup.
//! - [`payments`]: the typed client of payments' internal API.
//! - [`provider`]: the typed client of the card provider's API.

pub mod call;
pub mod catalog;
pub mod error;
pub mod payments;
pub mod provider;
pub mod token;

pub use call::{Call, ClientSettings, Reply, ServiceClient};
pub use error::{CallError, RemoteProblem};
pub use token::{ClientCredentials, StaticToken, TokenSource};
