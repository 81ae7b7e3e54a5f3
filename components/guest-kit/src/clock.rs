//! The wall clock, read at the edge (the component) and handed to the domain as a
//! [`resilience::Clock`].

use resilience::Clock;

/// The host's wall clock (`wasi:clocks/wall-clock`).
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64)
    }
}

/// A seed for a random source, from the host's `wasi:random`.
pub fn random_seed() -> u64 {
    wasi::random::random::get_random_u64()
}
