//! `If-Match` on resources whose ETag is their version, `"<version>"`.
//!
//! RFC 9110 §13.1.1: `*` matches any current representation; If-Match
//! compares strongly, so a weak tag (`W/"3"`) matches nothing (412). Anything
//! other than the ETag exactly as sent (no sign, no leading zero, no list) is
//! a 422 on the header, never a silent unconditional write.

use axum::extract::FromRequestParts;
use axum::http::header::IF_MATCH;
use axum::http::request::Parts;

use crate::problem::{FieldError, Problem};

/// The precondition a write carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// No header, or `*`: the resource must exist, no version is compared.
    Any,
    /// Only if the stored version is this one.
    Version(i64),
    /// A weak tag: matches no version (the write answers 412).
    Nothing,
}

/// A version no resource has: what [`IfMatch::Nothing`] is compared as.
pub const NO_VERSION: i64 = -1;

impl IfMatch {
    /// The version the store must find, `None` to write unconditionally.
    pub fn expected_version(self) -> Option<i64> {
        match self {
            Self::Any => None,
            Self::Version(v) => Some(v),
            Self::Nothing => Some(NO_VERSION),
        }
    }

    /// Parses the header's value (`None`: no header).
    pub fn parse(value: Option<&[u8]>) -> Result<Self, FieldError> {
        let Some(raw) = value else {
            return Ok(Self::Any);
        };
        let text = std::str::from_utf8(raw).unwrap_or_default().trim();
        if text == "*" {
            return Ok(Self::Any);
        }
        // A weak tag is refused by the strong comparison (412), but only a
        // well-formed one: anything else is a malformed header (422).
        let (weak, tag) = match text.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let version = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .filter(|d| {
                !d.is_empty()
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && (d.len() == 1 || !d.starts_with('0'))
            })
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| {
                FieldError::new(
                    "If-Match",
                    "must be the resource's ETag as sent (\"<version>\"), or *",
                )
            })?;
        Ok(if weak {
            Self::Nothing
        } else {
            Self::Version(version)
        })
    }
}

/// The ETag of a resource at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut lines = parts.headers.get_all(IF_MATCH).iter();
        let value = lines.next().map(|v| v.as_bytes());
        // Two lines are one list (RFC 9110 §5.3), and a list is not accepted:
        // reading only the first would let a second, stale tag through unchecked.
        if lines.next().is_some() {
            return Err(Problem::validation(vec![FieldError::new(
                "If-Match",
                "must be sent once, with one ETag or *",
            )]));
        }
        Self::parse(value).map_err(|e| Problem::validation(vec![e]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn strong_tags_star_and_weak_tags() {
        let p = |s: &str| IfMatch::parse(Some(s.as_bytes()));
        assert_eq!(IfMatch::parse(None).unwrap(), IfMatch::Any);
        assert_eq!(p("*").unwrap(), IfMatch::Any);
        assert_eq!(p("\"3\"").unwrap(), IfMatch::Version(3));
        assert_eq!(p(" \"0\" ").unwrap(), IfMatch::Version(0));
        assert_eq!(p("W/\"3\"").unwrap(), IfMatch::Nothing);
        assert_eq!(p("W/\"3\"").unwrap().expected_version(), Some(NO_VERSION));
        assert_eq!(p("*").unwrap().expected_version(), None);
        for bad in [
            "3",
            "\"03\"",
            "\"-3\"",
            "\"+3\"",
            "\"\"",
            "\"3\", \"4\"",
            "\"99999999999999999999\"",
            "\"3",
        ] {
            assert_eq!(p(bad).unwrap_err().field, "If-Match", "{bad}");
        }
        assert!(IfMatch::parse(Some(&[0xff, b'"'])).is_err());
        for malformed_weak in [
            "W/xyz",
            "W/",
            "W/\"abc\"",
            "W/\"6\"x",
            "W/ \"6\"",
            "W/\"-1\"",
            "W/\"3\", \"2\"",
        ] {
            assert_eq!(
                p(malformed_weak).unwrap_err().field,
                "If-Match",
                "{malformed_weak}"
            );
        }
        assert_eq!(etag(7), "\"7\"");
    }

    async fn extract(values: &[&[u8]]) -> Result<IfMatch, Problem> {
        let mut request = axum::http::Request::builder();
        for v in values {
            request = request.header(IF_MATCH, *v);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        IfMatch::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn the_header_twice_is_a_list_and_refused() {
        assert_eq!(extract(&[]).await.unwrap(), IfMatch::Any);
        assert_eq!(extract(&[b"\"3\""]).await.unwrap(), IfMatch::Version(3));
        for pair in [
            [&b"\"3\""[..], b"\"10\""],
            [b"*", b"\"6\""],
            [b"\"5\"", b"W/\"5\""],
        ] {
            let problem = extract(&pair).await.unwrap_err();
            assert_eq!(problem.status.as_u16(), 422);
            assert_eq!(problem.errors[0].field, "If-Match");
        }
    }
}
