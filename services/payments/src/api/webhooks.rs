//! `POST /api/v1/payments/webhooks`: the card provider's notifications,
//! signed with the shared secret (HMAC-SHA256 over timestamp and body). A bad
//! signature answers 401 `webhook-signature-invalid` and a stale timestamp
//! 400 `webhook-stale`, before the body is read
//! as JSON; a notification already processed answers 200 and changes nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use emporium_auth::webhook::{self, SignatureError};
use emporium_contracts::provider::{Notification, webhook::SIGNATURE_HEADER};
use emporium_http::{FieldError, Problem};
use serde::Serialize;

use super::{ApiResult, AppState};
use crate::service::PayError;
use crate::store::Noticed;

#[derive(Serialize)]
struct Received {
    /// `applied`, `duplicate` (processed before), `unknown` (no such
    /// payment) or `ignored` (it does not fit the payment).
    outcome: &'static str,
}

#[utoipa::path(post, path = "/api/v1/payments/webhooks",
    params(("provider-signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">")),
    responses((status = 200), (status = 400, description = "stale timestamp or malformed body"), (status = 401, description = "bad signature")))]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = state.0.payments.clock.now_ms().div_euclid(1000);
    let secret = state.0.webhook_secret.expose().as_bytes();
    let tolerance = state.0.webhook_tolerance_secs;
    if let Err(e) = webhook::verify(secret, signature, &body, now, tolerance) {
        metrics::counter!("payment_webhooks_refused_total", "reason" => reason(e)).increment(1);
        return Err(match e {
            SignatureError::Stale => Problem::new(
                StatusCode::BAD_REQUEST,
                "webhook-stale",
                "The notification's timestamp is outside the accepted window",
            ),
            _ => Problem::new(
                StatusCode::UNAUTHORIZED,
                "webhook-signature-invalid",
                "The notification's signature is missing or does not match",
            ),
        }
        .into());
    }
    let notification: Notification = serde_json::from_slice(&body).map_err(|_| {
        PayError::Invalid(vec![FieldError::new(
            "body",
            "is not a provider notification",
        )])
    })?;
    let outcome = match state.0.payments.notice(&notification).await? {
        Noticed::Applied => "applied",
        Noticed::Duplicate => "duplicate",
        Noticed::Unknown => "unknown",
        Noticed::Ignored => "ignored",
    };
    metrics::counter!("payment_webhooks_total", "outcome" => outcome).increment(1);
    Ok(axum::Json(Received { outcome }).into_response())
}

fn reason(e: SignatureError) -> &'static str {
    match e {
        SignatureError::Malformed => "malformed",
        SignatureError::Mismatch => "mismatch",
        SignatureError::Stale => "stale",
    }
}
