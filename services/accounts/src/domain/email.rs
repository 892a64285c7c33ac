use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::{INVISIBLE, refuse_hidden};

/// An email address as accounts keeps it: NFKC-normalised, lower-cased and
/// trimmed, so the same mailbox cannot register twice under different spellings
/// (`Ada@Example.com`, fullwidth `ａｄａ@example.com`); and free of characters that
/// hide or disguise what it says (controls, zero-width and bidirectional
/// characters, `<`, `"` and the other specials of RFC 5322).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// Normalising takes time and memory in the input's length; no input this long
/// can become an address of at most [`Email::MAX_LEN`] bytes.
const MAX_RAW_BYTES: usize = 4 * 1024;

const NOT_AN_ADDRESS: &str = "must be an email address";
const MIXED_SCRIPTS: &str =
    "must not mix Latin, Greek and Cyrillic letters within one part of the address";
const SPECIAL: &str = "must not contain spaces or characters such as < > ( ) [ ] , ; : \\ \"";

impl Email {
    /// Longest address SMTP can carry (RFC 5321 path limit minus the brackets).
    pub const MAX_LEN: usize = 254;
    /// Longest part before the `@` (RFC 5321).
    pub const MAX_LOCAL_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.len() > MAX_RAW_BYTES {
            return Err("must be at most 254 characters");
        }
        // Compatibility forms first (fullwidth letters, `＠`, ligatures), then case.
        // Lower-casing can leave text that is not NFKC (`İ`), hence the second pass.
        let folded: String = raw
            .nfkc()
            .collect::<String>()
            .to_lowercase()
            .nfkc()
            .collect();
        let email = folded.trim();
        if email.is_empty() {
            return Err("must not be empty");
        }
        refuse_hidden(email)?;
        if email.chars().any(is_variation_selector) {
            return Err(INVISIBLE);
        }
        if email.len() > Self::MAX_LEN {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(NOT_AN_ADDRESS);
        };
        if local.contains('@') {
            return Err(NOT_AN_ADDRESS);
        }
        if !local.chars().all(local_char) || !domain.chars().all(domain_char) {
            return Err(SPECIAL);
        }
        // `аdmin` with a Cyrillic `а` looks like `admin`: within one part of
        // the address, letters of Latin, Greek and Cyrillic do not mix.
        if std::iter::once(local)
            .chain(domain.split('.'))
            .any(mixes_confusable_scripts)
        {
            return Err(MIXED_SCRIPTS);
        }
        // A dot-atom (RFC 5322): no empty part between dots.
        let local_ok = !local.is_empty()
            && local.len() <= Self::MAX_LOCAL_LEN
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.starts_with(is_combining_mark);
        let domain_ok = domain.len() >= 3
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local_ok && domain_ok {
            Ok(Self(email.to_owned()))
        } else {
            Err(NOT_AN_ADDRESS)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the address looks like (its UTS #39 skeleton): `ɑdmin@…`,
    /// `admın@…` and `admin@…` share one.
    pub fn skeleton(&self) -> String {
        skeleton_of(&self.0)
    }

    /// Whether the address must not look like another account's: one with
    /// characters beyond ASCII. (ASCII addresses that look alike, `bill1` and
    /// `billl`, are ordinary distinct mailboxes.)
    pub fn must_look_unique(&self) -> bool {
        !self.0.is_ascii()
    }
}

/// The UTS #39 skeleton of a stored address.
pub fn skeleton_of(email: &str) -> String {
    unicode_security::skeleton(email).collect()
}

/// A character allowed before the `@`: the `atext` of RFC 5322 and dots in ASCII
/// (no specials, no spaces, no quoting), and letters, digits and combining marks
/// beyond it (RFC 6531).
fn local_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
    } else {
        c.is_alphanumeric() || is_combining_mark(c)
    }
}

/// A character allowed after the `@`; the domain's own rules are checked apart.
fn domain_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '-' || c == '.'
    } else {
        c.is_alphanumeric()
    }
}

/// The scripts whose letters are mistaken for each other (`a`/`а`/`α`, `o`/`о`/`ο`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
}

fn script_of(c: char) -> Option<Script> {
    match c {
        'a'..='z' | 'A'..='Z' => Some(Script::Latin),
        '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' if c.is_alphabetic() => {
            Some(Script::Latin)
        }
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' if c.is_alphabetic() => {
            Some(Script::Greek)
        }
        '\u{0400}'..='\u{052F}'
        | '\u{1C80}'..='\u{1C8F}'
        | '\u{2DE0}'..='\u{2DFF}'
        | '\u{A640}'..='\u{A69F}' => Some(Script::Cyrillic),
        _ => None,
    }
}

/// Whether a part of an address holds letters of two of those scripts.
fn mixes_confusable_scripts(part: &str) -> bool {
    let mut seen = None;
    for script in part.chars().filter_map(script_of) {
        match seen {
            None => seen = Some(script),
            Some(first) if first != script => return true,
            Some(_) => {}
        }
    }
    false
}

