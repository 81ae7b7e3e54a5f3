//! Admission: how many requests run instances at once, and how many may wait for one of those
//! slots. A request beyond both is refused at once, before any instance is made, which keeps
//! the work done at saturation useful (and its memory bounded).

use super::error::HttpError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The request slots of the HTTP trigger.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    capacity: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

impl Admission {
    /// `capacity` slots (at least one); at most `max_waiting` requests wait, each up to `wait`.
    pub(crate) fn new(capacity: usize, max_waiting: usize, wait: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait,
        }
    }

    /// A slot, held until the permit is dropped: at once when one is free, else after waiting
    /// for one; [`HttpError::Busy`] when too many wait already or the wait runs out.
    pub(crate) async fn enter(&self) -> Result<OwnedSemaphorePermit, HttpError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HttpError::Busy);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(HttpError::Busy),
        }
    }

    /// Requests whose instances run now.
    pub(crate) fn in_flight(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Requests waiting for a slot now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Whether a slot is free now.
    pub(crate) fn has_free_slot(&self) -> bool {
        self.slots.available_permits() > 0
    }
}

/// Counts a request out of the waiting ones when it stops waiting (or is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn beyond_the_slots_requests_wait_and_beyond_the_waiting_room_are_refused() {
        let admission = Arc::new(Admission::new(1, 1, Duration::from_secs(2)));
        let held = admission.enter().await.unwrap();
        assert!(!admission.has_free_slot());
        let waiter = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.enter().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(admission.waiting(), 1);
        assert!(matches!(admission.enter().await, Err(HttpError::Busy)));
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!((admission.in_flight(), admission.waiting()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_runs_out() {
        let admission = Admission::new(1, 8, Duration::from_secs(2));
        let _held = admission.enter().await.unwrap();
        assert!(matches!(admission.enter().await, Err(HttpError::Busy)));
        assert_eq!(admission.waiting(), 0);
    }
}
