//! Lists a page at a time: the page body, the limit rule and the cursor codec
//! every list route shares.
//!
//! A cursor is opaque to clients: URL-safe base64 of a key the service picks
//! ([`CursorKey`]): the last id seen for keyset paging, or an offset where the
//! order has no stable key. A cursor that does not decode is a 422 on field
//! `cursor`, never a 500 and never a silent first page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::FieldError;

/// A page of a list; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: i64 = 20;
/// The most items one page may hold.
pub const MAX_LIMIT: i64 = 100;

/// The `limit` query parameter as sent: default 20, 1 to 100.
pub fn limit(text: Option<&str>) -> Result<i64, FieldError> {
    limit_within(text, DEFAULT_LIMIT, MAX_LIMIT)
}

/// A `limit` query parameter as sent: `default` when absent, else a whole
/// number from 1 to `max` written plainly (no sign, exponent or spaces); any
/// other text is a 422 on `limit`, never a parser's message.
pub fn limit_within(text: Option<&str>, default: i64, max: i64) -> Result<i64, FieldError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| FieldError::new("limit", format!("must be a number from 1 to {max}")))
}

/// What a cursor stands for.
pub trait CursorKey: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// Keyset paging by id: the page after this id.
impl CursorKey for Uuid {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok()
    }
}

/// Offset paging, for orders without a stable key (search by relevance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset(pub i64);

impl CursorKey for Offset {
    fn to_bytes(&self) -> Vec<u8> {
        format!("o:{}", self.0).into_bytes()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let digits = text.strip_prefix("o:")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(Offset)
    }
}

pub fn encode_cursor<K: CursorKey>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(key.to_bytes())
}

/// The `cursor` query parameter: absent or empty is the first page.
pub fn decode_cursor<K: CursorKey>(cursor: Option<&str>) -> Result<Option<K>, FieldError> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|bytes| K::from_bytes(&bytes))
            .map(Some)
            .ok_or_else(|| FieldError::new("cursor", "is not a cursor")),
    }
}

/// Cuts `rows`, fetched with `limit + 1`, to a page: the extra row only says
/// that another page follows, whose cursor is the key of the page's last row.
pub fn page_of<T, K: CursorKey>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|row| encode_cursor(&key(row)));
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        let c = encode_cursor(&id);
        assert_eq!(decode_cursor::<Uuid>(Some(&c)).unwrap(), Some(id));
        assert_eq!(decode_cursor::<Uuid>(None).unwrap(), None);
        assert_eq!(decode_cursor::<Uuid>(Some("")).unwrap(), None);
        let o = encode_cursor(&Offset(40));
        assert_eq!(o, "bzo0MA", "the encoding existing clients hold");
        assert_eq!(decode_cursor::<Offset>(Some(&o)).unwrap(), Some(Offset(40)));
        for bad in ["!!", "bzo", &encode_cursor(&Offset(1))[..2], "AAAA"] {
            let e = decode_cursor::<Uuid>(Some(bad)).unwrap_err();
            assert_eq!(e.field, "cursor", "{bad}");
        }
        for bad in ["o:", "o:-1", "o:+1", "x:1", "o:99999999999999999999"] {
            let c = URL_SAFE_NO_PAD.encode(bad);
            assert!(decode_cursor::<Offset>(Some(&c)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let rows: Vec<i64> = (0..5).collect();
        let (items, next) = page_of(rows.clone(), 5, |r| Offset(*r));
        assert_eq!(items.len(), 5);
        assert_eq!(next, None);
        let (items, next) = page_of(rows, 3, |r| Offset(*r));
        assert_eq!(items, vec![0, 1, 2]);
        assert_eq!(
            decode_cursor::<Offset>(next.as_deref()).unwrap(),
            Some(Offset(2))
        );
    }

    #[test]
    fn limits_default_to_20_within_1_to_100() {
        assert_eq!(limit(None).unwrap(), 20);
        assert_eq!(limit(Some("1")).unwrap(), 1);
        assert_eq!(limit(Some("100")).unwrap(), 100);
        for bad in [
            "0",
            "-1",
            "101",
            "",
            " 5",
            "+5",
            "5.0",
            "1e3",
            "abc",
            "NaN",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
        ] {
            let e = limit(Some(bad)).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.message.as_str()),
                ("limit", "must be a number from 1 to 100"),
                "{bad:?}"
            );
        }
        assert_eq!(limit_within(Some("1000"), 100, 1000).unwrap(), 1000);
        assert_eq!(limit_within(None, 100, 1000).unwrap(), 100);
    }
}
