//! Order ids: `ord_` followed by a ULID (26 Crockford base-32 characters), so ids sort by
//! creation time.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

use crate::Timestamp;

const PREFIX: &str = "ord_";
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Longest client-chosen id accepted.
const MAX_LEN: usize = 64;

/// Why text is not an order id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderIdError {
    /// Empty, or longer than 64 characters.
    #[error("an order id must be 1 to {MAX_LEN} characters long")]
    Length,
    /// A character outside `A-Z a-z 0-9 - _ .`.
    #[error("an order id may contain only letters, digits, '-', '_' and '.'")]
    Characters,
    /// `.` or `..` (no client can fetch them as a path segment) or `health` (the route of the
    /// orders service's health check).
    #[error("{0:?} is reserved and cannot be an order id")]
    Reserved(String),
}

/// Ids that cannot name an order: path segments a URL cannot carry, and the health route.
const RESERVED: [&str; 3] = [".", "..", "health"];

/// An order's id: generated (`ord_<ULID>`) or chosen by the client (letters, digits, `-`, `_`,
/// `.`, at most 64 characters), so it is always safe in a URL path and a log line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(String);

impl OrderId {
    /// A new id for an order created at `now`, with 80 bits of caller-supplied `entropy`.
    pub fn generate(now: Timestamp, entropy: [u8; 10]) -> Self {
        let mut value: u128 = u128::from(now.millis() & ((1 << 48) - 1)) << 80;
        for (index, byte) in entropy.iter().enumerate() {
            value |= u128::from(*byte) << (8 * (9 - index));
        }
        let mut text = String::with_capacity(PREFIX.len() + 26);
        text.push_str(PREFIX);
        for position in (0..26).rev() {
            let digit = (value >> (5 * position)) & 0x1f;
            text.push(char::from(CROCKFORD[digit as usize]));
        }
        Self(text)
    }

    /// Parses an id from a client (a path segment or an `order_id` field).
    pub fn parse(text: &str) -> Result<Self, OrderIdError> {
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(OrderIdError::Length);
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(OrderIdError::Characters);
        }
        if RESERVED.contains(&text) {
            return Err(OrderIdError::Reserved(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for OrderId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_ulids_that_sort_by_time() {
        let early = OrderId::generate(Timestamp(1_000), [0xff; 10]);
        let late = OrderId::generate(Timestamp(1_001), [0; 10]);
        assert_eq!(early.as_str().len(), 30);
        assert!(early.as_str().starts_with("ord_"));
        assert!(early < late);
        assert_eq!(OrderId::parse(early.as_str()), Ok(early));
        assert_eq!(
            OrderId::generate(Timestamp(0), [0; 10]).as_str(),
            "ord_00000000000000000000000000"
        );
    }

    #[test]
    fn client_ids_are_url_safe() {
        assert!(OrderId::parse("test-001").is_ok());
        assert!(OrderId::parse("a.b_c-D9").is_ok());
        assert_eq!(OrderId::parse(""), Err(OrderIdError::Length));
        assert_eq!(OrderId::parse(&"x".repeat(65)), Err(OrderIdError::Length));
        assert_eq!(OrderId::parse("a/b"), Err(OrderIdError::Characters));
        assert_eq!(OrderId::parse("ä"), Err(OrderIdError::Characters));
        for reserved in [".", "..", "health"] {
            assert_eq!(
                OrderId::parse(reserved),
                Err(OrderIdError::Reserved(reserved.into()))
            );
        }
        assert!(OrderId::parse("...").is_ok());
        assert!(OrderId::parse("health-1").is_ok());
    }
}
