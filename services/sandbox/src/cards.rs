//! What a test card does. The sandbox keeps this (and what may be shown of
//! the card), never the number: a real provider's token stands for the card
//! in the same way.

/// How a card answers an authorization (and, for one card, its capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Approve,
    /// Approves the authorization and the capture as [`Behaviour::Approve`]
    /// does; the network refuses the capture later, which only a
    /// `capture_failed` notification reports (so only with webhooks on).
    LateCaptureFailure,
    /// A definite refusal, with the network's code.
    Decline(&'static str),
    /// The network fails every time (503, retryable).
    GatewayError,
}

impl Behaviour {
    /// The test cards of docs/api.md; any other valid number is approved.
    ///
    /// - `4242424242424242` approves (as every number not listed here);
    /// - `4000000000000002` declines (`card_declined`);
    /// - `4000000000009995` declines (`insufficient_funds`);
    /// - `4000000000000119` fails with a gateway error every time;
    /// - `4000000000000259` approves and captures, then the capture fails
    ///   late: its notification is `capture_failed`, not `capture_settled`.
    pub fn of(number: &str) -> Self {
        use emporium_contracts::provider::decline;
        match number {
            "4000000000000002" => Self::Decline(decline::CARD_DECLINED),
            "4000000000009995" => Self::Decline(decline::INSUFFICIENT_FUNDS),
            "4000000000000119" => Self::GatewayError,
            "4000000000000259" => Self::LateCaptureFailure,
            _ => Self::Approve,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::LateCaptureFailure => "late_capture_failure",
            Self::Decline(code) => code,
            Self::GatewayError => "gateway_error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        use emporium_contracts::provider::decline;
        match text {
            "approve" => Some(Self::Approve),
            "late_capture_failure" => Some(Self::LateCaptureFailure),
            "gateway_error" => Some(Self::GatewayError),
            decline::CARD_DECLINED => Some(Self::Decline(decline::CARD_DECLINED)),
            decline::INSUFFICIENT_FUNDS => Some(Self::Decline(decline::INSUFFICIENT_FUNDS)),
            _ => None,
        }
    }
}

/// The brand the number's leading digits name, if the number is one a card
/// network would issue (13–19 digits, Luhn checksum).
pub fn brand(number: &str) -> Option<&'static str> {
    let digits: Vec<u32> = number
        .chars()
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()?;
    if !(13..=19).contains(&digits.len()) {
        return None;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| match (i % 2 == 1, d * 2) {
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
            (false, _) => *d,
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return None;
    }
    Some(match (digits[0], digits[0] * 10 + digits[1]) {
        (4, _) => "visa",
        (_, 51..=55 | 22..=27) => "mastercard",
        (_, 34 | 37) => "amex",
        (6, _) => "discover",
        _ => "other",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_cards_answer_as_documented() {
        assert_eq!(Behaviour::of("4242424242424242"), Behaviour::Approve);
        assert_eq!(
            Behaviour::of("4000000000000002"),
            Behaviour::Decline("card_declined")
        );
        assert_eq!(
            Behaviour::of("4000000000009995"),
            Behaviour::Decline("insufficient_funds")
        );
        assert_eq!(Behaviour::of("4000000000000119"), Behaviour::GatewayError);
        assert_eq!(
            Behaviour::of("4000000000000259"),
            Behaviour::LateCaptureFailure
        );
        for b in [
            Behaviour::Approve,
            Behaviour::LateCaptureFailure,
            Behaviour::GatewayError,
            Behaviour::Decline("card_declined"),
            Behaviour::Decline("insufficient_funds"),
        ] {
            assert_eq!(Behaviour::parse(b.as_str()), Some(b));
        }
    }

    #[test]
    fn only_numbers_a_network_would_issue_have_a_brand() {
        assert_eq!(brand("4242424242424242"), Some("visa"));
        assert_eq!(brand("4000000000000259"), Some("visa"));
        assert_eq!(brand("5555555555554444"), Some("mastercard"));
        assert_eq!(brand("378282246310005"), Some("amex"));
        assert_eq!(brand("6011111111111117"), Some("discover"));
        for bad in [
            "4242424242424241",
            "42424242",
            "4242 4242 4242 4242",
            "",
            "x242424242424242",
        ] {
            assert_eq!(brand(bad), None, "{bad}");
        }
    }
}
