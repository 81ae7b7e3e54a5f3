//! The storage side of key-value stores: one trait, implemented per backend.

use async_trait::async_trait;

/// A failure of the storage behind a store, reported to the guest as `error::other`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// `increment` found a value that is not a counter (it was written with `set`).
    #[error("the value at {key:?} is not a counter (it was written with set, not increment)")]
    NotACounter {
        /// The key.
        key: String,
    },
    /// `increment` would overflow an i64.
    #[error("incrementing {key:?} overflows a 64-bit integer")]
    Overflow {
        /// The key.
        key: String,
    },
    /// The backend failed (I/O, connection, ...).
    #[error("{0}")]
    Backend(String),
}

/// The data of one store (one label). All methods are atomic on their own.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The value at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key` to `value`.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key` (no error if absent).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Whether `key` has a value.
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Every key.
    async fn keys(&self) -> Result<Vec<String>, StoreError>;
    /// The values at `keys`, in order.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Sets every pair, all or nothing.
    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// Removes every key.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Adds `delta` to the counter at `key` (absent = 0) and returns the new value. As in Spin,
    /// the `spin` backend stores counters as 8-byte little-endian i64 and the `redis` backend as
    /// Redis integers: components must not read counters with `get`.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Sets `key` to `value` only if it still holds `expected`; returns whether it did.
    async fn swap_if(&self, key: &str, expected: &[u8], value: &[u8]) -> Result<bool, StoreError>;
}

/// Decodes a stored counter (`None` = absent = 0) and adds `delta`.
pub fn add_to_counter(key: &str, current: Option<&[u8]>, delta: i64) -> Result<i64, StoreError> {
    let current = match current {
        None => 0,
        Some(bytes) => {
            i64::from_le_bytes(bytes.try_into().map_err(|_| StoreError::NotACounter {
                key: key.to_owned(),
            })?)
        }
    };
    current
        .checked_add(delta)
        .ok_or_else(|| StoreError::Overflow {
            key: key.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_little_endian_i64() {
        assert_eq!(add_to_counter("k", None, 5), Ok(5));
        assert_eq!(add_to_counter("k", Some(&7i64.to_le_bytes()), -2), Ok(5));
        assert_eq!(
            add_to_counter("k", Some(b"12"), 1),
            Err(StoreError::NotACounter { key: "k".into() })
        );
        assert_eq!(
            add_to_counter("k", Some(&i64::MAX.to_le_bytes()), 1),
            Err(StoreError::Overflow { key: "k".into() })
        );
    }
}
