//! Tokens between the shop and its callers, and between services.
//!
//! The accounts service signs; every service verifies locally with the public
//! keys from the accounts JWKS, so no request waits on accounts to be checked.
//!
//! ## Layout
//! - [`claims`]: what an access or service token says, and the token types.
//! - [`verifier`]: [`Verifier`] pins EdDSA, checks issuer, audience, expiry,
//!   not-before and token type, and keeps the JWKS cached, refetching on an
//!   unknown `kid` no more often than a floor allows.
//! - [`revocations`]: the deny list of subjects and sessions revoked before
//!   their tokens expire, which [`Verifier`] consults.
//! - [`extract`]: axum extractors [`AuthUser`], [`MaybeUser`], [`Admin`], [`ServiceCaller`].
//! - [`webhook`]: signing and checking webhook bodies (HMAC-SHA256 over timestamp and body).
//! - `testing` (feature `testing`): real keys held in memory, for tests and benchmarks.

pub mod claims;
pub mod extract;
pub mod revocations;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verifier;
pub mod webhook;

pub use claims::{Claims, Role, TokenType};
pub use extract::{Admin, AuthUser, MaybeUser, ServiceCaller};
pub use revocations::Revocations;
pub use verifier::{AuthSettings, HttpJwks, JwksSource, Verifier, VerifierSettings, VerifyError};
