//! The breaker's tunable rules, and the pure decisions that depend only on them.

use super::record::TripReason;
use crate::settings::SettingError;
use crate::window::WindowTotals;

/// How the circuit breaker judges a dependency. Validate with [`BreakerPolicy::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Length of the sliding window the rates are computed over.
    pub window_ms: u64,
    /// Buckets the window is split into; must divide `window_ms` evenly.
    pub buckets: u32,
    /// Calls the window needs before a rate can trip the breaker.
    pub min_calls: u64,
    /// Failures per call (0..=1) that trip the breaker.
    pub failure_rate: f64,
    /// A call at least this slow counts as slow, failed or not.
    pub slow_call_ms: u64,
    /// Slow calls per call (0..=1) that trip the breaker.
    pub slow_call_rate: f64,
    /// Failures in a row, fleet-wide, that trip the breaker whatever the rates.
    pub consecutive_failures: u64,
    /// How long the circuit stays open after its first trip.
    pub open_ms: u64,
    /// The longest it stays open: each further trip without a close doubles the time, up to this.
    pub open_max_ms: u64,
    /// Probes allowed at once in half-open, and successes needed to close.
    pub half_open_probes: u32,
    /// How long a probe holds its slot before another caller may take it.
    pub probe_timeout_ms: u64,
    /// When a caller rejected by a forced-open circuit should ask again.
    pub forced_recheck_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            window_ms: 10_000,
            buckets: 10,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call_ms: 3_000,
            slow_call_rate: 0.8,
            consecutive_failures: 5,
            open_ms: 1_000,
            open_max_ms: 4_000,
            half_open_probes: 1,
            probe_timeout_ms: 10_000,
            forced_recheck_ms: 5_000,
        }
    }
}

/// The most buckets a window may have: every totals read fetches four counters per bucket.
const MAX_BUCKETS: u32 = 1_000;
/// The most probes a half-open circuit may run at once (the record lists their leases).
const MAX_HALF_OPEN_PROBES: u32 = 100;

impl BreakerPolicy {
    /// Checks every field; an error names the setting variable that sets the field (see
    /// [`crate::settings::VARIABLES`]).
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.window_ms == 0 {
            return Err(SettingError::invalid(
                "breaker_window_secs",
                0,
                "the window must not be empty",
            ));
        }
        if !(1..=MAX_BUCKETS).contains(&self.buckets) {
            return Err(SettingError::invalid(
                "breaker_buckets",
                self.buckets,
                format!("must be between 1 and {MAX_BUCKETS}"),
            ));
        }
        if !self.window_ms.is_multiple_of(u64::from(self.buckets)) {
            return Err(SettingError::invalid(
                "breaker_buckets",
                self.buckets,
                format!("must divide the window ({} ms) evenly", self.window_ms),
            ));
        }
        at_least_one("breaker_min_calls", self.min_calls)?;
        rate("breaker_failure_rate", self.failure_rate)?;
        at_least_one("breaker_slow_call_ms", self.slow_call_ms)?;
        rate("breaker_slow_call_rate", self.slow_call_rate)?;
        at_least_one("breaker_consecutive_failures", self.consecutive_failures)?;
        at_least_one("breaker_open_ms", self.open_ms)?;
        if self.open_max_ms < self.open_ms {
            return Err(SettingError::invalid(
                "breaker_open_max_ms",
                self.open_max_ms,
                format!("must be at least breaker_open_ms ({})", self.open_ms),
            ));
        }
        if !(1..=MAX_HALF_OPEN_PROBES).contains(&self.half_open_probes) {
            return Err(SettingError::invalid(
                "breaker_half_open_probes",
                self.half_open_probes,
                format!("must be between 1 and {MAX_HALF_OPEN_PROBES}"),
            ));
        }
        at_least_one("breaker_probe_timeout_ms", self.probe_timeout_ms)?;
        at_least_one("forced_recheck_ms", self.forced_recheck_ms)
    }

    /// Whether a call that took `latency_ms` counts as slow.
    pub fn is_slow(&self, latency_ms: u64) -> bool {
        latency_ms >= self.slow_call_ms
    }

    /// How long the circuit stays open after its `trips`-th trip in a row:
    /// `open_ms * 2^(trips - 1)`, capped at `open_max_ms` (trips 0 counts as 1). Never overflows.
    pub fn open_duration_ms(&self, trips: u32) -> u64 {
        let doublings = trips.saturating_sub(1);
        let factor = 1_u64.checked_shl(doublings).unwrap_or(u64::MAX);
        self.open_ms.saturating_mul(factor).min(self.open_max_ms)
    }

    /// Why a closed circuit should trip, given the window's totals and the fleet-wide run of
    /// consecutive failures, or `None` to stay closed. Rates count only once the window has
    /// `min_calls` calls, and only if something actually failed (or was slow).
    pub fn trip_reason(&self, totals: &WindowTotals, run: u64) -> Option<TripReason> {
        if totals.calls >= self.min_calls && totals.calls > 0 {
            let calls = totals.calls as f64;
            let failure_rate = totals.failures as f64 / calls;
            if totals.failures > 0 && failure_rate >= self.failure_rate {
                return Some(TripReason::FailureRate {
                    rate: failure_rate,
                    calls: totals.calls,
                });
            }
            let slow_rate = totals.slow as f64 / calls;
            if totals.slow > 0 && slow_rate >= self.slow_call_rate {
                return Some(TripReason::SlowCallRate {
                    rate: slow_rate,
                    calls: totals.calls,
                });
            }
        }
        (run >= self.consecutive_failures).then_some(TripReason::ConsecutiveFailures { count: run })
    }
}

