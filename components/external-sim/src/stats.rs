//! The count of validation calls that reached the simulator, in the key-value store (`default`
//! label), so every instance adds to one number.

use crate::api::ApiError;
use guest_kit::SpinKv;
use resilience::KvStore;

/// Counts every validation call that reached the simulator.
const CALLS_KEY: &str = "external-sim/calls";

/// Counts one validation call.
pub fn count_call() -> Result<(), ApiError> {
    store()?.increment(CALLS_KEY, 1)?;
    Ok(())
}

/// Validation calls that reached the simulator so far.
pub fn calls() -> Result<i64, ApiError> {
    Ok(store()?.counter(CALLS_KEY)?)
}

fn store() -> Result<SpinKv, ApiError> {
    Ok(SpinKv::open("default")?)
}
