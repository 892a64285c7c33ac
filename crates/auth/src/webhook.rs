//! Signed webhooks, Stripe's scheme: the sender puts
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` in a header; the
//! receiver recomputes it with the shared secret, compares in constant time,
//! and refuses a timestamp too far from its own clock, so a captured request
//! cannot be replayed later. (Replays inside the window are stopped by the
//! receiver remembering each notification's id.)

use aws_lc_rs::hmac;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signature's timestamp is too old or in the future")]
    Stale,
}

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), &signed_payload(timestamp, body));
    format!("t={timestamp},v1={}", hex(tag.as_ref()))
}

/// Checks `header` against `body` and the clock (`now`, Unix seconds): one of
/// its `v1` signatures must match (a sender rotating secrets may send two),
/// and its timestamp be within `tolerance_secs` of `now`. Gives the timestamp.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) if timestamp.is_none() => {
                let t: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
                timestamp = Some(t);
            }
            Some(("t", _)) => return Err(SignatureError::Malformed),
            Some(("v1", v)) => signatures.push(unhex(v).ok_or(SignatureError::Malformed)?),
            // Other schemes (a future v2) are skipped, as Stripe's receivers do.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let payload = signed_payload(timestamp, body);
    let key = key(secret);
    if !signatures
        .iter()
        .any(|s| hmac::verify(&key, &payload, s).is_ok())
    {
        return Err(SignatureError::Mismatch);
    }
    // Checked after the signature, so an unsigned guess learns nothing of the clock.
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(timestamp)
}

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    payload
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_0123456789abcdef0123456789abcdef";
    const BODY: &[u8] = br#"{"id":"1"}"#;

    #[test]
    fn a_signature_verifies_within_the_window_only() {
        let header = sign(SECRET, 1_000, BODY);
        assert!(header.starts_with("t=1000,v1="), "{header}");
        assert_eq!(verify(SECRET, &header, BODY, 1_000, 300), Ok(1_000));
        assert_eq!(verify(SECRET, &header, BODY, 1_300, 300), Ok(1_000));
        assert_eq!(verify(SECRET, &header, BODY, 700, 300), Ok(1_000));
        let late = verify(SECRET, &header, BODY, 1_301, 300);
        assert_eq!(late, Err(SignatureError::Stale));
        let early = verify(SECRET, &header, BODY, 699, 300);
        assert_eq!(early, Err(SignatureError::Stale));
    }

    #[test]
    fn any_change_to_body_time_secret_or_signature_is_refused() {
        let header = sign(SECRET, 1_000, BODY);
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(
            verify(SECRET, &header, br#"{"id":"2"}"#, 1_000, 300),
            mismatch
        );
        assert_eq!(
            verify(b"another secret", &header, BODY, 1_000, 300),
            mismatch
        );
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(verify(SECRET, &moved, BODY, 1_000, 300), mismatch);
        let mut flipped = header.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert_eq!(verify(SECRET, &flipped, BODY, 1_000, 300), mismatch);
        for malformed in [
            "",
            "t=1000",
            "v1=00",
            "t=x,v1=00",
            "garbage",
            "t=1000,t=1000,v1=00",
        ] {
            assert_eq!(
                verify(SECRET, malformed, BODY, 1_000, 300),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        let v1 = header
            .split_once(",v1=")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let rotated = format!("t=1000,v1={},v1={v1}", "ab".repeat(32));
        assert_eq!(verify(SECRET, &rotated, BODY, 1_000, 300), Ok(1_000));
    }
}