fn at_least_one(name: &str, value: u64) -> Result<(), SettingError> {
    if value == 0 {
        return Err(SettingError::invalid(name, value, "must be at least 1"));
    }
    Ok(())
}

fn rate(name: &str, value: f64) -> Result<(), SettingError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(SettingError::invalid(
            name,
            value,
            "must be between 0 and 1",
        ));
    }
    Ok(())
}

/// What one call to the dependency did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    /// The call failed (in a way that says something about the dependency's health).
    pub failed: bool,
    /// How long it took.
    pub latency_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn totals(calls: u64, failures: u64, slow: u64) -> WindowTotals {
        WindowTotals {
            calls,
            failures,
            slow,
            retries: 0,
        }
    }

    #[test]
    fn default_policy_is_valid() {
        BreakerPolicy::default().validate().unwrap();
    }

    #[test]
    fn validate_names_the_setting_at_fault() {
        let cases: Vec<(BreakerPolicy, &str)> = vec![
            (
                BreakerPolicy {
                    window_ms: 0,
                    ..Default::default()
                },
                "breaker_window_secs",
            ),
            (
                BreakerPolicy {
                    buckets: 0,
                    ..Default::default()
                },
                "breaker_buckets",
            ),
            (
                BreakerPolicy {
                    buckets: 3,
                    ..Default::default()
                },
                "breaker_buckets",
            ),
            (
                BreakerPolicy {
                    min_calls: 0,
                    ..Default::default()
                },
                "breaker_min_calls",
            ),
            (
                BreakerPolicy {
                    failure_rate: 1.5,
                    ..Default::default()
                },
                "breaker_failure_rate",
            ),
            (
                BreakerPolicy {
                    failure_rate: f64::NAN,
                    ..Default::default()
                },
                "breaker_failure_rate",
            ),
            (
                BreakerPolicy {
                    slow_call_rate: -0.1,
                    ..Default::default()
                },
                "breaker_slow_call_rate",
            ),
            (
                BreakerPolicy {
                    open_max_ms: 999,
                    ..Default::default()
                },
                "breaker_open_max_ms",
            ),
            (
                BreakerPolicy {
                    half_open_probes: 0,
                    ..Default::default()
                },
                "breaker_half_open_probes",
            ),
            (
                BreakerPolicy {
                    probe_timeout_ms: 0,
                    ..Default::default()
                },
                "breaker_probe_timeout_ms",
            ),
            (
                BreakerPolicy {
                    forced_recheck_ms: 0,
                    ..Default::default()
                },
                "forced_recheck_ms",
            ),
        ];
        for (policy, name) in cases {
            let SettingError::Invalid { name: reported, .. } = policy.validate().unwrap_err();
            assert_eq!(reported, name);
        }
    }

    #[test]
    fn open_duration_doubles_up_to_the_cap() {
        let policy = BreakerPolicy::default();
        let durations: Vec<u64> = (0..=5)
            .map(|trips| policy.open_duration_ms(trips))
            .collect();
        assert_eq!(durations, vec![1_000, 1_000, 2_000, 4_000, 4_000, 4_000]);
        assert_eq!(policy.open_duration_ms(u32::MAX), 4_000);
    }

    #[test]
    fn rates_need_min_calls() {
        let policy = BreakerPolicy::default();
        assert_eq!(policy.trip_reason(&totals(9, 9, 0), 0), None);
        assert_eq!(
            policy.trip_reason(&totals(10, 5, 0), 0),
            Some(TripReason::FailureRate {
                rate: 0.5,
                calls: 10
            })
        );
        assert_eq!(policy.trip_reason(&totals(10, 4, 0), 0), None);
    }

    #[test]
    fn slow_calls_trip_on_their_own_rate() {
        let policy = BreakerPolicy::default();
        assert_eq!(policy.trip_reason(&totals(10, 0, 7), 0), None);
        assert_eq!(
            policy.trip_reason(&totals(10, 0, 8), 0),
            Some(TripReason::SlowCallRate {
                rate: 0.8,
                calls: 10
            })
        );
        assert!(policy.is_slow(3_000));
        assert!(!policy.is_slow(2_999));
    }

    #[test]
    fn a_run_of_failures_trips_whatever_the_rates() {
        let policy = BreakerPolicy::default();
        assert_eq!(policy.trip_reason(&totals(3, 3, 0), 4), None);
        assert_eq!(
            policy.trip_reason(&totals(3, 3, 0), 5),
            Some(TripReason::ConsecutiveFailures { count: 5 })
        );
    }

    #[test]
    fn a_zero_rate_needs_something_to_have_happened() {
        let policy = BreakerPolicy {
            failure_rate: 0.0,
            slow_call_rate: 0.0,
            ..Default::default()
        };
        assert_eq!(policy.trip_reason(&totals(10, 0, 0), 0), None);
    }

    proptest! {
        /// The open duration never exceeds the cap, never drops below the base (for a valid
        /// policy), and never shrinks as trips accumulate.
        #[test]
        fn open_duration_is_capped_and_monotonic(
            open_ms in 1u64..=u64::MAX / 2,
            extra in 0u64..=u64::MAX / 2,
            trips in any::<u32>(),
        ) {
            let policy = BreakerPolicy { open_ms, open_max_ms: open_ms + extra, ..Default::default() };
            let duration = policy.open_duration_ms(trips);
            prop_assert!(duration <= policy.open_max_ms);
            prop_assert!(duration >= policy.open_ms);
            prop_assert!(policy.open_duration_ms(trips.saturating_add(1)) >= duration);
        }
    }
}
