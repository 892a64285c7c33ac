use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The active ISO 4217 alphabetic codes of currencies (ISO 4217 list one),
/// sorted for binary search. Left out on purpose: codes that are not money
/// one can price in — precious metals (XAU, XAG, XPD, XPT), bond-market and
/// settlement units (XBA–XBD, XDR, XSU, XUA), fund codes (BOV, CHE, CHW, CLF,
/// COU, MXV, USN, UYI, UYW), the testing code XTS and "no currency" XXX — and
/// withdrawn codes (HRK, SLL, VEF, ZWL, …). ANG stays while XCG replaces it.
pub const ACTIVE_CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
    "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY",
    "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD",
    "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
    "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG",
    "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS",
    "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// Whether `code` is an active ISO 4217 currency ([`ACTIVE_CURRENCIES`]).
pub fn is_active_currency(code: &str) -> bool {
    ACTIVE_CURRENCIES.binary_search(&code).is_ok()
}

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
