//! A card as a customer types it, checked before it goes anywhere: the
//! number by the Luhn checksum and its brand's length, the expiry against
//! today, the CVC by its brand's length.
//!
//! The full number and the CVC live only in a [`Card`] for the length of the
//! tokenization call: `Card` has no `Serialize`, its `Debug` shows the brand
//! and the last four digits only, and no error names a digit.

use std::fmt;

/// A card network, told from the number's leading digits (its IIN range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Brand {
    Visa,
    Mastercard,
    Amex,
    Discover,
}

impl Brand {
    /// The brand whose IIN range `digits` starts in, if any we accept.
    fn of(digits: &[u8]) -> Option<Self> {
        let prefix = |n: usize| -> u32 {
            digits
                .iter()
                .take(n)
                .fold(0, |acc, d| acc * 10 + u32::from(*d))
        };
        match (prefix(1), prefix(2), prefix(4), prefix(6)) {
            (4, ..) => Some(Self::Visa),
            (_, 51..=55, ..) | (_, _, 2221..=2720, _) => Some(Self::Mastercard),
            (_, 34 | 37, ..) => Some(Self::Amex),
            (_, 65, ..) | (_, _, 6011, _) | (_, _, _, 644_000..=649_999) => Some(Self::Discover),
            _ => None,
        }
    }

    fn lengths(self) -> &'static [usize] {
        match self {
            Self::Visa => &[13, 16, 19],
            Self::Mastercard => &[16],
            Self::Amex => &[15],
            Self::Discover => &[16, 19],
        }
    }

    fn cvc_length(self) -> usize {
        match self {
            Self::Amex => 4,
            _ => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visa => "visa",
            Self::Mastercard => "mastercard",
            Self::Amex => "amex",
            Self::Discover => "discover",
        }
    }
}

/// What is wrong with a card, per field; never the digits themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("number: must be 13 to 19 digits (spaces allowed)")]
    NumberFormat,
    #[error("number: is not a card number we accept")]
    UnknownBrand,
    #[error("number: has the wrong length for its brand")]
    NumberLength,
    #[error("number: fails its checksum")]
    Checksum,
    #[error("exp_month: must be 1 to 12")]
    Month,
    #[error("exp_year: must be a four-digit year")]
    Year,
    #[error("exp_year: the card has expired")]
    Expired,
    #[error("cvc: must be the 3 or 4 digits the brand uses")]
    Cvc,
}

/// Today's month, to check expiry against (from the service's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    pub year: u16,
    pub month: u8,
}

/// A card that passed every check. Held in memory for one call only.
pub struct Card {
    number: String,
    cvc: String,
    brand: Brand,
    expires: YearMonth,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("brand", &self.brand)
            .field("last4", &self.last4())
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Card {
    /// Checks a card as typed. Spaces in the number are allowed (as printed on
    /// the card); anything else but digits is refused. Every problem is
    /// reported, not only the first.
    pub fn parse(
        number: &str,
        exp_month: i64,
        exp_year: i64,
        cvc: &str,
        today: YearMonth,
    ) -> Result<Self, Vec<CardError>> {
        let mut errors = Vec::new();
        let digits: Vec<u8> = number
            .chars()
            .filter(|c| *c != ' ')
            .map(|c| c.to_digit(10).map(|d| d as u8))
            .collect::<Option<_>>()
            .filter(|d: &Vec<u8>| (13..=19).contains(&d.len()))
            .unwrap_or_default();
        let brand = if digits.is_empty() {
            errors.push(CardError::NumberFormat);
            None
        } else {
            let brand = Brand::of(&digits);
            match brand {
                None => errors.push(CardError::UnknownBrand),
                Some(b) if !b.lengths().contains(&digits.len()) => {
                    errors.push(CardError::NumberLength)
                }
                Some(_) if !luhn(&digits) => errors.push(CardError::Checksum),
                Some(_) => {}
            }
            brand
        };
        let month = u8::try_from(exp_month)
            .ok()
            .filter(|m| (1..=12).contains(m));
        let year = u16::try_from(exp_year)
            .ok()
            .filter(|y| (2000..=2099).contains(y));
        if month.is_none() {
            errors.push(CardError::Month);
        }
        if year.is_none() {
            errors.push(CardError::Year);
        }
        let expires = month
            .zip(year)
            .map(|(month, year)| YearMonth { year, month });
        // A card is good through the last day of its expiry month.
        if expires.is_some_and(|e| e < today) {
            errors.push(CardError::Expired);
        }
        let cvc_ok = cvc.chars().all(|c| c.is_ascii_digit())
            && brand.map_or((3..=4).contains(&cvc.len()), |b| {
                cvc.len() == b.cvc_length()
            });
        if !cvc_ok {
            errors.push(CardError::Cvc);
        }
        match (brand, expires) {
            (Some(brand), Some(expires)) if errors.is_empty() => Ok(Self {
                number: digits.iter().map(|d| char::from(b'0' + d)).collect(),
                cvc: cvc.to_owned(),
                brand,
                expires,
            }),
            _ => Err(errors),
        }
    }

    pub fn brand(&self) -> Brand {
        self.brand
    }

    /// The last four digits: all of the number that may be kept or shown.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len() - 4..]
    }

