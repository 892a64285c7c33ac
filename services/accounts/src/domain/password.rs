//! Password rules after NIST SP 800-63B: length bounds, no composition rules,
//! and a list of common passwords that are refused.

use std::collections::HashSet;

/// The rules a new password must meet.
pub struct PasswordPolicy {
    common: HashSet<&'static str>,
}

/// 30,000 common passwords, lower-cased (see the file's header for its source).
const COMMON_PASSWORDS: &str = include_str!("../../data/common-passwords.txt");

impl PasswordPolicy {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 128;

    pub fn new() -> Self {
        let common = COMMON_PASSWORDS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        Self { common }
    }

    pub fn common_count(&self) -> usize {
        self.common.len()
    }

    /// Checks a password someone wants to set. Spaces and any Unicode are allowed.
    pub fn check(&self, raw: &str) -> Result<NewPassword, &'static str> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err("must be at least 12 characters");
        }
        if chars > Self::MAX_CHARS {
            return Err("must be at most 128 characters");
        }
        if self.common.contains(raw.to_lowercase().as_str()) {
            return Err("is too common; choose another");
        }
        Ok(NewPassword(raw.to_owned()))
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// A password that met the policy; only this can be hashed and stored.
pub struct NewPassword(String);

impl NewPassword {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_large_enough() {
        assert!(PasswordPolicy::new().common_count() >= 10_000);
    }

    #[test]
    fn length_bounds_count_characters_not_bytes() {
        let p = PasswordPolicy::new();
        assert!(p.check("short pass").is_err());
        assert!(p.check("correct horse battery").is_ok());
        assert!(
            p.check(&"é".repeat(12)).is_ok(),
            "12 two-byte characters are 12 characters"
        );
        assert!(p.check(&"x".repeat(129)).is_err());
        assert!(p.check(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        let p = PasswordPolicy::new();
        assert!(p.check("1q2w3e4r5t6y").is_err());
        assert!(p.check("1Q2W3E4R5T6Y").is_err());
    }
}
