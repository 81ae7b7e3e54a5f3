//! The host's clock: the one place it reads the system's time (`clippy.toml` disallows the
//! system clocks everywhere else). The host is given a [`HostClock`] (`LoadOptions::clock`);
//! tests give it one on tokio's paused time, so schedules and backoffs run in milliseconds.

#![allow(
    clippy::disallowed_methods,
    reason = "the clock module is where the host reads the system clocks"
)]

use chrono::{DateTime, Utc};
use std::fmt::Debug;
use tokio::time::Instant;

/// Where the host reads time.
pub trait HostClock: Send + Sync + Debug + 'static {
    /// Wall-clock time: when cron schedules fire, and the timestamps given to components.
    fn wall(&self) -> DateTime<Utc>;

    /// Monotonic time: durations, deadlines and backoff. Tokio's instant, so that tokio's
    /// paused time (in tests) moves it, and `tokio::time::sleep` waits on the same time line.
    fn now(&self) -> Instant;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl HostClock for SystemClock {
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock for tests: its wall time starts at a given moment and moves with tokio's (paused)
/// time, and can be stepped back or forward as a system clock can.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TestClock {
    start_wall: DateTime<Utc>,
    start: Instant,
    step: std::sync::Mutex<chrono::TimeDelta>,
}

#[cfg(test)]
impl TestClock {
    /// A clock whose wall time is `start_wall` now.
    pub(crate) fn starting_at(start_wall: DateTime<Utc>) -> Self {
        Self {
            start_wall,
            start: Instant::now(),
            step: std::sync::Mutex::new(chrono::TimeDelta::zero()),
        }
    }

    /// Steps the wall clock by `delta` (negative: back), as an NTP correction would.
    pub(crate) fn step(&self, delta: chrono::TimeDelta) {
        *crate::services::lock::lock(&self.step) += delta;
    }
}

#[cfg(test)]
impl HostClock for TestClock {
    fn wall(&self) -> DateTime<Utc> {
        let elapsed = chrono::TimeDelta::from_std(self.start.elapsed()).unwrap_or_default();
        self.start_wall + elapsed + *crate::services::lock::lock(&self.step)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_test_clock_moves_with_paused_time_and_steps_as_told() {
        let noon = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let clock = TestClock::starting_at(noon);
        let started = clock.now();
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now() - started, Duration::from_secs(90));
        assert_eq!(clock.wall(), noon + chrono::TimeDelta::seconds(90));
        clock.step(chrono::TimeDelta::seconds(-60));
        assert_eq!(clock.wall(), noon + chrono::TimeDelta::seconds(30));
    }
}