    pub fn expires(&self) -> YearMonth {
        self.expires
    }

    /// The full number, for the provider call only.
    pub fn number(&self) -> &str {
        &self.number
    }

    /// The CVC, for the provider call only.
    pub fn cvc(&self) -> &str {
        &self.cvc
    }
}

/// The Luhn (mod 10) checksum: every second digit from the right doubled.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            match (i % 2 == 1, d * 2) {
                (true, doubled) if doubled > 9 => doubled - 9,
                (true, doubled) => doubled,
                (false, _) => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TODAY: YearMonth = YearMonth {
        year: 2026,
        month: 11,
    };

    fn parse(number: &str, month: i64, year: i64, cvc: &str) -> Result<Card, Vec<CardError>> {
        Card::parse(number, month, year, cvc, TODAY)
    }

    #[test]
    fn the_sandbox_cards_and_each_brand_pass() {
        for (number, brand, cvc) in [
            ("4242424242424242", Brand::Visa, "123"),
            ("4000 0000 0000 0002", Brand::Visa, "123"),
            ("4000000000009995", Brand::Visa, "123"),
            ("4000000000000119", Brand::Visa, "123"),
            ("4000000000000259", Brand::Visa, "123"),
            ("5555555555554444", Brand::Mastercard, "123"),
            ("2223003122003222", Brand::Mastercard, "123"),
            ("378282246310005", Brand::Amex, "1234"),
            ("6011111111111117", Brand::Discover, "123"),
        ] {
            let card = parse(number, 12, 2030, cvc).unwrap();
            assert_eq!(card.brand(), brand, "{number}");
            assert_eq!(card.last4(), &number[number.len() - 4..]);
        }
    }

    #[test]
    fn every_problem_is_named_and_no_digit_is_shown() {
        use CardError::*;
        let numbers = [
            ("4242424242424241", Checksum),
            ("4242-4242-4242-4242", NumberFormat),
            ("", NumberFormat),
            ("9999999999999995", UnknownBrand),
            ("42424242424242", NumberLength),
        ];
        let mut seen = Vec::new();
        for (number, expected) in numbers {
            let errors = parse(number, 12, 2030, "123").unwrap_err();
            assert_eq!(errors, [expected], "{number}");
            seen.extend(errors);
        }
        let all_wrong = parse("4242424242424242", 13, 20300, "12").unwrap_err();
        assert_eq!(all_wrong, [Month, Year, Cvc]);
        let extremes = parse("4242424242424242", i64::MIN, i64::MAX, "１２３").unwrap_err();
        assert_eq!(extremes, [Month, Year, Cvc]);
        assert_eq!(
            parse("378282246310005", 12, 2030, "123").unwrap_err(),
            [Cvc]
        );
        seen.extend(all_wrong.into_iter().chain(extremes));
        for e in seen {
            let text = e.to_string();
            assert!(!text.contains("4242") && !text.contains("0000"), "{text}");
        }
    }

    #[test]
    fn problems_in_several_fields_are_all_named() {
        use CardError::*;
        let errors = parse("4242424242424241", 0, 2030, "12").unwrap_err();
        assert_eq!(errors, [Checksum, Month, Cvc]);
        let spaced = parse("4000 0000 0000 0002", 12, 2030, "123").unwrap();
        assert_eq!(spaced.number(), "4000000000000002");
        for (number, brand) in [
            ("4222222222222", Brand::Visa),
            ("6500000000000002", Brand::Discover),
            ("6445644564456445", Brand::Discover),
            ("2221000000000009", Brand::Mastercard),
            ("2720992720992729", Brand::Mastercard),
        ] {
            assert_eq!(
                parse(number, 12, 2030, "123").map(|c| c.brand()).ok(),
                Some(brand),
                "{number}"
            );
        }
        assert_eq!(
            parse("2220990000000002", 12, 2030, "123").unwrap_err(),
            [UnknownBrand]
        );
    }

    #[test]
    fn a_card_is_good_through_its_expiry_month() {
        assert!(parse("4242424242424242", 11, 2026, "123").is_ok());
        assert!(parse("4242424242424242", 1, 2027, "123").is_ok());
        let last_year = parse("4242424242424242", 12, 2025, "123");
        assert_eq!(last_year.unwrap_err(), [CardError::Expired]);
        assert_eq!(
            parse("4242424242424242", 10, 2026, "123").unwrap_err(),
            [CardError::Expired]
        );
    }

    #[test]
    fn debug_shows_the_last_four_only() {
        let card = parse("4012888888881881", 12, 2030, "987").unwrap();
        let shown = format!("{card:?}");
        assert!(shown.contains("1881") && shown.contains("Visa"), "{shown}");
        assert!(
            !shown.contains("4012") && !shown.contains("8888") && !shown.contains("987"),
            "{shown}"
        );
    }
}
