//! The fault configuration and the draw counter, in the key-value store (`default` label), so
//! every instance of the simulator sees the same settings and numbers its calls in one
//! sequence.

use crate::api::ApiError;
use simulator_core::FaultConfig;

use guest_kit::keyvalue::{atomics, store};

const CONFIG_KEY: &str = "external-sim/config";
const DRAWS_KEY: &str = "external-sim/draws";

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
    pub fn config(&self) -> Result<FaultConfig, ApiError> {
        match self.bucket.get(CONFIG_KEY).map_err(storage)? {
            None => Ok(FaultConfig::default()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Storage(format!("stored configuration is unreadable: {e}"))),
        }
    }

    /// Stores `config`; a new seed restarts the draw sequence.
    pub fn save(&self, config: &FaultConfig, new_seed: bool) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(config).map_err(|e| ApiError::Storage(e.to_string()))?;
        self.bucket.set(CONFIG_KEY, &bytes).map_err(storage)?;
        if new_seed {
            self.bucket.delete(DRAWS_KEY).map_err(storage)?;
        }
        Ok(())
    }

    /// The number of this validation call since the seed was set, counting from 0.
    pub fn next_draw(&self) -> Result<u64, ApiError> {
        let count = atomics::increment(&self.bucket, DRAWS_KEY, 1).map_err(storage)?;
        Ok(u64::try_from(count - 1).unwrap_or(0))
    }
}

fn storage(error: store::Error) -> ApiError {
    ApiError::Storage(match error {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied (is `default` in key_value_stores?)".into(),
        store::Error::Other(detail) => detail,
    })
}
