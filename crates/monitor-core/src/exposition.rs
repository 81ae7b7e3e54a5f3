//! The Prometheus exposition of the pipeline (`GET /metrics`): counters kept in the key-value
//! store, the ledger's current state, and the circuit breaker, encoded by the `prometheus`
//! crate's text encoder (format 0.0.4, which `promtool check metrics` reads). Values in base
//! units (seconds); counters end in `_total`; every label set of a family shares its HELP.

use ledger::PipelineStats;
use pipeline::{HistogramTotals, Totals};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use resilience::{BreakerRecord, CircuitState};

/// The content type of [`render_metrics`]' text.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the exposition shows, read by the caller at one moment.
#[derive(Debug, Clone)]
pub struct MetricsInputs {
    /// The ledger's counts (orders by status, the job queue, dead letters).
    pub stats: PipelineStats,
    /// The pipeline's counters.
    pub totals: Totals,
    /// The breaker's name (the dependency it guards).
    pub breaker: String,
    /// The breaker's stored state.
    pub record: BreakerRecord,
    /// Transitions won so far, by (from, to).
    pub transitions: Vec<(CircuitState, CircuitState, i64)>,
}

/// One sample's labels.
type Labels<'a> = Vec<(&'a str, String)>;

/// A family of `kind` named `orderly_<name>`, one metric per sample.
fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    samples: Vec<(Labels, Metric)>,
) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(format!("orderly_{name}"));
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(
        samples
            .into_iter()
            .map(|(labels, mut metric)| {
                metric.set_label(
                    labels
                        .into_iter()
                        .map(|(name, value)| {
                            let mut pair = LabelPair::default();
                            pair.set_name(name.to_owned());
                            pair.set_value(value);
                            pair
                        })
                        .collect(),
                );
                metric
            })
            .collect(),
    );
    family
}

fn gauge(value: f64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::default();
    metric.set_gauge(gauge);
    metric
}

fn counter(value: u64) -> Metric {
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    let mut metric = Metric::default();
    metric.set_counter(counter);
    metric
}

fn histogram(stored: &HistogramTotals) -> Metric {
    let mut cumulative = 0;
    let buckets = stored
        .spec
        .bounds_seconds
        .iter()
        .zip(&stored.counts)
        .map(|(bound, count)| {
            cumulative += count;
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(*bound);
            bucket.set_cumulative_count(cumulative);
            bucket
        })
        .collect();
    let mut histogram = Histogram::default();
    histogram.set_sample_count(stored.count);
    histogram.set_sample_sum(stored.sum_seconds);
    histogram.set_bucket(buckets);
    let mut metric = Metric::default();
    metric.set_histogram(histogram);
    metric
}

