use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use emporium_contracts::currency::{ACTIVE_CURRENCIES, is_active_currency};

/// An amount in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    /// Prices are not negative, at most a billion units, in an active ISO 4217 currency.
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
        if !is_active_currency(&self.currency) {
            return Err("currency must be an active ISO 4217 currency code such as EUR");
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
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        for code in ["ZZZ", "XXX", "XTS", "XAU", "XDR", "HRK", "ABC"] {
            assert!(
                Money {
                    currency: code.into(),
                    ..ok.clone()
                }
                .validate()
                .is_err(),
                "{code}"
            );
        }
        for code in ["USD", "GBP", "JPY", "CHF", "XOF", "ZWG"] {
            assert!(
                Money {
                    currency: code.into(),
                    ..ok.clone()
                }
                .validate()
                .is_ok(),
                "{code}"
            );
        }
    }

    #[test]
    fn the_currency_list_is_sorted_and_well_formed() {
        assert!(ACTIVE_CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ACTIVE_CURRENCIES
                .iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }
}
