//! Time as an injected dependency: code in this crate never reads the wall clock itself.

use std::cell::Cell;

/// A source of the current time.
pub trait Clock {
    /// Milliseconds since the Unix epoch (1970-01-01T00:00:00Z).
    fn now_ms(&self) -> u64;
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: Cell<u64>,
}

impl ManualClock {
    /// A clock showing `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: Cell::new(start_ms),
        }
    }

    /// Moves the clock to `ms` (backwards too, to simulate a skewed instance).
    pub fn set(&self, ms: u64) {
        self.now_ms.set(ms);
    }

    /// Moves the clock forward by `ms` (saturating at `u64::MAX`).
    pub fn advance(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get().saturating_add(ms));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(clock.now_ms(), 1_250);
        clock.set(10);
        assert_eq!(clock.now_ms(), 10);
        clock.advance(u64::MAX);
        assert_eq!(clock.now_ms(), u64::MAX);
    }
}
