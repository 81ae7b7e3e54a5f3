//! Locking a std mutex whatever a panicking holder left behind. Every host mutex guards data
//! that stays valid across a panic (each update completes before its guard drops, or rolls
//! back), so a poisoned lock is as good as a clean one.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poison.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
