use unicode_normalization::UnicodeNormalization;

use super::{CONTROL, refuse_hidden};

/// A person's display name: 1 to 100 characters after NFKC normalisation and
/// trimming; no control, zero-width or bidirectional-override characters, which
/// would let a name hide text or pass for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

/// Normalising takes time and memory in the input's length; no input this long
/// can become a name of at most [`DisplayName::MAX_CHARS`] characters.
const MAX_RAW_BYTES: usize = 4 * 1024;

const TOO_LONG: &str = "must be at most 100 characters";

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.len() > MAX_RAW_BYTES {
            return Err(TOO_LONG);
        }
        let normalised: String = raw.nfkc().collect();
        let name = normalised.trim();
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(TOO_LONG);
        }
        refuse_hidden(name)?;
        // Line and paragraph separators break a name over lines like a newline does.
        if name.contains(['\u{2028}', '\u{2029}']) {
            return Err(CONTROL);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use emporium_http::text::{BIDI, INVISIBLE};

    #[test]
    fn accepts_and_normalises_names() {
        for (raw, want) in [
            (" Ada Lovelace ", "Ada Lovelace"),
            ("Zoë 李", "Zoë 李"),
            ("Zoe\u{308}", "Zo\u{EB}"),
            ("Ａｄａ　Ｌｏｖｅｌａｃｅ", "Ada Lovelace"),
            ("\u{3000}Ada\u{A0}Lovelace\u{3000}", "Ada Lovelace"),
            ("\u{FB01}nn", "finn"),
            ("O'Brien-Smith", "O'Brien-Smith"),
            ("Ada ❤\u{FE0F}", "Ada ❤\u{FE0F}"),
        ] {
            let name = DisplayName::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(name.as_str(), want, "{raw:?}");
            assert_eq!(DisplayName::parse(name.as_str()).unwrap(), name, "{raw:?}");
        }
        assert!(DisplayName::parse(&"x".repeat(100)).is_ok());
    }

    #[test]
    fn refuses_junk() {
        for (raw, want) in [
            ("", "must not be empty"),
            ("   ", "must not be empty"),
            ("\u{3000}", "must not be empty"),
            ("a\u{7}b", CONTROL),
            ("a\u{0}b", CONTROL),
            ("Ada\nLovelace", CONTROL),
            ("Ada\u{85}Lovelace", CONTROL),
            ("Ada\u{2028}Lovelace", CONTROL),
            ("Ada\u{2029}Lovelace", CONTROL),
            ("Ada\u{200B}", INVISIBLE),
            ("A\u{200C}da", INVISIBLE),
            ("A\u{200D}da", INVISIBLE),
            ("A\u{2060}da", INVISIBLE),
            ("\u{FEFF}Ada", INVISIBLE),
            ("A\u{180E}da", INVISIBLE),
            ("\u{3164}", INVISIBLE),
            ("Ada\u{E0041}", INVISIBLE),
            ("\u{202E}ecalevoL adA", BIDI),
            ("Ada \u{202D}Lovelace", BIDI),
            ("Ada \u{2066}Lovelace\u{2069}", BIDI),
            ("Ada\u{200E}", BIDI),
            ("Ada\u{200F}", BIDI),
            ("Ada\u{61C}", BIDI),
        ] {
            assert_eq!(DisplayName::parse(raw), Err(want), "{raw:?}");
        }
        assert_eq!(DisplayName::parse(&"x".repeat(101)), Err(TOO_LONG));
        // Compatibility forms can grow: one U+FDFA is 18 characters.
        assert_eq!(DisplayName::parse(&"\u{FDFA}".repeat(6)), Err(TOO_LONG));
        assert_eq!(DisplayName::parse(&"x".repeat(10_000)), Err(TOO_LONG));
    }
}
