//! A payment intent's states and the moves between them. One intent per
//! order: `requires_authorization` → `authorized` → `captured` →
//! `partially_refunded` / `refunded`; or `voided` after an authorization; or
//! `failed` with a reason from any state before capture (and after it, when
//! the network refuses a capture later, refunds made meanwhile or not).

pub use emporium_contracts::payments::{FailureReason, PaymentStatus as IntentStatus};

/// What happens to an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Authorize,
    /// Capture `amount` of what is authorized (a partial capture releases the rest).
    Capture,
    Void,
    /// Refund part of what was captured; `rest` is what stays captured after it.
    Refund {
        rest: i64,
    },
    Fail(FailureReason),
}

/// A move the intent's state does not allow (answered 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payment that is {from:?} cannot take {step:?}")]
pub struct IllegalStep {
    pub from: IntentStatus,
    pub step: Step,
}

/// The moves a payment's state allows.
pub trait Transitions: Sized {
    /// The state after `step`, or why it is not allowed.
    fn after(self, step: Step) -> Result<Self, IllegalStep>;
    /// No step leaves these states.
    fn is_final(&self) -> bool;
}

impl Transitions for IntentStatus {
    fn after(self, step: Step) -> Result<Self, IllegalStep> {
        use IntentStatus::*;
        let next = match (self, step) {
            (RequiresAuthorization, Step::Authorize) => Authorized,
            (Authorized, Step::Capture) => Captured,
            (Authorized, Step::Void) => Voided,
            (Captured | PartiallyRefunded, Step::Refund { rest: 0 }) => Refunded,
            (Captured | PartiallyRefunded, Step::Refund { rest }) if rest > 0 => PartiallyRefunded,
            (RequiresAuthorization | Authorized, Step::Fail(_)) => Failed,
            // The network refused a capture it had accepted, whatever was
            // refunded of it meanwhile.
            (Captured | PartiallyRefunded | Refunded, Step::Fail(FailureReason::CaptureFailed)) => {
                Failed
            }
            (from, step) => return Err(IllegalStep { from, step }),
        };
        Ok(next)
    }

    fn is_final(&self) -> bool {
        matches!(self, Self::Refunded | Self::Voided | Self::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::IntentStatus::*;
    use super::*;

    #[test]
    fn the_happy_paths() {
        let authorized = RequiresAuthorization.after(Step::Authorize);
        assert_eq!(authorized, Ok(Authorized));
        assert_eq!(Authorized.after(Step::Capture), Ok(Captured));
        assert_eq!(Authorized.after(Step::Void), Ok(Voided));
        assert_eq!(
            Captured.after(Step::Refund { rest: 400 }),
            Ok(PartiallyRefunded)
        );
        assert_eq!(
            PartiallyRefunded.after(Step::Refund { rest: 100 }),
            Ok(PartiallyRefunded)
        );
        assert_eq!(
            PartiallyRefunded.after(Step::Refund { rest: 0 }),
            Ok(Refunded)
        );
        assert_eq!(Captured.after(Step::Refund { rest: 0 }), Ok(Refunded));
        let declined = Step::Fail(FailureReason::CardDeclined);
        assert_eq!(RequiresAuthorization.after(declined), Ok(Failed));
        let late = Step::Fail(FailureReason::CaptureFailed);
        assert_eq!(Captured.after(late), Ok(Failed));
    }

    #[test]
    fn exactly_these_steps_are_allowed_and_lead_here() {
        use FailureReason::*;
        let steps = [
            Step::Authorize,
            Step::Capture,
            Step::Void,
            Step::Refund { rest: 0 },
            Step::Refund { rest: 1 },
            Step::Refund { rest: -1 },
            Step::Fail(ProviderError),
            Step::Fail(CaptureFailed),
        ];
        let allowed = [
            (RequiresAuthorization, Step::Authorize, Authorized),
            (RequiresAuthorization, Step::Fail(ProviderError), Failed),
            (RequiresAuthorization, Step::Fail(CaptureFailed), Failed),
            (Authorized, Step::Capture, Captured),
            (Authorized, Step::Void, Voided),
            (Authorized, Step::Fail(ProviderError), Failed),
            (Authorized, Step::Fail(CaptureFailed), Failed),
            (Captured, Step::Refund { rest: 0 }, Refunded),
            (Captured, Step::Refund { rest: 1 }, PartiallyRefunded),
            (Captured, Step::Fail(CaptureFailed), Failed),
            (PartiallyRefunded, Step::Fail(CaptureFailed), Failed),
            (Refunded, Step::Fail(CaptureFailed), Failed),
            (PartiallyRefunded, Step::Refund { rest: 0 }, Refunded),
            (
                PartiallyRefunded,
                Step::Refund { rest: 1 },
                PartiallyRefunded,
            ),
        ];
        for from in IntentStatus::ALL {
            for step in steps {
                let expected = allowed
                    .iter()
                    .find(|(f, s, _)| *f == from && *s == step)
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => assert_eq!(from.after(step), Ok(to), "{from:?} {step:?}"),
                    None => assert!(from.after(step).is_err(), "{from:?} took {step:?}"),
                }
            }
        }
        let finals: Vec<IntentStatus> = IntentStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [Refunded, Voided, Failed]);
        for from in IntentStatus::ALL.into_iter().filter(|s| !s.is_final()) {
            assert!(
                allowed.iter().any(|(f, _, _)| *f == from),
                "{from:?} is stuck"
            );
        }
    }
}
