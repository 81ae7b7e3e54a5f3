//! The key-value store the resilience state lives in, shaped by Spin's key-value semantics, and an
//! in-memory implementation for tests.
//!
//! Facts about the real store that the rest of the crate designs around:
//! - `increment` is atomic and creates a missing key from 0; counters are not text, so a counter
//!   key is never `set` and a text key is never incremented;
//! - compare-and-swap on a missing key is not safe on the real store (it becomes an unconditional
//!   write), so values that need it are seeded first;
//! - compare-and-swap compares values, so values that must not repeat carry a generation;
//! - many instances share one store without locks, and any read may be stale.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A shared key-value store with atomic counters and compare-and-swap.
pub trait KvStore {
    /// What goes wrong talking to the store.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The value at `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The values at `keys`, in the same order.
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Self::Error>;

    /// Writes `value` at `key` unconditionally: only for seeding a value that will then change by
    /// compare-and-swap. Never used on a counter key.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), Self::Error>;

    /// Replaces the value at `key` with `new` if it currently equals `expected`, returning true.
    /// Returns false, writing nothing, if the key is absent or holds something else.
    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8])
    -> Result<bool, Self::Error>;

    /// Atomically adds `delta` to the counter at `key` (created from 0 when missing) and returns
    /// the new value.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, Self::Error>;

    /// The counter at `key` without changing it; 0 when absent.
    fn counter(&self, key: &str) -> Result<i64, Self::Error>;

    /// The counters at `keys`, in the same order; 0 for absent ones.
    fn counters(&self, keys: &[String]) -> Result<Vec<i64>, Self::Error> {
        keys.iter().map(|key| self.counter(key)).collect()
    }

    /// Deletes `keys` (missing ones are fine).
    fn delete_many(&self, keys: &[String]) -> Result<(), Self::Error>;

    /// Every key starting with `prefix`, in no particular order.
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Self::Error>;
}

/// A borrowed store is a store: several mechanisms (or simulated instances in tests) can share
/// one without owning it.
impl<T: KvStore + ?Sized> KvStore for &T {
    type Error = T::Error;

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).get(key)
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Self::Error> {
        (**self).get_many(keys)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), Self::Error> {
        (**self).set(key, value)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, Self::Error> {
        (**self).compare_and_swap(key, expected, new)
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, Self::Error> {
        (**self).increment(key, delta)
    }

    fn counter(&self, key: &str) -> Result<i64, Self::Error> {
        (**self).counter(key)
    }

    fn counters(&self, keys: &[String]) -> Result<Vec<i64>, Self::Error> {
        (**self).counters(keys)
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), Self::Error> {
        (**self).delete_many(keys)
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Self::Error> {
        (**self).keys_with_prefix(prefix)
    }
}

/// What [`MemoryStore`] refuses: mixing counters and plain values, as the real store would
/// corrupt or reject.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MemoryStoreError {
    /// `increment` or `counter` on a key that holds a plain value.
    #[error("key {key:?} holds a plain value, not a counter")]
    NotACounter {
        /// The key.
        key: String,
    },
    /// `set` or `compare_and_swap` on a key that holds a counter.
    #[error("key {key:?} holds a counter; counters may only be incremented")]
    CounterOverwrite {
        /// The key.
        key: String,
    },
    /// `increment` would overflow an `i64`.
    #[error("incrementing counter {key:?} by {delta} overflows")]
    CounterOverflow {
        /// The key.
        key: String,
        /// The amount that did not fit.
        delta: i64,
    },
}

/// One stored entry. Counters read back through `get` as 8 little-endian bytes.
#[derive(Debug, Clone)]
enum Entry {
    Value(Vec<u8>),
    Counter(i64),
}

impl Entry {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Entry::Value(bytes) => bytes.clone(),
            Entry::Counter(value) => value.to_le_bytes().to_vec(),
        }
    }
}

/// Something another instance does to the store between one instance's read and its write.
type Racer = Box<dyn FnOnce(&MemoryStore) + Send>;

/// An in-memory [`KvStore`] for tests, strict about counters: incrementing a plain value or
/// overwriting a counter is an error, so tests catch mixing that the real store would not.
///
/// It can also simulate racing writers: [`MemoryStore::before_next_compare_and_swap`] queues an
/// action that runs just before the next compare-and-swap compares, exactly where another
/// instance's write makes the caller's read stale.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    racers: Mutex<VecDeque<Racer>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `racer` to run once, with this store, right before the next `compare_and_swap`
    /// (on any key) compares. Queued racers run one per compare-and-swap, in order; a racer may
    /// itself compare-and-swap, which then runs the next queued racer first.
    pub fn before_next_compare_and_swap(&self, racer: impl FnOnce(&MemoryStore) + Send + 'static) {
        lock(&self.racers).push_back(Box::new(racer));
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        lock(&self.entries)
    }
}

