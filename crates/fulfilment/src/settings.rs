//! The fulfilment worker's settings, read from Spin variables with documented defaults.

use resilience::{
    BreakerPolicy, BudgetPolicy, BulkheadPolicy, RetryPolicy, SettingError, read_settings,
    whole_number_setting,
};

/// The variables the fulfilment worker reads beyond the resilience library's (name, default,
/// meaning).
pub const FULFILMENT_VARIABLES: &[(&str, &str, &str)] = &[
    (
        "fulfilment_batch",
        "16",
        "sagas one fulfilment worker claims and runs concurrently per batch",
    ),
    (
        "fulfilment_lease_ms",
        "30000",
        "how long a fulfilment worker holds a saga between two of its steps",
    ),
    (
        "fulfilment_drain_ms",
        "5000",
        "how long one fulfilment worker invocation keeps running due sagas",
    ),
    (
        "fulfilment_drainers",
        "4",
        "fulfilment workers a doorbell may start at once, fleet-wide (the sweep runs anyway)",
    ),
    (
        "fulfilment_deadline_secs",
        "3600",
        "a saga not past its capture this long after validation is undone (deadline passed)",
    ),
    (
        "budget_wait_ms",
        "1000",
        "how long a retry refused by the retry budget waits",
    ),
];

/// Everything a fulfilment worker needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct FulfilmentSettings {
    /// Each service's circuit breaker policy (one breaker per service, fleet-wide).
    pub breaker: BreakerPolicy,
    /// Each service's retry budget.
    pub budget: BudgetPolicy,
    /// Backoff between attempts of a step.
    pub retry: RetryPolicy,
    /// Sagas claimed, and run concurrently, per batch.
    pub batch: u32,
    /// How long a claim holds a saga; renewed before every step.
    pub lease_ms: u64,
    /// How long one invocation keeps running sagas before it returns.
    pub drain_ms: u64,
    /// How many doorbell-started workers run sagas at once, fleet-wide (each holds a slot,
    /// leased like a saga): a flood of doorbells must not take every Redis handler slot of the
    /// host from the validation worker's.
    pub drainers: BulkheadPolicy,
    /// How long after validation a saga may take to pass its capture before it is undone.
    pub deadline_ms: u64,
    /// How long a retry refused by the budget waits.
    pub budget_wait_ms: u64,
}

impl FulfilmentSettings {
    /// Reads the settings through `lookup` (a Spin variable by name; absent or empty means the
    /// default).
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let resilience = read_settings(&lookup)?;
        let number = |name: &str, min: u64, max: u64| {
            whole_number_setting(
                &[FULFILMENT_VARIABLES, resilience::VARIABLES],
                &lookup,
                name,
                min,
                max,
            )
        };
        let lease_ms = number("fulfilment_lease_ms", 100, 3_600_000)?;
        Ok(Self {
            breaker: resilience.breaker,
            budget: resilience.budget,
            retry: resilience.retry,
            batch: number("fulfilment_batch", 1, 1_000)? as u32,
            lease_ms,
            drain_ms: number("fulfilment_drain_ms", 0, 600_000)?,
            drainers: BulkheadPolicy {
                slots: number("fulfilment_drainers", 1, 1_000)? as u32,
                lease_ms,
            },
            deadline_ms: number("fulfilment_deadline_secs", 1, 30 * 86_400)? * 1_000,
            budget_wait_ms: number("budget_wait_ms", 1, 3_600_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_bad_values_name_the_variable() {
        let settings = FulfilmentSettings::read(|_| None).unwrap();
        assert_eq!(settings.batch, 16);
        assert_eq!(settings.drainers.slots, 4);
        assert_eq!(settings.deadline_ms, 3_600_000);
        assert_eq!(settings.breaker, BreakerPolicy::default());
        let error =
            FulfilmentSettings::read(|name| (name == "fulfilment_batch").then(|| "0".into()))
                .unwrap_err();
        assert!(error.to_string().contains("fulfilment_batch"), "{error}");
        for (name, _, _) in FULFILMENT_VARIABLES {
            assert!(
                resilience::VARIABLES
                    .iter()
                    .all(|(other, _, _)| other != name),
                "{name} is listed twice"
            );
        }
    }
}
