//! Latency and transient failures, as a real provider has them. The
//! outermost layer of the provider's routes, outside the idempotency keys:
//! an answer lost after the work was done is still stored under its key, so
//! a retry with the same key learns what happened and nothing moves twice.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use emporium_http::Problem;
use uuid::Uuid;

use crate::config::ProviderSettings;

/// What a call suffers before (or after) it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// 503 at once; nothing was done.
    Refuse,
    /// Nothing for a long while, then 503; nothing was done.
    Hang,
    /// The work is done, the answer lost (503).
    LoseAnswer,
}

/// Which fault a call gets, from two uniform draws in [0, 1).
pub fn pick(b: &ProviderSettings, (first, second): (f64, f64)) -> Fault {
    if first >= b.failure_rate {
        Fault::None
    } else if second < b.refuse_share {
        Fault::Refuse
    } else if second < b.refuse_share + b.hang_share {
        Fault::Hang
    } else {
        Fault::LoseAnswer
    }
}

/// A uniform draw in [0, 1) from 53 random bits.
fn draw() -> f64 {
    let bits = (Uuid::new_v4().as_u128() as u64) & ((1 << 53) - 1);
    bits as f64 / (1_u64 << 53) as f64
}

fn unavailable() -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "provider-unavailable",
        "The provider is unavailable",
    )
    .with_detail("A transient failure; retry with the same Idempotency-Key.")
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    .into_response()
}

pub async fn faults(State(b): State<ProviderSettings>, request: Request, next: Next) -> Response {
    let jitter = (draw() * b.latency_jitter_ms as f64) as u64;
    let wait = Duration::from_millis(b.latency_ms.saturating_add(jitter));
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match pick(&b, (draw(), draw())) {
        Fault::None => next.run(request).await,
        Fault::Refuse => unavailable(),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_millis(b.hang_ms)).await;
            unavailable()
        }
        Fault::LoseAnswer => {
            drop(next.run(request).await);
            unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_decides_whether_and_the_second_draw_how() {
        let at = |failure_rate: f64| ProviderSettings {
            api_key: emporium_config::Secret::new("k"),
            latency_ms: 0,
            latency_jitter_ms: 0,
            failure_rate,
            refuse_share: 0.5,
            hang_share: 0.25,
            hang_ms: 0,
        };
        assert_eq!(pick(&at(0.0), (0.0, 0.0)), Fault::None);
        assert_eq!(pick(&at(0.3), (0.3, 0.0)), Fault::None);
        assert_eq!(pick(&at(0.3), (0.29, 0.49)), Fault::Refuse);
        assert_eq!(pick(&at(0.3), (0.0, 0.5)), Fault::Hang);
        assert_eq!(pick(&at(1.0), (0.99, 0.75)), Fault::LoseAnswer);
        let draws: Vec<f64> = (0..1000).map(|_| draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let below_half = draws.iter().filter(|d| **d < 0.5).count();
        assert!(
            (350..650).contains(&below_half),
            "{below_half} of 1000 below 0.5"
        );
    }
}
