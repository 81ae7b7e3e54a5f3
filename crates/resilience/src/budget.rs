//! A retry budget shared by the fleet: retries may add only a fraction of the calls made (with a
//! small floor for quiet times), so retries cannot multiply the load on a struggling dependency.

use crate::clock::Clock;
use crate::kv::KvStore;
use crate::settings::SettingError;
use crate::window::CallWindow;

/// How many retries the fleet may make.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetPolicy {
    /// Retries allowed per call made in the window (0..=1).
    pub ratio: f64,
    /// Retries allowed per second however few calls there are.
    pub min_per_sec: f64,
    /// The window the budget is counted over.
    pub window_ms: u64,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 3.0,
            window_ms: 10_000,
        }
    }
}

impl BudgetPolicy {
    /// Checks every field; an error names the setting variable that sets the field.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(0.0..=1.0).contains(&self.ratio) {
            return Err(SettingError::invalid(
                "retry_budget_ratio",
                self.ratio,
                "must be between 0 and 1",
            ));
        }
        if !(self.min_per_sec.is_finite() && self.min_per_sec >= 0.0) {
            return Err(SettingError::invalid(
                "retry_budget_min_per_sec",
                self.min_per_sec,
                "must be a number, 0 or more",
            ));
        }
        if self.window_ms == 0 {
            return Err(SettingError::invalid(
                "retry_budget_window_secs",
                self.window_ms,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Retries allowed over `span_ms` in which `calls` calls were made:
    /// `max(ratio * calls, min_per_sec * seconds)`, rounded down.
    fn allowed(&self, calls: u64, span_ms: u64) -> u64 {
        let by_traffic = self.ratio * calls as f64;
        let floor = self.min_per_sec * span_ms as f64 / 1_000.0;
        by_traffic.max(floor) as u64
    }
}

/// The fleet's retry budget for one dependency, counted in the same [`CallWindow`] the
/// dependency's calls are recorded in (usually [`crate::CircuitBreaker::window`]).
pub struct RetryBudget<'a, S: KvStore, C: Clock> {
    clock: &'a C,
    window: &'a CallWindow<'a, S>,
    policy: BudgetPolicy,
}

impl<'a, S: KvStore, C: Clock> RetryBudget<'a, S, C> {
    /// The budget over `window`, which must count in `store`. The budget's window is
    /// `policy.window_ms`, but at most the two windows of history `window` keeps.
    pub fn new(
        store: &'a S,
        clock: &'a C,
        window: &'a CallWindow<'a, S>,
        policy: BudgetPolicy,
    ) -> Self {
        debug_assert!(
            std::ptr::eq(store, window.store()),
            "the retry budget must count in the same store as its call window"
        );
        Self {
            clock,
            window,
            policy,
        }
    }

    /// Takes up to `wanted` retries from the budget; returns how many were granted (0..=wanted).
    /// Reserves first and gives back what went over, so racing instances can overshoot the
    /// budget only by what they reserve at the same instant, and more often under-grant.
    pub fn acquire(&self, wanted: u32) -> Result<u32, S::Error> {
        if wanted == 0 {
            return Ok(0);
        }
        let now_ms = self.clock.now_ms();
        let span_ms = self.span_ms();
        self.window.add_retries(now_ms, i64::from(wanted))?;
        let totals = self.window.totals_over(now_ms, span_ms)?;
        let allowed = self.policy.allowed(totals.calls, span_ms);
        let excess = totals
            .retries
            .saturating_sub(allowed)
            .min(u64::from(wanted));
        if excess > 0 {
            // `excess` is at most `wanted`, a u32.
            self.window.add_retries(now_ms, -(excess as i64))?;
        }
        Ok(wanted - excess as u32)
    }

    /// Retries still available in the window now.
    pub fn remaining(&self) -> Result<u64, S::Error> {
        let span_ms = self.span_ms();
        let totals = self.window.totals_over(self.clock.now_ms(), span_ms)?;
        Ok(self
            .policy
            .allowed(totals.calls, span_ms)
            .saturating_sub(totals.retries))
    }

    fn span_ms(&self) -> u64 {
        self.policy
            .window_ms
            .min(self.window.window_ms().saturating_mul(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::kv::MemoryStore;
    use crate::window::CallTally;
    use proptest::prelude::*;

    fn calls(window: &CallWindow<'_, MemoryStore>, now_ms: u64, calls: u32) {
        let tally = CallTally {
            calls,
            ..Default::default()
        };
        window.record(now_ms, &tally).unwrap();
    }

    #[test]
    fn the_floor_applies_with_no_traffic() {
        let store = MemoryStore::new();
        let clock = ManualClock::new(50_000);
        let window = CallWindow::new(&store, "dep", 10_000, 10);
        let budget = RetryBudget::new(&store, &clock, &window, BudgetPolicy::default());
        assert_eq!(budget.remaining().unwrap(), 30);
        assert_eq!(budget.acquire(25).unwrap(), 25);
        assert_eq!(budget.acquire(10).unwrap(), 5);
        assert_eq!(budget.acquire(1).unwrap(), 0);
        assert_eq!(budget.remaining().unwrap(), 0);
        assert_eq!(window.totals(50_000).unwrap().retries, 30);
    }

    #[test]
    fn heavy_traffic_allows_a_fifth_of_the_calls() {
        let store = MemoryStore::new();
        let clock = ManualClock::new(50_000);
        let window = CallWindow::new(&store, "dep", 10_000, 10);
        calls(&window, 45_000, 1_000);
        let budget = RetryBudget::new(&store, &clock, &window, BudgetPolicy::default());
        assert_eq!(budget.acquire(150).unwrap(), 150);
        assert_eq!(budget.acquire(100).unwrap(), 50);
        // Once those calls and retries have left the window: back to the floor.
        clock.advance(11_000);
        assert_eq!(budget.remaining().unwrap(), 30);
    }

    #[test]
    fn budgets_over_one_store_share_the_limit() {
        let store = MemoryStore::new();
        let clock = ManualClock::new(50_000);
        let window_a = CallWindow::new(&store, "dep", 10_000, 10);
        let window_b = CallWindow::new(&store, "dep", 10_000, 10);
        let budget_a = RetryBudget::new(&store, &clock, &window_a, BudgetPolicy::default());
        let budget_b = RetryBudget::new(&store, &clock, &window_b, BudgetPolicy::default());
        assert_eq!(budget_a.acquire(20).unwrap(), 20);
        assert_eq!(budget_b.acquire(20).unwrap(), 10);
        assert_eq!(budget_a.remaining().unwrap(), 0);
    }

    #[test]
    fn the_budget_window_is_capped_at_the_kept_history() {
        let store = MemoryStore::new();
        let clock = ManualClock::new(50_000);
        let window = CallWindow::new(&store, "dep", 1_000, 1);
        let policy = BudgetPolicy {
            window_ms: 60_000,
            ..Default::default()
        };
        let budget = RetryBudget::new(&store, &clock, &window, policy);
        // Two seconds of history at 3 per second.
        assert_eq!(budget.remaining().unwrap(), 6);
    }

    #[test]
    fn validate_checks_each_field() {
        BudgetPolicy::default().validate().unwrap();
        let bad = [
            (
                BudgetPolicy {
                    ratio: 1.1,
                    ..Default::default()
                },
                "retry_budget_ratio",
            ),
            (
                BudgetPolicy {
                    min_per_sec: f64::INFINITY,
                    ..Default::default()
                },
                "retry_budget_min_per_sec",
            ),
            (
                BudgetPolicy {
                    min_per_sec: -1.0,
                    ..Default::default()
                },
                "retry_budget_min_per_sec",
            ),
            (
                BudgetPolicy {
                    window_ms: 0,
                    ..Default::default()
                },
                "retry_budget_window_secs",
            ),
        ];
        for (policy, name) in bad {
            let SettingError::Invalid { name: reported, .. } = policy.validate().unwrap_err();
            assert_eq!(reported, name);
        }
    }

    proptest! {
        /// Whatever is asked, one instance never gets more than asked, and never more in total
        /// than the budget allows.
        #[test]
        fn grants_never_exceed_the_budget(
            traffic in 0u32..2_000,
            asks in proptest::collection::vec(0u32..50, 0..30),
        ) {
            let store = MemoryStore::new();
            let clock = ManualClock::new(100_000);
            let window = CallWindow::new(&store, "dep", 10_000, 10);
            calls(&window, 100_000, traffic);
            let budget = RetryBudget::new(&store, &clock, &window, BudgetPolicy::default());
            let allowed = BudgetPolicy::default().allowed(u64::from(traffic), 10_000);
            let mut granted_total = 0_u64;
            for wanted in asks {
                let granted = budget.acquire(wanted).unwrap();
                prop_assert!(granted <= wanted);
                granted_total += u64::from(granted);
            }
            prop_assert!(granted_total <= allowed);
            prop_assert_eq!(budget.remaining().unwrap(), allowed - granted_total);
        }
    }
}
