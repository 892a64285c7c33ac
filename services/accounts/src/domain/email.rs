/// An email address as accounts keeps it: trimmed and lower-cased, so the same
/// mailbox cannot register twice under different spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Longest address SMTP can carry (RFC 5321 path limit minus the brackets).
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("must not be empty");
        }
        if email.len() > Self::MAX_LEN {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("must be an email address");
        };
        let local_ok = !local.is_empty() && local.len() <= 64;
        let domain_ok = domain.len() >= 3
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let no_controls = !email.chars().any(|c| c.is_control() || c.is_whitespace());
        if local_ok && domain_ok && no_controls && !local.contains('@') {
            Ok(Self(email))
        } else {
            Err("must be an email address")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@.com",
            "ada@example..com",
            "a b@example.com",
            "ada@exa mple.com",
            "ada@@example.com",
            "ada\u{0}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(10_000));
        assert!(Email::parse(&long).is_err());
    }
}
