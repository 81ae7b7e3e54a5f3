//! The fault configuration and the draw counters, in the key-value store (`default` label), so
//! every instance of the simulator sees the same settings and numbers its calls in one
//! sequence.
//!
//! Each time a seed is set the configuration's generation goes up, and the draws are counted
//! under that generation's own key: a call is numbered in the sequence of the configuration it
//! read, so replaying a seed never mixes two runs. Updates are compare-and-swap, so concurrent
//! partial updates do not overwrite each other (except the very first write, which creates the
//! key: a swap after `current()` found nothing is unconditional in Spin).

use crate::api::ApiError;
use guest_kit::keyvalue::{atomics, store};
use serde::{Deserialize, Serialize};
use simulator_core::{ConfigUpdate, FaultConfig};

const CONFIG_KEY: &str = "external-sim/config";
/// Counts every validation call that reached the simulator.
const CALLS_KEY: &str = "external-sim/calls";

/// The configuration as stored and as one call reads it: the fault settings and their seed
/// generation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The fault settings.
    #[serde(flatten)]
    pub config: FaultConfig,
    #[serde(default)]
    generation: u64,
}

/// The simulator's shared state.
pub struct FaultState {
    bucket: store::Bucket,
}

impl FaultState {
    /// Opens the `default` store.
    pub fn open() -> Result<Self, ApiError> {
        Ok(Self {
            bucket: store::open("default").map_err(storage)?,
        })
    }

    /// The current configuration (the default when none was set).
    pub fn snapshot(&self) -> Result<Snapshot, ApiError> {
        decode(self.bucket.get(CONFIG_KEY).map_err(storage)?)
    }

    /// Applies `update` atomically and returns the new configuration; a new seed starts a new
    /// generation, whose draws count from 0. On a missing key the first pass reads the default
    /// and its swap simply writes.
    pub fn update(&self, update: &ConfigUpdate) -> Result<FaultConfig, ApiError> {
        let mut cas = atomics::Cas::new(&self.bucket, CONFIG_KEY).map_err(storage)?;
        loop {
            let current = decode(cas.current().map_err(storage)?)?;
            let updated = Snapshot {
                config: current.config.apply(update),
                generation: current.generation + u64::from(update.seed.is_some()),
            };
            match atomics::swap(cas, &encode(&updated)?) {
                Ok(()) => return Ok(updated.config),
                Err(atomics::CasError::CasFailed(retry)) => cas = retry,
                Err(atomics::CasError::StoreError(error)) => return Err(storage(error)),
            }
        }
    }

    /// Counts one validation call.
    pub fn count_call(&self) -> Result<(), ApiError> {
        atomics::increment(&self.bucket, CALLS_KEY, 1).map_err(storage)?;
        Ok(())
    }

    /// Validation calls that reached the simulator so far.
    pub fn calls(&self) -> Result<i64, ApiError> {
        atomics::increment(&self.bucket, CALLS_KEY, 0).map_err(storage)
    }

    /// The number of this validation call in `snapshot`'s generation, counting from 0.
    pub fn next_draw(&self, snapshot: &Snapshot) -> Result<u64, ApiError> {
        let key = format!("external-sim/draws/{}", snapshot.generation);
        let count = atomics::increment(&self.bucket, &key, 1).map_err(storage)?;
        Ok(u64::try_from(count - 1).unwrap_or(0))
    }
}

fn decode(bytes: Option<Vec<u8>>) -> Result<Snapshot, ApiError> {
    match bytes {
        None => Ok(Snapshot::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Storage(format!("stored configuration is unreadable: {e}"))),
    }
}

fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(snapshot).map_err(|e| ApiError::Storage(e.to_string()))
}

fn storage(error: store::Error) -> ApiError {
    ApiError::Storage(match error {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied (is `default` in key_value_stores?)".into(),
        store::Error::Other(detail) => detail,
    })
}
