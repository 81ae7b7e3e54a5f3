//! The request id (`x-request-id`): the caller's, when it is a sensible one, else a new one.

use std::fmt;

/// The longest request id accepted from a caller, in characters.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Why a caller's request id was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    /// Nothing.
    #[error("a request id must not be empty")]
    Empty,
    /// Longer than [`MAX_REQUEST_ID_LEN`].
    #[error("a request id has at most {MAX_REQUEST_ID_LEN} characters, not {0}")]
    TooLong(usize),
    /// A space, a control character or anything beyond ASCII.
    #[error("a request id holds only visible ASCII characters: {found:?} at byte {at} is not one")]
    Invalid {
        /// Where, in bytes.
        at: usize,
        /// The character found there.
        found: char,
    },
}

/// A request's id: 1 to 128 visible ASCII characters (`!` to `~`, so no spaces), safe to log
/// and to pass on in a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts `value` as a request id if it is one.
    pub fn parse(value: &str) -> Result<Self, RequestIdError> {
        if value.is_empty() {
            return Err(RequestIdError::Empty);
        }
        if let Some((at, found)) = value.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
            return Err(RequestIdError::Invalid { at, found });
        }
        // All ASCII from here: bytes are characters.
        if value.len() > MAX_REQUEST_ID_LEN {
            return Err(RequestIdError::TooLong(value.len()));
        }
        Ok(Self(value.to_owned()))
    }

    /// A new request id: 32 lowercase hex digits from two draws of `random`.
    pub fn generate(random: &mut impl FnMut() -> u64) -> Self {
        Self(format!("{:016x}{:016x}", random(), random()))
    }

    /// The caller's request id (the `x-request-id` header's value) when it is acceptable, else
    /// a new one.
    pub fn from_header(value: Option<&str>, random: &mut impl FnMut() -> u64) -> Self {
        value
            .and_then(|value| Self::parse(value).ok())
            .unwrap_or_else(|| Self::generate(random))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counter() -> impl FnMut() -> u64 {
        let mut next = 0;
        move || {
            next += 1;
            next
        }
    }

    #[test]
    fn sensible_ids_are_accepted_as_they_are() {
        for id in [
            "a",
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "req_01HV!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            &"x".repeat(MAX_REQUEST_ID_LEN),
        ] {
            assert_eq!(RequestId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn others_are_refused_with_the_reason() {
        assert_eq!(RequestId::parse(""), Err(RequestIdError::Empty));
        assert_eq!(
            RequestId::parse(&"x".repeat(129)),
            Err(RequestIdError::TooLong(129))
        );
        assert_eq!(
            RequestId::parse("two words"),
            Err(RequestIdError::Invalid { at: 3, found: ' ' })
        );
        assert_eq!(
            RequestId::parse("line\nbreak"),
            Err(RequestIdError::Invalid { at: 4, found: '\n' })
        );
        assert_eq!(
            RequestId::parse("caf\u{e9}"),
            Err(RequestIdError::Invalid {
                at: 3,
                found: '\u{e9}'
            })
        );
        assert_eq!(
            RequestId::parse("tab\t").unwrap_err().to_string(),
            "a request id holds only visible ASCII characters: '\\t' at byte 3 is not one"
        );
    }

    #[test]
    fn a_missing_or_bad_header_gets_a_new_id() {
        let mut random = counter();
        assert_eq!(
            RequestId::from_header(Some("abc-123"), &mut random).as_str(),
            "abc-123"
        );
        assert_eq!(
            RequestId::from_header(None, &mut random).as_str(),
            "00000000000000010000000000000002"
        );
        assert_eq!(
            RequestId::from_header(Some("bad id"), &mut random).to_string(),
            "00000000000000030000000000000004"
        );
    }

    proptest! {
        /// Exactly the visible-ASCII strings of 1 to 128 characters are accepted, unchanged.
        #[test]
        fn accepted_exactly_when_visible_ascii(value in "\\PC{0,140}|[!-~]{1,130}") {
            let valid = (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
                && value.bytes().all(|b| b.is_ascii_graphic());
            match RequestId::parse(&value) {
                Ok(id) => {
                    prop_assert!(valid);
                    prop_assert_eq!(id.as_str(), value.as_str());
                }
                Err(_) => prop_assert!(!valid),
            }
        }

        /// Generated ids are always acceptable ones.
        #[test]
        fn generated_ids_parse(a in any::<u64>(), b in any::<u64>()) {
            let mut draws = [a, b].into_iter();
            let id = RequestId::generate(&mut || draws.next().expect("two draws"));
            prop_assert_eq!(RequestId::parse(id.as_str()), Ok(id.clone()));
            prop_assert_eq!(id.as_str().len(), 32);
        }
    }
}
