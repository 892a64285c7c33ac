//! Where an order goes: the shipping address as the customer sends it, and
//! the checks that answer 422 naming each field that is wrong.
//!
//! The address is kept as sent (it is printed on a parcel, not parsed), so
//! the checks are about what would make it unusable or unsafe to print:
//! missing lines, absurd lengths, control characters, a country no carrier
//! knows, a phone number that is not one.

use serde::{Deserialize, Serialize};

use super::countries::is_country;

/// A shipping address, `{name, line1, line2?, city, region?, postal_code,
/// country, phone?}` in JSON.
///
/// Missing required fields deserialize as empty strings (`#[serde(default)]`)
/// so that [`ShippingAddress::check`] can name every one of them in a single
/// 422, rather than serde stopping at the first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// An officially assigned ISO 3166-1 alpha-2 code, in capitals (`DE`).
    pub country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// The fields as a client names them in `errors[].field`.
pub mod fields {
    pub const NAME: &str = "shipping_address.name";
    pub const LINE1: &str = "shipping_address.line1";
    pub const LINE2: &str = "shipping_address.line2";
    pub const CITY: &str = "shipping_address.city";
    pub const REGION: &str = "shipping_address.region";
    pub const POSTAL_CODE: &str = "shipping_address.postal_code";
    pub const COUNTRY: &str = "shipping_address.country";
    pub const PHONE: &str = "shipping_address.phone";
}

pub const REQUIRED: &str = "must not be empty";
pub const CONTROL: &str = emporium_http::text::CONTROL;
pub const NOT_A_COUNTRY: &str =
    "must be an ISO 3166-1 alpha-2 country code in capitals, such as DE";
pub const NOT_A_PHONE: &str = "must be digits, with spaces, +, -, ( and ) only";

/// One text field's rule: its JSON name, whether it must have text, and the
/// most characters it may hold (with the message that says so).
struct Rule {
    field: &'static str,
    required: bool,
    max: usize,
    too_long: &'static str,
}

const fn rule(field: &'static str, required: bool, max: usize, too_long: &'static str) -> Rule {
    Rule {
        field,
        required,
        max,
        too_long,
    }
}

impl ShippingAddress {
    /// The address as stored: an optional field sent blank is absent.
    pub fn normalized(&self) -> Self {
        let present = |v: &Option<String>| v.clone().filter(|t| !t.trim().is_empty());
        Self {
            line2: present(&self.line2),
            region: present(&self.region),
            phone: present(&self.phone),
            ..self.clone()
        }
    }

