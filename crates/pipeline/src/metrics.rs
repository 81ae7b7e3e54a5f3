//! The pipeline's own counters, kept in the key-value store so that every instance adds to
//! the same totals (Prometheus counters: they only go up). Written with `increment` on one key
//! per counter, read back with one batch call.

use crate::answer::CallResult;
use resilience::KvStore;

const PREFIX: &str = "metrics";

/// Every outcome label a validator call can have ([`CallResult::metric_label`]).
pub const CALL_OUTCOMES: [&str; 9] = [
    "valid",
    "rejected",
    "server_error",
    "throttled",
    "client_error",
    "timeout",
    "connect_error",
    "transport_error",
    "unreadable",
];

/// A latency histogram's fixed buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramSpec {
    /// The key under `metrics/h/`.
    pub key: &'static str,
    /// Upper bounds of the buckets, in seconds, ascending (a `+Inf` bucket follows).
    pub bounds_seconds: &'static [f64],
}

/// How long one call to the validator took.
pub const CALL_LATENCY: HistogramSpec = HistogramSpec {
    key: "call_seconds",
    bounds_seconds: &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
};

/// How long an order took from acceptance to its final status.
pub const VALIDATION_LATENCY: HistogramSpec = HistogramSpec {
    key: "validation_seconds",
    bounds_seconds: &[
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
    ],
};

/// Observations of one histogram, before they are added to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    spec: HistogramSpec,
    counts: Vec<u64>,
    sum_ms: u64,
}

impl Observations {
    /// No observations yet.
    pub fn new(spec: HistogramSpec) -> Self {
        Self {
            spec,
            counts: vec![0; spec.bounds_seconds.len() + 1],
            sum_ms: 0,
        }
    }

    /// Adds one observation of `millis` milliseconds.
    pub fn observe(&mut self, millis: u64) {
        let seconds = millis as f64 / 1000.0;
        let index = self
            .spec
            .bounds_seconds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.spec.bounds_seconds.len());
        self.counts[index] += 1;
        self.sum_ms += millis;
    }
}

/// What one wave (or any unit of work) adds to the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Calls by outcome label.
    pub calls: Vec<(&'static str, u64)>,
    /// Calls that were retries (not a job's first attempt).
    pub retries: u64,
    /// Retries refused by the retry budget.
    pub budget_rejections: u64,
    /// Jobs deferred because the circuit was open.
    pub deferrals: u64,
    /// Jobs and messages sent to the dead-letter queue.
    pub dead_letters: u64,
    /// Call latencies.
    pub call_latency: Observations,
    /// Acceptance-to-decision latencies of the orders decided.
    pub validation_latency: Observations,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            calls: Vec::new(),
            retries: 0,
            budget_rejections: 0,
            deferrals: 0,
            dead_letters: 0,
            call_latency: Observations::new(CALL_LATENCY),
            validation_latency: Observations::new(VALIDATION_LATENCY),
        }
    }
}

impl Tally {
    /// Counts one call's outcome.
    pub fn call(&mut self, result: &CallResult, latency_ms: u64) {
        let label = result.metric_label();
        match self.calls.iter_mut().find(|(name, _)| *name == label) {
            Some((_, count)) => *count += 1,
            None => self.calls.push((label, 1)),
        }
        self.call_latency.observe(latency_ms);
    }

    /// Adds the tally to the store: one increment per non-zero counter.
    pub fn save<K: KvStore>(&self, store: &K) -> Result<(), K::Error> {
        let mut increments: Vec<(String, u64)> = self
            .calls
            .iter()
            .map(|(label, count)| (format!("{PREFIX}/calls/{label}"), *count))
            .collect();
        for (name, value) in [
            ("retries", self.retries),
            ("budget_rejections", self.budget_rejections),
            ("deferrals", self.deferrals),
            ("dead_letters", self.dead_letters),
        ] {
            increments.push((format!("{PREFIX}/{name}"), value));
        }
        for histogram in [&self.call_latency, &self.validation_latency] {
            let key = histogram.spec.key;
            for (index, count) in histogram.counts.iter().enumerate() {
                increments.push((format!("{PREFIX}/h/{key}/{index}"), *count));
            }
            increments.push((format!("{PREFIX}/h/{key}/sum_ms"), histogram.sum_ms));
        }
        for (key, value) in increments.into_iter().filter(|(_, value)| *value > 0) {
            store.increment(&key, i64::try_from(value).unwrap_or(i64::MAX))?;
        }
        Ok(())
    }
}

