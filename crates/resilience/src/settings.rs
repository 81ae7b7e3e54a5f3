//! Reading the resilience policies from application variables (Spin variables, environment
//! variables, ...): one variable per knob, defaults for the absent ones.

use crate::breaker::BreakerPolicy;
use crate::budget::BudgetPolicy;
use crate::retry::RetryPolicy;
use std::fmt::Display;
use std::str::FromStr;

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// The variable's value does not parse or is out of range.
    #[error("setting {name} = {value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: String,
        /// Its value, as text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SettingError {
    pub(crate) fn invalid(name: &str, value: impl Display, reason: impl Into<String>) -> Self {
        SettingError::Invalid {
            name: name.to_owned(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Every variable [`read_settings`] reads: (name, default as text, description), for the README
/// and `spin.toml`.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "breaker_window_secs",
        "10",
        "Circuit breaker: sliding window length, in seconds",
    ),
    (
        "breaker_buckets",
        "10",
        "Circuit breaker: buckets per window (must divide it evenly)",
    ),
    (
        "breaker_min_calls",
        "10",
        "Circuit breaker: calls in the window before rates can trip it",
    ),
    (
        "breaker_failure_rate",
        "0.5",
        "Circuit breaker: failure rate (0-1) that trips it",
    ),
    (
        "breaker_slow_call_ms",
        "3000",
        "Circuit breaker: a call this slow (ms) counts as slow",
    ),
    (
        "breaker_slow_call_rate",
        "0.8",
        "Circuit breaker: slow-call rate (0-1) that trips it",
    ),
    (
        "breaker_consecutive_failures",
        "5",
        "Circuit breaker: failures in a row that trip it",
    ),
    (
        "breaker_open_ms",
        "1000",
        "Circuit breaker: open time after a first trip, in ms",
    ),
    (
        "breaker_open_max_ms",
        "4000",
        "Circuit breaker: longest open time (it doubles per trip), in ms",
    ),
    (
        "breaker_half_open_probes",
        "1",
        "Circuit breaker: probes at once in half-open, and successes to close",
    ),
    (
        "breaker_probe_timeout_ms",
        "10000",
        "Circuit breaker: how long a probe holds its slot, in ms",
    ),
    (
        "retry_base_ms",
        "250",
        "Retries: backoff cap of the first retry (doubles per attempt), in ms",
    ),
    (
        "retry_max_delay_ms",
        "30000",
        "Retries: largest backoff, in ms",
    ),
    (
        "retry_budget_ratio",
        "0.2",
        "Retry budget: retries allowed per call in the window (0-1)",
    ),
    (
        "retry_budget_min_per_sec",
        "3",
        "Retry budget: retries allowed per second however quiet",
    ),
    (
        "retry_budget_window_secs",
        "10",
        "Retry budget: window length, in seconds",
    ),
];

/// All the resilience policies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResilienceSettings {
    /// The circuit breaker's.
    pub breaker: BreakerPolicy,
    /// The retries'.
    pub retry: RetryPolicy,
    /// The retry budget's.
    pub budget: BudgetPolicy,
}

