//! The decisions of the IETF `Idempotency-Key` header draft: which keys are acceptable, and what
//! to do with a request given what is stored about its key. Storage is up to the caller.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest key accepted, in characters.
const MAX_KEY_LENGTH: usize = 255;

/// The shortest wait suggested to a client whose key is still in flight.
const MIN_IN_FLIGHT_RETRY_MS: u64 = 1_000;

/// A valid `Idempotency-Key`: 1 to 255 printable ASCII characters, not all spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why an `Idempotency-Key` header was refused (a 400 for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing but quotes or spaces.
    #[error("the Idempotency-Key header is empty")]
    Empty,
    /// Too long.
    #[error("the Idempotency-Key is {length} characters long; at most 255 are allowed")]
    TooLong {
        /// Its length in characters, after unquoting.
        length: usize,
    },
    /// Neither a quoted string nor a token of printable ASCII.
    #[error(
        "the Idempotency-Key must be a quoted string (\"...\") or a token, of printable ASCII characters"
    )]
    Invalid,
}

impl IdempotencyKey {
    /// Parses the header's value: a structured-field string (`"..."`, with `\"` and `\\`
    /// escapes) or, leniently, a bare token such as a UUID (token characters, `:` and `/`; it
    /// may start with a digit).
    pub fn parse(header_value: &str) -> Result<Self, KeyError> {
        let value = header_value.trim_matches([' ', '\t']);
        let key = match value.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None if value.is_empty() => return Err(KeyError::Empty),
            None if value.chars().all(is_token_char) => value.to_owned(),
            None => return Err(KeyError::Invalid),
        };
        if key.chars().all(|c| c == ' ') {
            return Err(KeyError::Empty);
        }
        let length = key.chars().count();
        if length > MAX_KEY_LENGTH {
            return Err(KeyError::TooLong { length });
        }
        if !key.chars().all(|c| (' '..='~').contains(&c)) {
            return Err(KeyError::Invalid);
        }
        Ok(Self(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The inside of a quoted string whose opening quote is already gone: up to the closing quote,
/// which must end the value.
fn unquote(quoted: &str) -> Result<String, KeyError> {
    let mut key = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => key.push(escaped),
                _ => return Err(KeyError::Invalid),
            },
            '"' if chars.as_str().is_empty() => return Ok(key),
            '"' => return Err(KeyError::Invalid),
            c => key.push(c),
        }
    }
    // No closing quote.
    Err(KeyError::Invalid)
}

/// RFC 9110 `tchar`, plus the `:` and `/` structured-field tokens allow.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c)
}

/// What storage keeps about a key (the response itself stays with the caller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// A fingerprint of the request first made with the key.
    pub fingerprint: String,
    /// When the key was first used.
    pub created_ms: u64,
    /// Whether that request finished (its response is stored).
    pub completed: bool,
    /// Until when the first request holds the key while it runs.
    pub locked_until_ms: u64,
}

/// What to do with a request carrying a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDecision {
    /// A new key (or an expired one): process the request.
    Proceed,
    /// The same request already ran: send the stored response again.
    Replay,
    /// The same request is still running: 409, try again later.
    InFlight {
        /// When to try again, in milliseconds (at least a second).
        retry_after_ms: u64,
    },
    /// The key was used for a different request: 422.
    Mismatch,
}