/// Variation selectors are combining marks that change nothing in an address.
fn is_variation_selector(c: char) -> bool {
    matches!(
        c,
        '\u{180B}'..='\u{180D}' | '\u{180F}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}'
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use emporium_http::text::{BIDI, CONTROL};

    #[test]
    fn look_alike_letters_from_other_scripts_are_refused() {
        for raw in [
            "\u{430}dmin@emporium.test",
            "admin@\u{435}xample.com",
            "p\u{3bf}st@example.com",
        ] {
            assert_eq!(Email::parse(raw), Err(MIXED_SCRIPTS), "{raw:?}");
        }
        for raw in [
            "\u{430}\u{434}\u{43c}\u{438}\u{43d}@example.com",
            "zo\u{eb}@example.com",
            "\u{3b1}\u{3b2}@example.gr",
            "ada-1@\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.com",
        ] {
            assert!(Email::parse(raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn normalises_case_space_and_compatibility_forms() {
        for (raw, want) in [
            ("  Ada@Example.COM ", "ada@example.com"),
            ("ada@example.com\n", "ada@example.com"),
            ("ｖｉｃｔｉｍ@example.com", "victim@example.com"),
            ("ＶＩＣＴＩＭ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "victim@example.com"),
            ("victim@ｅｘａｍｐｌｅ.com", "victim@example.com"),
            ("\u{3000}victim@example.com\u{3000}", "victim@example.com"),
            ("\u{FB01}nn@example.com", "finn@example.com"),
            ("zoe\u{308}@example.com", "zo\u{EB}@example.com"),
            ("ZO\u{CB}@example.com", "zo\u{EB}@example.com"),
            ("o'brien+shop@example.com", "o'brien+shop@example.com"),
            ("first.last@mail.example.com", "first.last@mail.example.com"),
            ("李@example.com", "李@example.com"),
        ] {
            let email = Email::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(email.as_str(), want, "{raw:?}");
            // Normalising is idempotent: a stored address parses to itself.
            assert_eq!(Email::parse(email.as_str()).unwrap(), email, "{raw:?}");
        }
    }

    #[test]
    fn refuses_hidden_and_special_characters() {
        for (raw, want) in [
            ("", "must not be empty"),
            (" \u{3000} ", "must not be empty"),
            ("ada\u{0}@example.com", CONTROL),
            ("ada\u{7f}@example.com", CONTROL),
            ("ada\r\n@example.com", CONTROL),
            ("ada\t@example.com", CONTROL),
            ("vic\u{200B}tim@example.com", INVISIBLE),
            ("vic\u{200C}tim@example.com", INVISIBLE),
            ("vic\u{200D}tim@example.com", INVISIBLE),
            ("vic\u{2060}tim@example.com", INVISIBLE),
            ("\u{FEFF}victim@example.com", INVISIBLE),
            ("victim\u{180E}@example.com", INVISIBLE),
            ("vic\u{AD}tim@example.com", INVISIBLE),
            ("victim@exam\u{200B}ple.com", INVISIBLE),
            ("victim\u{FE0F}@example.com", INVISIBLE),
            ("victim\u{E0100}@example.com", INVISIBLE),
            ("\u{202E}moc.elpmaxe@mitciv", BIDI),
            ("victim\u{202D}@example.com", BIDI),
            ("victim\u{200E}@example.com", BIDI),
            ("victim\u{200F}@example.com", BIDI),
            ("\u{2066}victim\u{2069}@example.com", BIDI),
            ("victim\u{61C}@example.com", BIDI),
            ("<script>@example.com", SPECIAL),
            ("a<b@example.com", SPECIAL),
            ("a>b@example.com", SPECIAL),
            ("\"ada\"@example.com", SPECIAL),
            ("(ada)@example.com", SPECIAL),
            ("a,b@example.com", SPECIAL),
            ("a;b@example.com", SPECIAL),
            ("a:b@example.com", SPECIAL),
            ("a\\b@example.com", SPECIAL),
            ("[ada]@example.com", SPECIAL),
            ("a b@example.com", SPECIAL),
            ("a\u{A0}b@example.com", SPECIAL),
            ("a\u{3000}b@example.com", SPECIAL),
            ("a\u{2028}b@example.com", CONTROL),
            ("ａ＜ｂ@example.com", SPECIAL),
            ("ada@exa mple.com", SPECIAL),
            ("ada@example.com>", SPECIAL),
            ("ada@[127.0.0.1]", SPECIAL),
            ("ada", NOT_AN_ADDRESS),
            ("@example.com", NOT_AN_ADDRESS),
            ("ada@", NOT_AN_ADDRESS),
            ("ada@example", NOT_AN_ADDRESS),
            ("ada@.com", NOT_AN_ADDRESS),
            ("ada@example..com", NOT_AN_ADDRESS),
            ("ada@@example.com", NOT_AN_ADDRESS),
            (".ada@example.com", NOT_AN_ADDRESS),
            ("ada.@example.com", NOT_AN_ADDRESS),
            ("a..da@example.com", NOT_AN_ADDRESS),
            ("\u{301}ada@example.com", NOT_AN_ADDRESS),
        ] {
            assert_eq!(Email::parse(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn refuses_what_is_too_long() {
        let local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Email::parse(&local), Err(NOT_AN_ADDRESS));
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        assert_eq!(Email::parse(&long), Err("must be at most 254 characters"));
        let huge = format!("{}@example.com", "a".repeat(10_000));
        assert_eq!(Email::parse(&huge), Err("must be at most 254 characters"));
    }
}
