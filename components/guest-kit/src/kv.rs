//! The resilience library's [`KvStore`] over Spin's key-value store (`wasi:keyvalue`
//! `store`, `atomics` and `batch`, draft2), so breaker, budget and metrics state is shared by
//! every instance and every host using the same store.

use crate::keyvalue::{atomics, batch, store};
use guest_kit_core::decode_counter;
use resilience::KvStore;

/// A key-value store error, with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("key-value {operation} failed: {detail}")]
pub struct KvError {
    operation: &'static str,
    detail: String,
}

fn failed(operation: &'static str) -> impl Fn(store::Error) -> KvError {
    move |error| KvError {
        operation,
        detail: match error {
            store::Error::NoSuchStore => "no such store".into(),
            store::Error::AccessDenied => {
                "access denied (is the store in the component's key_value_stores?)".into()
            }
            store::Error::Other(detail) => detail,
        },
    }
}

/// A Spin key-value store, by label.
pub struct SpinKv {
    bucket: store::Bucket,
}

impl SpinKv {
    /// Opens the store labelled `label` (`default` for the app's store).
    pub fn open(label: &str) -> Result<Self, KvError> {
        Ok(Self {
            bucket: store::open(label).map_err(failed("open"))?,
        })
    }
}

impl KvStore for SpinKv {
    type Error = KvError;

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket.get(key).map_err(failed("get"))
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Hosts differ in whether absent keys come back (as `None`) or are left out, so the
        // answer is matched by key.
        let found = batch::get_many(&self.bucket, keys).map_err(failed("get-many"))?;
        Ok(keys
            .iter()
            .map(|key| {
                found
                    .iter()
                    .find(|(name, _)| name == key)
                    .and_then(|(_, value)| value.clone())
            })
            .collect())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket.set(key, value).map_err(failed("set"))
    }

    fn compare_and_swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, KvError> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(failed("compare-and-swap"))?;
        // The snapshot the swap compares against is taken here; swapping after `current()`
        // found nothing would write unconditionally, so an absent key is never swapped.
        match cas.current().map_err(failed("compare-and-swap"))? {
            Some(current) if current == expected => {}
            _ => return Ok(false),
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(error)) => Err(failed("compare-and-swap")(error)),
        }
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(&self.bucket, key, delta).map_err(failed("increment"))
    }

    fn counter(&self, key: &str) -> Result<i64, KvError> {
        Ok(self
            .get(key)?
            .as_deref()
            .and_then(decode_counter)
            .unwrap_or(0))
    }

    fn counters(&self, keys: &[String]) -> Result<Vec<i64>, KvError> {
        Ok(self
            .get_many(keys)?
            .into_iter()
            .map(|value| value.as_deref().and_then(decode_counter).unwrap_or(0))
            .collect())
    }

    fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        batch::delete_many(&self.bucket, keys).map_err(failed("delete-many"))
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .bucket
                .list_keys(cursor.as_deref())
                .map_err(failed("list-keys"))?;
            keys.extend(page.keys.into_iter().filter(|key| key.starts_with(prefix)));
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }
}
