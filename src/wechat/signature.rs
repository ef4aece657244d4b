//! Request signatures: `sha1(concat(sort(parts)))` in lower-case hex.
//!
//! WeChat signs GET/POST requests with `[token, timestamp, nonce]`, and in safe
//! mode additionally signs `[token, timestamp, nonce, Encrypt]` as
//! `msg_signature`. Both are the same construction over a different list.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Signs `parts`: sort them as byte strings (so `"10" < "9"`, not numerically),
/// concatenate without separator, SHA-1, lower-case hex.
pub fn sign(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    // `str`'s `Ord` is bytewise, which is exactly what WeChat's reference
    // implementations (Python/PHP string sort) do.
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checks the `signature` query parameter of a GET or POST to the endpoint.
pub fn verify(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    matches(&sign(&[token, timestamp, nonce]), signature)
}

/// Checks the `msg_signature` query parameter of a safe-mode POST, which also
/// covers the `Encrypt` element so the ciphertext cannot be swapped.
pub fn verify_msg(token: &str, timestamp: &str, nonce: &str, encrypt: &str, msg_signature: &str) -> bool {
    matches(&sign(&[token, timestamp, nonce, encrypt]), msg_signature)
}

/// A signed `timestamp` further than this from our clock is refused, so a
/// captured request cannot be replayed later.
pub const FRESHNESS_SECONDS: i64 = 300;

/// The signed `timestamp` (seconds), when it is within the freshness window of `now`.
pub fn fresh(timestamp: &str, now: i64) -> Option<i64> {
    let ts: i64 = timestamp.parse().ok()?;
    (now.checked_sub(ts)?.abs() <= FRESHNESS_SECONDS).then_some(ts)
}

/// Constant-time comparison, so response timing does not leak how many
/// leading characters of a forged signature were right.
fn matches(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_is_accepted() {
        assert_eq!(sign(&["test", "1410685589", "test"]), "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff");
        assert!(verify("test", "1410685589", "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"));
    }

    #[test]
    fn wrong_signatures_are_refused() {
        let ok = ["test", "1410685589", "test"];
        assert!(!verify(ok[0], ok[1], ok[2], "f21891de399b4e33a1a93c9a7b8a8fffb5a443fe"));
        // Upper case, truncated, empty, and wrong token are all refused.
        assert!(!verify(ok[0], ok[1], ok[2], "F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF"));
        assert!(!verify(ok[0], ok[1], ok[2], "f21891de399b4e33"));
        assert!(!verify(ok[0], ok[1], ok[2], ""));
        assert!(!verify("other", ok[1], ok[2], "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"));
    }

    #[test]
    fn order_of_arguments_does_not_matter() {
        assert_eq!(sign(&["a", "b", "c"]), sign(&["c", "a", "b"]));
    }

    #[test]
    fn sorting_is_bytewise_not_numeric() {
        // Numerically 9 < 10, bytewise "10" < "9": the hash must be of "109x".
        let expected = {
            let mut h = Sha1::new();
            h.update(b"109x");
            hex::encode(h.finalize())
        };
        assert_eq!(sign(&["9", "x", "10"]), expected);
        // Upper case sorts before lower case bytewise.
        let mut h = Sha1::new();
        h.update(b"Zab");
        assert_eq!(sign(&["ab", "Z"]), hex::encode(h.finalize()));
    }

    #[test]
    fn only_recent_timestamps_are_fresh() {
        let now = 1_700_000_000;
        assert_eq!(fresh("1700000000", now), Some(now));
        assert_eq!(fresh("1699999700", now), Some(now - 300));
        assert_eq!(fresh("1700000300", now), Some(now + 300));
        assert_eq!(fresh("1699999699", now), None);
        assert_eq!(fresh("1700000301", now), None);
        for junk in ["", "abc", "1.5", "-9223372036854775808", "99999999999999999999"] {
            assert_eq!(fresh(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn msg_signature_covers_encrypt() {
        let sig = sign(&["tok", "1", "2", "cipher"]);
        assert!(verify_msg("tok", "1", "2", "cipher", &sig));
        assert!(!verify_msg("tok", "1", "2", "cipher2", &sig));
    }
}
