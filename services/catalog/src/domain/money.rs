use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    /// Prices are not negative, at most a billion units, in a three-letter upper-case currency.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.amount < 0 {
            return Err("amount must not be negative");
        }
        if self.amount > 100_000_000_000 {
            return Err("amount is too large");
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("currency must be an ISO 4217 code such as EUR");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_amount_and_currency() {
        let ok = Money {
            amount: 1999,
            currency: "EUR".into(),
        };
        assert!(ok.validate().is_ok());
        assert!(
            Money {
                amount: -1,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Money {
                currency: "eur".into(),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Money {
                currency: "EURO".into(),
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