/// A histogram as read back: per-bucket (not cumulative) counts.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramTotals {
    /// Which histogram.
    pub spec: HistogramSpec,
    /// Count per bucket, the last one being `+Inf`.
    pub counts: Vec<u64>,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

/// Every counter, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    /// Calls by outcome, for every label in [`CALL_OUTCOMES`].
    pub calls: Vec<(&'static str, u64)>,
    /// Retry calls.
    pub retries: u64,
    /// Retries refused by the budget.
    pub budget_rejections: u64,
    /// Jobs deferred by the open circuit.
    pub deferrals: u64,
    /// Dead-letter arrivals.
    pub dead_letters: u64,
    /// Call latency.
    pub call_latency: HistogramTotals,
    /// Acceptance-to-decision latency.
    pub validation_latency: HistogramTotals,
}

/// Reads every counter with one batch call.
pub fn read_totals<K: KvStore>(store: &K) -> Result<Totals, K::Error> {
    let mut keys: Vec<String> = CALL_OUTCOMES
        .iter()
        .map(|label| format!("{PREFIX}/calls/{label}"))
        .collect();
    for name in ["retries", "budget_rejections", "deferrals", "dead_letters"] {
        keys.push(format!("{PREFIX}/{name}"));
    }
    for spec in [CALL_LATENCY, VALIDATION_LATENCY] {
        for index in 0..=spec.bounds_seconds.len() {
            keys.push(format!("{PREFIX}/h/{}/{index}", spec.key));
        }
        keys.push(format!("{PREFIX}/h/{}/sum_ms", spec.key));
    }
    let values = store.counters(&keys)?;
    let mut next = values.into_iter().map(|v| u64::try_from(v).unwrap_or(0));
    let mut take = || next.next().unwrap_or(0);
    let calls = CALL_OUTCOMES.iter().map(|label| (*label, take())).collect();
    let (retries, budget_rejections, deferrals, dead_letters) = (take(), take(), take(), take());
    let mut histogram = |spec: HistogramSpec| {
        let counts: Vec<u64> = (0..=spec.bounds_seconds.len()).map(|_| take()).collect();
        let sum_ms = take();
        HistogramTotals {
            spec,
            count: counts.iter().sum(),
            counts,
            sum_seconds: sum_ms as f64 / 1000.0,
        }
    };
    let call_latency = histogram(CALL_LATENCY);
    let validation_latency = histogram(VALIDATION_LATENCY);
    Ok(Totals {
        calls,
        retries,
        budget_rejections,
        deferrals,
        dead_letters,
        call_latency,
        validation_latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilience::MemoryStore;

    #[test]
    fn tallies_add_up_across_saves() {
        let store = MemoryStore::default();
        let mut tally = Tally::default();
        tally.call(&CallResult::Unreadable("x".into()), 3);
        tally.call(&CallResult::Unreadable("y".into()), 30_000);
        tally.retries = 2;
        tally.validation_latency.observe(1_500);
        tally.save(&store).unwrap();
        tally.save(&store).unwrap();
        let totals = read_totals(&store).unwrap();
        assert!(totals.calls.contains(&("unreadable", 4)));
        assert!(totals.calls.contains(&("valid", 0)));
        assert_eq!(totals.retries, 4);
        assert_eq!(totals.call_latency.count, 4);
        // 3 ms falls in the 0.005 s bucket (index 2); 30 s beyond the last bound (+Inf).
        assert_eq!(totals.call_latency.counts[2], 2);
        assert_eq!(*totals.call_latency.counts.last().unwrap(), 2);
        assert_eq!(totals.call_latency.sum_seconds, 60.006);
        assert_eq!(totals.validation_latency.counts[7], 2);
    }
}