    /// Every problem with the address, field by field in the order of the
    /// JSON shape, as `(field, message)` pairs for the problem's `errors`.
    ///
    /// Required fields must have text once trimmed; an optional field sent
    /// blank is accepted (the API layer may store it as absent). Lengths count
    /// characters, not bytes, of the value as sent, since that is what is
    /// stored and printed. Control characters (C0, DEL, C1, and the Unicode
    /// line and paragraph separators, which break a label over lines the same
    /// way) are refused in every field, blank ones included.
    pub fn check(&self) -> Result<(), Vec<(&'static str, &'static str)>> {
        use fields::*;
        let texts: [(Rule, Option<&str>); 8] = [
            (
                rule(NAME, true, 100, "must be at most 100 characters"),
                Some(self.name.as_str()),
            ),
            (
                rule(LINE1, true, 200, "must be at most 200 characters"),
                Some(self.line1.as_str()),
            ),
            (
                rule(LINE2, false, 200, "must be at most 200 characters"),
                self.line2.as_deref(),
            ),
            (
                rule(CITY, true, 200, "must be at most 200 characters"),
                Some(self.city.as_str()),
            ),
            (
                rule(REGION, false, 200, "must be at most 200 characters"),
                self.region.as_deref(),
            ),
            (
                rule(POSTAL_CODE, true, 20, "must be at most 20 characters"),
                Some(self.postal_code.as_str()),
            ),
            // Any country code is two characters; the list check below says
            // what is wrong with a longer one.
            (
                rule(COUNTRY, true, usize::MAX, ""),
                Some(self.country.as_str()),
            ),
            (
                rule(PHONE, false, 32, "must be at most 32 characters"),
                self.phone.as_deref(),
            ),
        ];
        let mut problems = Vec::new();
        for (r, value) in texts {
            let Some(value) = value else { continue };
            let blank = value.trim().is_empty();
            if blank && r.required {
                problems.push((r.field, REQUIRED));
            }
            if value.chars().count() > r.max {
                problems.push((r.field, r.too_long));
            }
            // Controls, and what hides or disguises the text on a label or
            // an admin's screen (zero-width, private-use, bidirectional).
            if let Err(why) = emporium_http::text::refuse_hidden(value) {
                problems.push((r.field, why));
            }
            if blank {
                continue;
            }
            if r.field == COUNTRY && !is_country(value) {
                problems.push((COUNTRY, NOT_A_COUNTRY));
            }
            if r.field == PHONE && !is_phone(value) {
                problems.push((PHONE, NOT_A_PHONE));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Digits and the punctuation people write numbers with (`+49 (30) 1234-56`),
/// and at least one digit: `+()` alone is no number. No letters, so no
/// extensions spelled `ext.` and no vanity numbers; a carrier dials digits.
fn is_phone(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')'))
        && text.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::fields::*;
    use super::*;

    fn address() -> ShippingAddress {
        ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "12 St James's Square".into(),
            line2: None,
            city: "London".into(),
            region: None,
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
            phone: None,
        }
    }

    #[test]
    fn text_that_hides_or_disguises_itself_is_refused() {
        use emporium_http::text::{BIDI, INVISIBLE};
        for (name, why) in [
            ("a\u{202e}b", BIDI),
            ("a\u{200b}b", INVISIBLE),
            ("\u{feff}Ada", INVISIBLE),
            ("\u{e000}", INVISIBLE),
        ] {
            let address = ShippingAddress {
                name: name.into(),
                line1: "Main 1".into(),
                city: "Berlin".into(),
                postal_code: "10117".into(),
                country: "DE".into(),
                ..ShippingAddress::default()
            };
            assert_eq!(address.check(), Err(vec![(fields::NAME, why)]), "{name:?}");
        }
    }

    #[test]
    fn a_complete_address_passes() {
        assert_eq!(address().check(), Ok(()));
        let full = ShippingAddress {
            line2: Some("Flat 3".into()),
            region: Some("Greater London".into()),
            phone: Some("+44 (20) 7946-0958".into()),
            ..address()
        };
        assert_eq!(full.check(), Ok(()));
        let blank_optionals = ShippingAddress {
            line2: Some(String::new()),
            region: Some("  ".into()),
            phone: Some(String::new()),
            ..address()
        };
        assert_eq!(blank_optionals.check(), Ok(()));
        let unicode = ShippingAddress {
            name: "Zoë 李".into(),
            city: "São Paulo".into(),
            country: "BR".into(),
            ..address()
        };
        assert_eq!(unicode.check(), Ok(()));
    }

    #[test]
    fn every_missing_field_is_named() {
        assert_eq!(
            ShippingAddress::default().check(),
            Err(vec![
                (NAME, REQUIRED),
                (LINE1, REQUIRED),
                (CITY, REQUIRED),
                (POSTAL_CODE, REQUIRED),
                (COUNTRY, REQUIRED),
            ])
        );
        let spaces = ShippingAddress {
            name: " ".into(),
            city: "\u{3000}".into(),
            ..address()
        };
        assert_eq!(
            spaces.check(),
            Err(vec![(NAME, REQUIRED), (CITY, REQUIRED)])
        );
    }

    #[test]
    fn missing_json_fields_reach_the_check() {
        let sent: ShippingAddress =
            serde_json::from_value(serde_json::json!({"country": "DE", "city": "Berlin"})).unwrap();
        assert_eq!(
            sent.check(),
            Err(vec![
                (NAME, REQUIRED),
                (LINE1, REQUIRED),
                (POSTAL_CODE, REQUIRED)
            ])
        );
    }

    #[test]
    fn json_shape_leaves_out_absent_optionals() {
        let json = serde_json::to_value(address()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "Ada Lovelace",
                "line1": "12 St James's Square",
                "city": "London",
                "postal_code": "SW1Y 4JH",
                "country": "GB",
            })
        );
        let back: ShippingAddress = serde_json::from_value(json).unwrap();
        assert_eq!(back, address());
    }

    #[test]
    fn lengths_count_characters_up_to_each_limit() {
        let at_limit = ShippingAddress {
            name: "é".repeat(100),
            line1: "x".repeat(200),
            line2: Some("x".repeat(200)),
            city: "x".repeat(200),
            region: Some("x".repeat(200)),
            postal_code: "9".repeat(20),
            phone: Some("1".repeat(32)),
            ..address()
        };
        assert_eq!(at_limit.check(), Ok(()));
        let over = ShippingAddress {
            name: "é".repeat(101),
            line1: "x".repeat(201),
            line2: Some("x".repeat(201)),
            city: "x".repeat(201),
            region: Some("x".repeat(201)),
            postal_code: "9".repeat(21),
            phone: Some("1".repeat(33)),
            ..address()
        };
        assert_eq!(
            over.check(),
            Err(vec![
                (NAME, "must be at most 100 characters"),
                (LINE1, "must be at most 200 characters"),
                (LINE2, "must be at most 200 characters"),
                (CITY, "must be at most 200 characters"),
                (REGION, "must be at most 200 characters"),
                (POSTAL_CODE, "must be at most 20 characters"),
                (PHONE, "must be at most 32 characters"),
            ])
        );
    }

    #[test]
    fn control_characters_are_refused_anywhere() {
        for bad in [
            "\n", "\r", "\t", "\u{0}", "\u{7}", "\u{1b}", "\u{7f}", "\u{85}", "\u{2028}",
            "\u{2029}",
        ] {
            let with = |text: &str| format!("A{bad}{text}");
            let address = ShippingAddress {
                name: with("da"),
                line1: with("1"),
                line2: Some(with("2")),
                city: with("London"),
                region: Some(bad.to_owned()),
                postal_code: with("1"),
                ..address()
            };
            assert_eq!(
                address.check(),
                Err(vec![
                    (NAME, CONTROL),
                    (LINE1, CONTROL),
                    (LINE2, CONTROL),
                    (CITY, CONTROL),
                    (REGION, CONTROL),
                    (POSTAL_CODE, CONTROL),
                ]),
                "{bad:?}"
            );
        }
        let country = ShippingAddress {
            country: "G\nB".into(),
            ..address()
        };
        assert_eq!(
            country.check(),
            Err(vec![(COUNTRY, CONTROL), (COUNTRY, NOT_A_COUNTRY)])
        );
        let phone = ShippingAddress {
            phone: Some("030\t1234".into()),
            ..address()
        };
        assert_eq!(
            phone.check(),
            Err(vec![(PHONE, CONTROL), (PHONE, NOT_A_PHONE)])
        );
    }

    #[test]
    fn the_country_is_an_assigned_code_in_capitals() {
        for good in ["DE", "US", "GB", "JP", "BR"] {
            let a = ShippingAddress {
                country: good.into(),
                ..address()
            };
            assert_eq!(a.check(), Ok(()), "{good}");
        }
        for bad in [
            "UK", "EU", "XX", "gb", "Gb", "GBR", "G", " GB", "GB ", "１２",
        ] {
            let a = ShippingAddress {
                country: bad.into(),
                ..address()
            };
            assert_eq!(a.check(), Err(vec![(COUNTRY, NOT_A_COUNTRY)]), "{bad:?}");
        }
    }

    #[test]
    fn a_phone_is_digits_and_punctuation() {
        for good in [
            "+49 30 1234567",
            "(030) 123-4567",
            "0301234567",
            "+1-202-555-0143",
        ] {
            let a = ShippingAddress {
                phone: Some(good.into()),
                ..address()
            };
            assert_eq!(a.check(), Ok(()), "{good}");
        }
        for bad in [
            "030/1234",
            "+49 30 CALL-NOW",
            "123 ext. 4",
            "+()-",
            "١٢٣",
            "+49.30.1234",
        ] {
            let a = ShippingAddress {
                phone: Some(bad.into()),
                ..address()
            };
            assert_eq!(a.check(), Err(vec![(PHONE, NOT_A_PHONE)]), "{bad:?}");
        }
    }

    #[test]
    fn several_problems_in_one_field_and_across_fields_are_all_named() {
        let a = ShippingAddress {
            name: format!("{}\u{0}", "x".repeat(100)),
            postal_code: String::new(),
            country: "uk".into(),
            phone: Some("call me".into()),
            ..address()
        };
        assert_eq!(
            a.check(),
            Err(vec![
                (NAME, "must be at most 100 characters"),
                (NAME, CONTROL),
                (POSTAL_CODE, REQUIRED),
                (COUNTRY, NOT_A_COUNTRY),
                (PHONE, NOT_A_PHONE),
            ])
        );
    }
}