/// Locks `mutex`; a panic in another test thread does not make the data unusable here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KvStore for MemoryStore {
    type Error = MemoryStoreError;

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.entries().get(key).map(Entry::bytes))
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Self::Error> {
        let entries = self.entries();
        Ok(keys
            .iter()
            .map(|key| entries.get(key).map(Entry::bytes))
            .collect())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), Self::Error> {
        let mut entries = self.entries();
        if let Some(Entry::Counter(_)) = entries.get(key) {
            return Err(MemoryStoreError::CounterOverwrite { key: key.into() });
        }
        entries.insert(key.into(), Entry::Value(value.to_vec()));
        Ok(())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, Self::Error> {
        let racer = lock(&self.racers).pop_front();
        if let Some(racer) = racer {
            racer(self);
        }
        let mut entries = self.entries();
        match entries.get_mut(key) {
            None => Ok(false),
            Some(Entry::Counter(_)) => Err(MemoryStoreError::CounterOverwrite { key: key.into() }),
            Some(Entry::Value(current)) if current.as_slice() == expected => {
                *current = new.to_vec();
                Ok(true)
            }
            Some(Entry::Value(_)) => Ok(false),
        }
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, Self::Error> {
        let mut entries = self.entries();
        let entry = entries.entry(key.into()).or_insert(Entry::Counter(0));
        match entry {
            Entry::Value(_) => Err(MemoryStoreError::NotACounter { key: key.into() }),
            Entry::Counter(value) => {
                *value =
                    value
                        .checked_add(delta)
                        .ok_or_else(|| MemoryStoreError::CounterOverflow {
                            key: key.into(),
                            delta,
                        })?;
                Ok(*value)
            }
        }
    }

    fn counter(&self, key: &str) -> Result<i64, Self::Error> {
        match self.entries().get(key) {
            None => Ok(0),
            Some(Entry::Counter(value)) => Ok(*value),
            Some(Entry::Value(_)) => Err(MemoryStoreError::NotACounter { key: key.into() }),
        }
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), Self::Error> {
        let mut entries = self.entries();
        for key in keys {
            entries.remove(key);
        }
        Ok(())
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, Self::Error> {
        Ok(self
            .entries()
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_and_restart_after_delete() {
        let store = MemoryStore::new();
        assert_eq!(store.counter("c").unwrap(), 0);
        assert_eq!(store.increment("c", 3).unwrap(), 3);
        assert_eq!(store.increment("c", -1).unwrap(), 2);
        assert_eq!(store.get("c").unwrap(), Some(2_i64.to_le_bytes().to_vec()));
        assert_eq!(
            store.counters(&["c".into(), "missing".into()]).unwrap(),
            vec![2, 0]
        );
        store.delete_many(&["c".into()]).unwrap();
        assert_eq!(store.increment("c", 1).unwrap(), 1);
    }

    #[test]
    fn counters_and_values_do_not_mix() {
        let store = MemoryStore::new();
        store.set("text", b"12345678").unwrap();
        assert_eq!(
            store.increment("text", 1),
            Err(MemoryStoreError::NotACounter { key: "text".into() })
        );
        assert!(store.counter("text").is_err());
        store.increment("count", 1).unwrap();
        assert_eq!(
            store.set("count", b"x"),
            Err(MemoryStoreError::CounterOverwrite {
                key: "count".into()
            })
        );
        assert!(store.compare_and_swap("count", b"x", b"y").is_err());
    }

    #[test]
    fn increment_overflow_is_an_error() {
        let store = MemoryStore::new();
        store.increment("c", i64::MAX).unwrap();
        assert!(matches!(
            store.increment("c", 1),
            Err(MemoryStoreError::CounterOverflow { .. })
        ));
        assert_eq!(store.counter("c").unwrap(), i64::MAX);
    }

    #[test]
    fn compare_and_swap_never_creates_a_key() {
        let store = MemoryStore::new();
        assert!(!store.compare_and_swap("k", b"", b"v").unwrap());
        assert_eq!(store.get("k").unwrap(), None);
        store.set("k", b"a").unwrap();
        assert!(!store.compare_and_swap("k", b"b", b"c").unwrap());
        assert!(store.compare_and_swap("k", b"a", b"c").unwrap());
        assert_eq!(store.get("k").unwrap(), Some(b"c".to_vec()));
    }

    #[test]
    fn racer_runs_between_read_and_compare() {
        let store = MemoryStore::new();
        store.set("k", b"a").unwrap();
        store.before_next_compare_and_swap(|store| store.set("k", b"b").unwrap());
        let read = store.get("k").unwrap().unwrap();
        assert!(!store.compare_and_swap("k", &read, b"mine").unwrap());
        assert_eq!(store.get("k").unwrap(), Some(b"b".to_vec()));
        // The racer ran once: the retry wins.
        assert!(store.compare_and_swap("k", b"b", b"mine").unwrap());
    }

    #[test]
    fn lists_keys_and_reads_many() {
        let store = MemoryStore::new();
        store.set("a/1", b"x").unwrap();
        store.set("a/2", b"y").unwrap();
        store.set("b/1", b"z").unwrap();
        let mut keys = store.keys_with_prefix("a/").unwrap();
        keys.sort();
        assert_eq!(keys, vec!["a/1".to_string(), "a/2".to_string()]);
        assert_eq!(
            store
                .get_many(&["b/1".into(), "nope".into(), "a/1".into()])
                .unwrap(),
            vec![Some(b"z".to_vec()), None, Some(b"x".to_vec())]
        );
    }
}
