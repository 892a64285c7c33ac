//! Latency and transient failures, as a real provider has them. The
//! outermost layer of the provider's routes, outside the idempotency keys:
//! an answer lost after the work was done is still stored under its key, so
//! a retry with the same key learns what happened and nothing moves twice.
//!
//! The faults start as `[sandbox]` sets them and can be changed while the
//! sandbox runs through its [`FaultSwitch`]: the middleware reads them anew
//! on every call.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use emporium_http::Problem;
use uuid::Uuid;

/// What calls suffer: the fault keys of `[sandbox]` (see `defaults.toml`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Faults {
    /// Every call waits this long, plus up to `latency_jitter_ms` more.
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    /// The share of calls (0 to 1) that fail transiently.
    pub failure_rate: f64,
    /// Of the failing calls, the share refused at once and the share that
    /// hang; the rest lose their answer after the work is done.
    pub refuse_share: f64,
    pub hang_share: f64,
    /// How long a hanging call hangs before it answers 503.
    pub hang_ms: u64,
}

impl Faults {
    /// No latency and no failures: every call is served at once.
    pub const NONE: Self = Self {
        latency_ms: 0,
        latency_jitter_ms: 0,
        failure_rate: 0.0,
        refuse_share: 0.0,
        hang_share: 0.0,
        hang_ms: 0,
    };

    /// Refuses shares outside 0 to 1 (NaN included), naming the keys.
    pub fn check(&self) -> anyhow::Result<()> {
        let shares = [
            self.failure_rate,
            self.refuse_share,
            self.hang_share,
            self.refuse_share + self.hang_share,
        ];
        anyhow::ensure!(
            shares.iter().all(|x| (0.0..=1.0).contains(x)),
            "sandbox.failure_rate, refuse_share and hang_share must be between 0 and 1 \
             (the two shares together too)"
        );
        Ok(())
    }
}

/// The faults in force, changeable while the sandbox runs: for tests (a
/// provider that starts failing halfway through a payment) and for
/// operators' drills (turn failures on, watch payments ride them out, turn
/// them off) without a restart. It is reachable only from the code holding
/// the application ([`crate::Application::faults`]), never over HTTP: a
/// caller of the provider API cannot change how the provider treats it.
///
/// Clones share the same faults.
#[derive(Debug, Clone)]
pub struct FaultSwitch(Arc<RwLock<Faults>>);

impl FaultSwitch {
    pub fn new(faults: Faults) -> Self {
        Self(Arc::new(RwLock::new(faults)))
    }

    /// The faults in force now.
    pub fn get(&self) -> Faults {
        // A panic cannot leave a `Faults` half written (it is replaced
        // whole), so a poisoned lock still holds a good value.
        *self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `faults` in force from the next call on; refused (and nothing
    /// changed) when a share is out of range.
    pub fn set(&self, faults: Faults) -> anyhow::Result<()> {
        faults.check()?;
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = faults;
        Ok(())
    }

    /// Changes the faults in force with `change`, atomically with respect to
    /// other changes; gives what is in force afterwards. Refused (and
    /// nothing changed) when the result has a share out of range.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) -> anyhow::Result<Faults> {
        let mut faults = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = *faults;
        change(&mut next);
        next.check()?;
        *faults = next;
        Ok(next)
    }
}

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
pub fn pick(f: &Faults, (first, second): (f64, f64)) -> Fault {
    if first >= f.failure_rate {
        Fault::None
    } else if second < f.refuse_share {
        Fault::Refuse
    } else if second < f.refuse_share + f.hang_share {
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

pub async fn faults(State(switch): State<FaultSwitch>, request: Request, next: Next) -> Response {
    // Read once: a call suffers the faults in force when it arrived.
    let f = switch.get();
    let jitter = (draw() * f.latency_jitter_ms as f64) as u64;
    let wait = Duration::from_millis(f.latency_ms.saturating_add(jitter));
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match pick(&f, (draw(), draw())) {
        Fault::None => next.run(request).await,
        Fault::Refuse => unavailable(),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_millis(f.hang_ms)).await;
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

    fn at(failure_rate: f64) -> Faults {
        Faults {
            failure_rate,
            refuse_share: 0.5,
            hang_share: 0.25,
            ..Faults::NONE
        }
    }

    #[test]
    fn the_rate_decides_whether_and_the_second_draw_how() {
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

    #[test]
    fn the_switch_changes_the_faults_for_every_clone_and_refuses_bad_shares() {
        let switch = FaultSwitch::new(Faults::NONE);
        let seen_by_the_middleware = switch.clone();
        assert!(switch.set(at(0.3)).is_ok());
        assert_eq!(seen_by_the_middleware.get(), at(0.3));
        let refusing = switch.update(|f| {
            f.failure_rate = 1.0;
            f.refuse_share = 1.0;
            f.hang_share = 0.0;
        });
        assert!(refusing.is_ok());
        assert_eq!(
            pick(&seen_by_the_middleware.get(), (0.99, 0.99)),
            Fault::Refuse
        );
        let before = switch.get();
        assert!(
            switch.update(|f| f.hang_share = 0.5).is_err(),
            "shares sum to 1.5"
        );
        assert!(switch.set(at(f64::NAN)).is_err());
        assert!(switch.set(at(-0.1)).is_err());
        assert_eq!(switch.get(), before, "a refused change changes nothing");
        assert!(switch.set(Faults::NONE).is_ok());
        assert_eq!(pick(&switch.get(), (0.0, 0.0)), Fault::None);
    }
}