/// Renders `inputs` as Prometheus text.
pub fn render_metrics(inputs: &MetricsInputs) -> String {
    let stats = &inputs.stats;
    let totals = &inputs.totals;
    let breaker = || ("breaker", inputs.breaker.clone());
    let mut families = vec![
        family(
            "orders",
            "Orders by status.",
            MetricType::GAUGE,
            stats
                .orders
                .iter()
                .map(|(status, count)| {
                    (
                        vec![("status", status.as_str().to_owned())],
                        gauge(*count as f64),
                    )
                })
                .collect(),
        ),
        family(
            "jobs",
            "Validation jobs waiting: due now, deferred to a later time, or leased by a worker.",
            MetricType::GAUGE,
            [
                ("due", stats.jobs_due),
                ("deferred", stats.jobs_deferred),
                ("leased", stats.jobs_leased),
            ]
            .into_iter()
            .map(|(state, count)| (vec![("state", state.to_owned())], gauge(count as f64)))
            .collect(),
        ),
        family(
            "jobs_oldest_due_age_seconds",
            "How long the oldest due job has waited.",
            MetricType::GAUGE,
            vec![(vec![], gauge(stats.oldest_due_age_ms as f64 / 1000.0))],
        ),
        family(
            "dead_letters",
            "Dead letters not yet replayed.",
            MetricType::GAUGE,
            vec![(vec![], gauge(stats.dead_letters as f64))],
        ),
        family(
            "breaker_state",
            "The circuit breaker's state: 1 for the current state, 0 for the others.",
            MetricType::GAUGE,
            CircuitState::ALL
                .iter()
                .map(|state| {
                    (
                        vec![breaker(), ("state", state.as_str().to_owned())],
                        gauge(f64::from(u8::from(*state == inputs.record.state))),
                    )
                })
                .collect(),
        ),
        family(
            "breaker_transitions_total",
            "Circuit breaker transitions, by the state left and the state entered.",
            MetricType::COUNTER,
            inputs
                .transitions
                .iter()
                .map(|(from, to, count)| {
                    (
                        vec![
                            breaker(),
                            ("from", from.as_str().to_owned()),
                            ("to", to.as_str().to_owned()),
                        ],
                        counter(u64::try_from(*count).unwrap_or(0)),
                    )
                })
                .collect(),
        ),
        family(
            "validator_calls_total",
            "Calls to the external validator, by outcome.",
            MetricType::COUNTER,
            totals
                .calls
                .iter()
                .map(|(outcome, count)| (vec![("outcome", (*outcome).to_owned())], counter(*count)))
                .collect(),
        ),
    ];
    for (name, help, value) in [
        (
            "validator_retries_total",
            "Calls to the external validator that were retries of an earlier attempt.",
            totals.retries,
        ),
        (
            "retry_budget_rejections_total",
            "Retries held back because the fleet's retry budget was spent.",
            totals.budget_rejections,
        ),
        (
            "breaker_deferrals_total",
            "Jobs deferred without a call because the circuit was open.",
            totals.deferrals,
        ),
        (
            "dead_letter_arrivals_total",
            "Jobs and messages sent to the dead-letter queue.",
            totals.dead_letters,
        ),
    ] {
        families.push(family(
            name,
            help,
            MetricType::COUNTER,
            vec![(vec![], counter(value))],
        ));
    }
    families.push(family(
        "validator_call_duration_seconds",
        "How long calls to the external validator took.",
        MetricType::HISTOGRAM,
        vec![(vec![], histogram(&totals.call_latency))],
    ));
    families.push(family(
        "order_validation_duration_seconds",
        "How long orders took from acceptance to their final status.",
        MetricType::HISTOGRAM,
        vec![(vec![], histogram(&totals.validation_latency))],
    ));
    let mut text = String::new();
    if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        text = format!("# the metrics could not be encoded: {error}\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use orders_core::OrderStatus;
    use resilience::MemoryStore;

    fn inputs() -> MetricsInputs {
        let store = MemoryStore::default();
        let mut tally = pipeline::Tally::default();
        tally.call(
            &pipeline::CallResult::Verdict(pipeline::ValidatorVerdict::Valid),
            4,
        );
        tally.validation_latency.observe(120);
        tally.deferrals = 7;
        tally.save(&store).unwrap();
        let mut record = BreakerRecord::closed(1, 0);
        record.state = CircuitState::Open;
        MetricsInputs {
            stats: PipelineStats {
                orders: OrderStatus::ALL.iter().map(|s| (*s, 2)).collect(),
                jobs_due: 1,
                jobs_deferred: 2,
                jobs_leased: 3,
                oldest_due_age_ms: 1_500,
                dead_letters: 4,
            },
            totals: pipeline::read_totals(&store).unwrap(),
            breaker: "external-validator".into(),
            record,
            transitions: vec![(CircuitState::Closed, CircuitState::Open, 2)],
        }
    }

    #[test]
    fn renders_every_family_in_base_units() {
        let text = render_metrics(&inputs());
        for line in [
            "orderly_orders{status=\"processing\"} 2",
            "orderly_jobs{state=\"leased\"} 3",
            "orderly_jobs_oldest_due_age_seconds 1.5",
            "orderly_breaker_state{breaker=\"external-validator\",state=\"open\"} 1",
            "orderly_breaker_state{breaker=\"external-validator\",state=\"closed\"} 0",
            "orderly_breaker_transitions_total{breaker=\"external-validator\",from=\"closed\",to=\"open\"} 2",
            "orderly_validator_calls_total{outcome=\"valid\"} 1",
            "orderly_breaker_deferrals_total 7",
            "orderly_validator_call_duration_seconds_bucket{le=\"0.005\"} 1",
            "orderly_validator_call_duration_seconds_count 1",
            "orderly_order_validation_duration_seconds_bucket{le=\"+Inf\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// `promtool check metrics` (from Prometheus) must accept the exposition. Skipped when
    /// promtool is not installed, unless `ORDERLY_REQUIRE_PROMTOOL` is set (as in CI).
    #[test]
    fn promtool_accepts_the_exposition() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let spawned = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                assert!(
                    std::env::var_os("ORDERLY_REQUIRE_PROMTOOL").is_none(),
                    "promtool is required but cannot run: {error}"
                );
                eprintln!("SKIPPED: promtool is not installed");
                return;
            }
        };
        let text = render_metrics(&inputs());
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