/// Decides what to do with a request whose `fingerprint` arrived with a key about which storage
/// holds `stored`, at `now_ms`, keys living `ttl_ms`. The fingerprint is checked before the
/// lock, and a record left incomplete (by a crash) counts as done once its lock has passed.
pub fn decide(
    stored: Option<&KeyRecord>,
    fingerprint: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> KeyDecision {
    let Some(record) = stored else {
        return KeyDecision::Proceed;
    };
    if record.created_ms.saturating_add(ttl_ms) <= now_ms {
        return KeyDecision::Proceed;
    }
    if record.fingerprint != fingerprint {
        return KeyDecision::Mismatch;
    }
    if !record.completed && record.locked_until_ms > now_ms {
        return KeyDecision::InFlight {
            retry_after_ms: (record.locked_until_ms - now_ms).max(MIN_IN_FLIGHT_RETRY_MS),
        };
    }
    KeyDecision::Replay
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(completed: bool, locked_until_ms: u64) -> KeyRecord {
        KeyRecord {
            fingerprint: "fp".into(),
            created_ms: 1_000,
            completed,
            locked_until_ms,
        }
    }

    #[test]
    fn parses_quoted_strings_and_tokens() {
        assert_eq!(IdempotencyKey::parse("\"abc\"").unwrap().as_str(), "abc");
        assert_eq!(
            IdempotencyKey::parse(r#""a \"quoted\" \\ key""#)
                .unwrap()
                .as_str(),
            r#"a "quoted" \ key"#
        );
        assert_eq!(
            IdempotencyKey::parse(" 8e03978e-40d5-43e8-bc93-6894a57f9324 ")
                .unwrap()
                .to_string(),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
        assert_eq!(
            IdempotencyKey::parse("urn:key/1").unwrap().as_str(),
            "urn:key/1"
        );
    }

    #[test]
    fn refuses_empty_and_blank_keys() {
        assert_eq!(IdempotencyKey::parse(""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse("\"\""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse("\"   \""), Err(KeyError::Empty));
    }

    #[test]
    fn refuses_long_keys() {
        let longest = "k".repeat(255);
        assert!(IdempotencyKey::parse(&longest).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&format!("\"{}\"", "k".repeat(256))),
            Err(KeyError::TooLong { length: 256 })
        );
    }

    #[test]
    fn refuses_malformed_keys() {
        for bad in [
            "\"open",
            "\"a\"b\"",
            "\"bad \\n escape\"",
            "\"tab\tinside\"",
            "\"caf\u{e9}\"",
            "two words",
            "semi;colon",
            "\"trailing\\\"",
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(KeyError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            KeyError::TooLong { length: 300 }.to_string(),
            "the Idempotency-Key is 300 characters long; at most 255 are allowed"
        );
    }

    #[test]
    fn unknown_key_proceeds() {
        assert_eq!(decide(None, "fp", 5_000, 60_000), KeyDecision::Proceed);
    }

    #[test]
    fn same_request_done_replays() {
        assert_eq!(
            decide(Some(&record(true, 9_000)), "fp", 5_000, 60_000),
            KeyDecision::Replay
        );
    }

    #[test]
    fn same_request_running_is_in_flight() {
        assert_eq!(
            decide(Some(&record(false, 9_000)), "fp", 5_000, 60_000),
            KeyDecision::InFlight {
                retry_after_ms: 4_000
            }
        );
        // Never suggest less than a second.
        assert_eq!(
            decide(Some(&record(false, 5_010)), "fp", 5_000, 60_000),
            KeyDecision::InFlight {
                retry_after_ms: 1_000
            }
        );
    }

    #[test]
    fn a_different_request_mismatches_even_while_in_flight() {
        assert_eq!(
            decide(Some(&record(false, 9_000)), "other", 5_000, 60_000),
            KeyDecision::Mismatch
        );
        assert_eq!(
            decide(Some(&record(true, 0)), "other", 5_000, 60_000),
            KeyDecision::Mismatch
        );
    }

    #[test]
    fn an_expired_key_proceeds_whatever_it_held() {
        assert_eq!(
            decide(Some(&record(false, 100_000)), "other", 61_000, 60_000),
            KeyDecision::Proceed
        );
        assert_eq!(
            decide(Some(&record(true, 0)), "fp", 60_999, 60_000),
            KeyDecision::Replay
        );
    }

    #[test]
    fn a_crashed_request_counts_as_done_once_its_lock_passed() {
        assert_eq!(
            decide(Some(&record(false, 9_000)), "fp", 9_000, 60_000),
            KeyDecision::Replay
        );
    }

    proptest! {
        /// Any acceptable key survives quoting and parsing unchanged.
        #[test]
        fn quoted_keys_round_trip(key in "[ -~]{1,255}") {
            prop_assume!(!key.chars().all(|c| c == ' '));
            let quoted = format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""));
            let parsed = IdempotencyKey::parse(&quoted).unwrap();
            prop_assert_eq!(parsed.as_str(), key.as_str());
        }
    }
}
