//! The circuit breaker in a full outage of the validator, under a steady load of `POST
//! /orders`: how soon it opens, how few calls reach the validator while it is down (only the
//! probes), how soon it closes once the validator is back, and acceptance unaffected
//! meanwhile. Findings with a verdict per hypothesis, and charts of the run.

use crate::app::{RedisChoice, RunningApp};
use crate::fault_timeline::phases_markdown;
use crate::orders_load::format_ms;
use crate::outage::{
    BREAKER_OPEN, BREAKER_OPEN_MAX, CLOSE_WITHIN, Observed, OutagePlan, breaker_variables, observe,
    whole_ms,
};
use crate::report::Findings;
use std::fmt::Write as _;
use std::time::Duration;

/// How soon the breaker must open once the validator is down: at 100 orders/s each order
/// wakes a worker, so the failures that trip it take tens of ms; a second leaves room for the
/// sweep.
const OPEN_WITHIN: Duration = Duration::from_millis(1_000);
/// The acceptance p99 allowed during the outage, in ms.
const OUTAGE_P99_LIMIT_MS: f64 = 100.0;

/// What the experiment is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The load and the outage.
    pub plan: OutagePlan,
}

impl Settings {
    /// The standard run: 100 orders/s, 5 s of baseline, a 20 s outage, 15 s after it;
    /// `quick`: a 10 s outage and 10 s after it.
    pub fn standard(quick: bool) -> Self {
        Self {
            plan: OutagePlan {
                rate: 100.0,
                baseline: Duration::from_secs(5),
                outage: Duration::from_secs(if quick { 10 } else { 20 }),
                after: Duration::from_secs(if quick { 10 } else { 15 }),
            },
        }
    }
}

/// Runs the experiment on a fresh `orderly up` (with `redis`); what it found.
pub async fn findings(settings: &Settings, redis: RedisChoice) -> anyhow::Result<Findings> {
    let app = RunningApp::start(redis, &breaker_variables()).await?;
    let observed = observe(app.http.address, &settings.plan).await;
    app.stop(false).await;
    report(settings, &observed?)
}

/// The findings of an observed run.
fn report(settings: &Settings, observed: &Observed) -> anyhow::Result<Findings> {
    let plan = &settings.plan;
    let outage = &observed.outage;
    let opened_after =
        Duration::from_secs_f64(outage.opened_after_ms.unwrap_or(0.0).max(0.0) / 1000.0);
    let probes_allowed = plan.probes_allowed(opened_after);
    let phases = observed.phases();

    let mut findings = Findings::default();
    plan.configure(&mut findings);
    let out = &mut findings.body;
    observed.write_head(plan, "The breaker", out)?;
    writeln!(
        out,
        "| opened, after the validator went down | {} |",
        whole_ms(outage.opened_after_ms)
    )?;
    writeln!(
        out,
        "| validator calls before it opened | {} |",
        outage.calls_before_open
    )?;
    writeln!(
        out,
        "| validator calls after it opened, while down | {} (at most {probes_allowed} probes \
         allowed) |",
        outage.calls_after_open
    )?;
    writeln!(
        out,
        "| openings during the outage | {} (the first, then one per failed probe) |",
        outage.trips
    )?;
    writeln!(
        out,
        "| closed, after the validator was back | {} |",
        whole_ms(outage.closed_after_ms)
    )?;
    let counts = observed.drain.last.orders;
    writeln!(
        out,
        "| orders acknowledged; validated once it was back | {}; {} (rejected {}, failed {}, \
         still processing {}) |",
        observed.acknowledged(),
        counts.validated,
        counts.rejected,
        counts.failed,
        counts.processing
    )?;
    writeln!(
        out,
        "\n## Acceptance by phase\n\n{}",
        phases_markdown(&phases)
    )?;
    findings.charts = observed.charts()?;

    let figure = |value: Option<f64>| value.unwrap_or(f64::NAN);
    findings.figure("opened_after_ms", figure(outage.opened_after_ms));
    findings.figure("closed_after_ms", figure(outage.closed_after_ms));
    findings.figure("calls_before_open", outage.calls_before_open as f64);
    findings.figure("calls_after_open", outage.calls_after_open as f64);
    findings.figure("probes_allowed", probes_allowed as f64);
    findings.figure("trips_in_outage", outage.trips as f64);
    findings.figure("validator_calls", observed.validator_calls as f64);
    findings.figure("amplification", observed.amplification());
    findings.figure("orders_acknowledged", observed.acknowledged() as f64);

    findings.check(
        format!(
            "The breaker opens within {} ms of the validator going down",
            OPEN_WITHIN.as_millis()
        ),
        outage.opened_after_ms.map_or_else(
            || "it did not open".to_owned(),
            |ms| format!("opened after {ms:.0} ms"),
        ),
        outage
            .opened_after_ms
            .is_some_and(|ms| ms <= OPEN_WITHIN.as_secs_f64() * 1000.0),
    );
    findings.check(
        format!(
            "Once open, only probes reach the validator: at most one call per half-open window \
             of the {} → {} ms doubling schedule in the rest of the {} s outage",
            BREAKER_OPEN.as_millis(),
            BREAKER_OPEN_MAX.as_millis(),
            plan.outage.as_secs()
        ),
        format!(
            "{} calls after it opened ({probes_allowed} allowed; {} openings); {} before",
            outage.calls_after_open, outage.trips, outage.calls_before_open
        ),
        outage.opened_after_ms.is_some() && outage.calls_after_open <= probes_allowed,
    );
    findings.check(
        format!(
            "Once the validator is back the breaker closes within {} s (its longest open time, \
             {} s, then the next sweep's probe)",
            CLOSE_WITHIN.as_secs(),
            BREAKER_OPEN_MAX.as_secs(),
        ),
        outage.closed_after_ms.map_or_else(
            || "it did not close".to_owned(),
            |ms| format!("closed after {ms:.0} ms"),
        ),
        outage
            .closed_after_ms
            .is_some_and(|ms| ms <= CLOSE_WITHIN.as_secs_f64() * 1000.0),
    );
    let down = phases
        .iter()
        .find(|phase| phase.faulty)
        .map(|phase| &phase.window);
    let p99 = down.and_then(|window| window.latency_ms(0.99));
    findings.check(
        format!(
            "Orders keep being accepted while the validator is down: every one answered 202, \
             p99 under {OUTAGE_P99_LIMIT_MS} ms"
        ),
        down.map_or_else(
            || "no answers while down".to_owned(),
            |window| {
                format!(
                    "{} acknowledged, {} not; p99 {} ms",
                    window.acknowledged,
                    window.errors,
                    format_ms(p99)
                )
            },
        ),
        down.is_some_and(|window| window.acknowledged > 0 && window.errors == 0)
            && p99.is_some_and(|p99| p99 < OUTAGE_P99_LIMIT_MS),
    );
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_sees_several_probes_and_the_close_under_load() {
        for quick in [true, false] {
            let plan = Settings::standard(quick).plan;
            assert!(plan.probes_allowed(Duration::ZERO) >= 3, "quick: {quick}");
            assert!(plan.after > CLOSE_WITHIN, "quick: {quick}");
        }
    }
}