/// Reads the policies through `lookup` (variable name to value): an absent or empty variable
/// keeps its default; one that does not parse, or gives a policy that does not validate, is an
/// error naming the variable.
pub fn read_settings(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ResilienceSettings, SettingError> {
    let variables = Variables { lookup };
    let mut settings = ResilienceSettings::default();
    let breaker = &mut settings.breaker;
    variables.seconds("breaker_window_secs", &mut breaker.window_ms)?;
    variables.number("breaker_buckets", &mut breaker.buckets)?;
    variables.number("breaker_min_calls", &mut breaker.min_calls)?;
    variables.number("breaker_failure_rate", &mut breaker.failure_rate)?;
    variables.number("breaker_slow_call_ms", &mut breaker.slow_call_ms)?;
    variables.number("breaker_slow_call_rate", &mut breaker.slow_call_rate)?;
    variables.number(
        "breaker_consecutive_failures",
        &mut breaker.consecutive_failures,
    )?;
    variables.number("breaker_open_ms", &mut breaker.open_ms)?;
    variables.number("breaker_open_max_ms", &mut breaker.open_max_ms)?;
    variables.number("breaker_half_open_probes", &mut breaker.half_open_probes)?;
    variables.number("breaker_probe_timeout_ms", &mut breaker.probe_timeout_ms)?;
    let retry = &mut settings.retry;
    variables.number("retry_base_ms", &mut retry.base_ms)?;
    variables.number("retry_max_delay_ms", &mut retry.max_delay_ms)?;
    let budget = &mut settings.budget;
    variables.number("retry_budget_ratio", &mut budget.ratio)?;
    variables.number("retry_budget_min_per_sec", &mut budget.min_per_sec)?;
    variables.seconds("retry_budget_window_secs", &mut budget.window_ms)?;
    settings.breaker.validate()?;
    settings.retry.validate()?;
    settings.budget.validate()?;
    Ok(settings)
}

/// Variables read through a lookup function.
pub(crate) struct Variables<L: Fn(&str) -> Option<String>> {
    pub(crate) lookup: L,
}

impl<L: Fn(&str) -> Option<String>> Variables<L> {
    /// Parses `name` into `field` if it is set and not empty.
    pub(crate) fn number<T: FromStr>(&self, name: &str, field: &mut T) -> Result<(), SettingError> {
        let Some(text) = (self.lookup)(name) else {
            return Ok(());
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(());
        }
        *field = trimmed
            .parse()
            .map_err(|_| SettingError::invalid(name, &text, "not a number of the right kind"))?;
        Ok(())
    }

    /// Parses whole seconds in `name` into milliseconds in `field`.
    pub(crate) fn seconds(&self, name: &str, field_ms: &mut u64) -> Result<(), SettingError> {
        let mut seconds = *field_ms / 1_000;
        self.number(name, &mut seconds)?;
        *field_ms = seconds
            .checked_mul(1_000)
            .ok_or_else(|| SettingError::invalid(name, seconds, "too large"))?;
        Ok(())
    }
}

/// Reads the whole number `name` through `lookup` (a Spin variable by name), which must lie in
/// `min..=max`; absent or empty, its default is the one the first of `defaults` that lists it
/// gives (a table of `(name, default, meaning)`, like [`VARIABLES`]).
pub fn whole_number_setting(
    defaults: &[&[(&str, &str, &str)]],
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    min: u64,
    max: u64,
) -> Result<u64, SettingError> {
    let default = defaults
        .iter()
        .flat_map(|table| table.iter())
        .find(|(variable, _, _)| *variable == name)
        .map_or("0", |(_, default, _)| *default);
    let text = lookup(name)
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_owned());
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| SettingError::Invalid {
            name: name.to_owned(),
            value: text.clone(),
            reason: format!("must be a whole number from {min} to {max}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<ResilienceSettings, SettingError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        read_settings(|name| map.get(name).cloned())
    }

    fn rejected_name(pairs: &[(&str, &str)]) -> String {
        let SettingError::Invalid { name, .. } = read(pairs).unwrap_err();
        name
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        assert_eq!(read(&[]).unwrap(), ResilienceSettings::default());
    }

    #[test]
    fn every_listed_default_is_the_real_default() {
        for (name, default, _) in VARIABLES {
            assert_eq!(
                read(&[(name, default)]).unwrap(),
                ResilienceSettings::default(),
                "{name}"
            );
        }
        let all: Vec<(&str, &str)> = VARIABLES
            .iter()
            .map(|(name, value, _)| (*name, *value))
            .collect();
        assert_eq!(read(&all).unwrap(), ResilienceSettings::default());
    }

    #[test]
    fn every_listed_variable_is_read() {
        for (name, _, description) in VARIABLES {
            assert!(!description.is_empty());
            assert_eq!(rejected_name(&[(name, "oops")]), *name);
        }
        assert_eq!(VARIABLES.len(), 16);
    }

    #[test]
    fn values_are_read_in_their_units() {
        let settings = read(&[
            ("breaker_window_secs", "20"),
            ("breaker_failure_rate", "0.25"),
            ("breaker_half_open_probes", " 3 "),
            ("retry_budget_window_secs", "5"),
            ("retry_base_ms", ""),
        ])
        .unwrap();
        assert_eq!(settings.breaker.window_ms, 20_000);
        assert_eq!(settings.breaker.failure_rate, 0.25);
        assert_eq!(settings.breaker.half_open_probes, 3);
        assert_eq!(settings.budget.window_ms, 5_000);
        assert_eq!(settings.retry.base_ms, 250);
    }

    #[test]
    fn out_of_range_values_name_their_variable() {
        assert_eq!(
            rejected_name(&[("breaker_failure_rate", "2")]),
            "breaker_failure_rate"
        );
        assert_eq!(
            rejected_name(&[("breaker_window_secs", "0")]),
            "breaker_window_secs"
        );
        assert_eq!(
            rejected_name(&[("breaker_buckets", "3")]),
            "breaker_buckets"
        );
        assert_eq!(
            rejected_name(&[("breaker_open_max_ms", "10")]),
            "breaker_open_max_ms"
        );
        assert_eq!(
            rejected_name(&[("retry_max_delay_ms", "1")]),
            "retry_max_delay_ms"
        );
        assert_eq!(
            rejected_name(&[("retry_budget_ratio", "-1")]),
            "retry_budget_ratio"
        );
        assert_eq!(
            rejected_name(&[("breaker_min_calls", "-1")]),
            "breaker_min_calls"
        );
        assert_eq!(
            rejected_name(&[("retry_budget_window_secs", "18446744073709551615")]),
            "retry_budget_window_secs"
        );
    }

    #[test]
    fn errors_say_what_and_why() {
        let error = read(&[("breaker_failure_rate", "lots")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "setting breaker_failure_rate = \"lots\" is invalid: not a number of the right kind"
        );
    }
}
