//! The pipeline's settings, read from Spin variables with documented defaults.

use crate::plan::JobPolicy;
use resilience::{
    BreakerPolicy, BudgetPolicy, BulkheadPolicy, SettingError, read_settings, whole_number_setting,
};

/// The variables the pipeline reads beyond the resilience library's (name, default, meaning).
pub const PIPELINE_VARIABLES: &[(&str, &str, &str)] = &[
    (
        "worker_wave_size",
        "32",
        "jobs a worker claims and validates concurrently per wave",
    ),
    (
        "worker_drainers",
        "4",
        "validation workers draining at once, fleet-wide (the others leave the work to them)",
    ),
    (
        "worker_lease_ms",
        "30000",
        "how long a claim holds its jobs before another worker may take them",
    ),
    (
        "worker_drain_ms",
        "5000",
        "how long one worker invocation keeps draining due jobs",
    ),
    (
        "poison_limit",
        "3",
        "unreadable validator answers a job may get before it is dead-lettered",
    ),
    (
        "budget_wait_ms",
        "1000",
        "how long a retry refused by the retry budget waits",
    ),
    (
        "idempotency_ttl_secs",
        "86400",
        "how long an Idempotency-Key is remembered",
    ),
    (
        "in_flight_lock_ms",
        "10000",
        "how long a request still in flight holds its Idempotency-Key (409 meanwhile)",
    ),
    (
        "validation_deadline_secs",
        "86400",
        "an order not validated this long after acceptance fails (deadline_passed), in seconds",
    ),
];

/// Reads the whole number `name` (see [`whole_number_setting`]), its default from
/// [`PIPELINE_VARIABLES`] or the resilience library's `VARIABLES`.
fn whole_number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    min: u64,
    max: u64,
) -> Result<u64, SettingError> {
    whole_number_setting(
        &[PIPELINE_VARIABLES, resilience::VARIABLES],
        lookup,
        name,
        min,
        max,
    )
}

/// Everything a validation worker needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// The fleet-wide circuit breaker's policy.
    pub breaker: BreakerPolicy,
    /// The fleet-wide retry budget's policy.
    pub budget: BudgetPolicy,
    /// Backoff and dead-letter rules for each job (its deadline is stored with it at intake).
    pub job: JobPolicy,
    /// How many workers drain at once, fleet-wide, and how long a draining worker's slot
    /// lasts without renewal.
    pub drainers: BulkheadPolicy,
    /// Jobs claimed, and called concurrently, per wave.
    pub wave_size: u32,
    /// How long a claim holds its jobs; a worker that dies loses its jobs for this long.
    pub lease_ms: u64,
    /// How long one invocation keeps draining before it returns.
    pub drain_ms: u64,
    /// How long a retry refused by the budget waits.
    pub budget_wait_ms: u64,
    /// How long idempotency keys are kept (the sweeper prunes older ones).
    pub key_ttl_ms: u64,
}

impl WorkerSettings {
    /// Reads the settings through `lookup` (a Spin variable by name; absent or empty means the
    /// default).
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let resilience = read_settings(&lookup)?;
        let lease_ms = whole_number(&lookup, "worker_lease_ms", 100, 3_600_000)?;
        Ok(Self {
            drainers: BulkheadPolicy {
                slots: whole_number(&lookup, "worker_drainers", 1, 1000)? as u32,
                lease_ms,
            },
            breaker: resilience.breaker,
            budget: resilience.budget,
            job: JobPolicy {
                retry: resilience.retry,
                poison_limit: whole_number(&lookup, "poison_limit", 1, 100)? as u32,
            },
            wave_size: whole_number(&lookup, "worker_wave_size", 1, 1000)? as u32,
            lease_ms,
            drain_ms: whole_number(&lookup, "worker_drain_ms", 0, 600_000)?,
            budget_wait_ms: whole_number(&lookup, "budget_wait_ms", 1, 3_600_000)?,
            key_ttl_ms: whole_number(&lookup, "idempotency_ttl_secs", 1, 30 * 86_400)? * 1000,
        })
    }
}

/// What order intake needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeSettings {
    /// How long idempotency keys are kept.
    pub key_ttl_ms: u64,
    /// How long a request in flight holds its key.
    pub in_flight_lock_ms: u64,
    /// How long after acceptance an order may wait for a verdict before it fails.
    pub deadline_ms: u64,
}

impl IntakeSettings {
    /// Reads the settings through `lookup`.
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        Ok(Self {
            key_ttl_ms: whole_number(&lookup, "idempotency_ttl_secs", 1, 30 * 86_400)? * 1000,
            in_flight_lock_ms: whole_number(&lookup, "in_flight_lock_ms", 100, 600_000)?,
            deadline_ms: whole_number(&lookup, "validation_deadline_secs", 1, 10 * 365 * 86_400)?
                * 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_bad_values_name_the_variable() {
        let settings = WorkerSettings::read(|_| None).unwrap();
        assert_eq!(settings.wave_size, 32);
        assert_eq!(settings.job.poison_limit, 3);
        assert_eq!(settings.key_ttl_ms, 86_400_000);
        assert_eq!(settings.breaker, BreakerPolicy::default());
        let error = WorkerSettings::read(|name| (name == "worker_wave_size").then(|| "0".into()))
            .unwrap_err();
        assert!(error.to_string().contains("worker_wave_size"), "{error}");
        let intake =
            IntakeSettings::read(|name| (name == "idempotency_ttl_secs").then(|| " 60 ".into()))
                .unwrap();
        assert_eq!(intake.key_ttl_ms, 60_000);
        assert_eq!(intake.in_flight_lock_ms, 10_000);
        assert_eq!(intake.deadline_ms, 86_400_000);
    }

    #[test]
    fn the_validation_deadline_is_a_pipeline_variable_read_by_intake() {
        let deadline = |value: &'static str| {
            IntakeSettings::read(move |name| {
                (name == "validation_deadline_secs").then(|| value.to_owned())
            })
        };
        assert_eq!(deadline("60").unwrap().deadline_ms, 60_000);
        let error = deadline("0").unwrap_err();
        assert!(
            error.to_string().contains("validation_deadline_secs"),
            "{error}"
        );
        // Listed once: by the pipeline, not by the resilience library.
        let listed = |variables: &[(&str, &str, &str)]| {
            variables
                .iter()
                .filter(|(name, _, _)| *name == "validation_deadline_secs")
                .count()
        };
        assert_eq!(listed(PIPELINE_VARIABLES), 1);
        assert_eq!(listed(resilience::VARIABLES), 0);
        for (name, _, _) in PIPELINE_VARIABLES {
            assert!(
                resilience::VARIABLES
                    .iter()
                    .all(|(other, _, _)| other != name),
                "{name} is listed twice"
            );
        }
    }
}
