//! The Campus seed's "Backlog & Recovery Test (60-second downtime)", under a steady load: the
//! validator down for a minute while orders keep arriving at a fixed rate, then back. Every
//! order accepted meanwhile must be validated afterwards (none lost), the backlog must drain
//! soon, and acceptance must stay fast throughout. Findings with a verdict per hypothesis, and
//! charts of the run.

use crate::app::{RedisChoice, RunningApp};
use crate::control::AdminStats;
use crate::fault_timeline::phases_markdown;
use crate::orders_load::format_ms;
use crate::outage::{CLOSE_WITHIN, Observed, OutagePlan, breaker_variables, observe, whole_ms};
use crate::report::Findings;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The acceptance p99 allowed in every phase, in ms.
const P99_LIMIT_MS: f64 = 100.0;
/// How much faster than it built up the backlog must drain, once the breaker closed: the
/// outage's length divided by this.
const CATCH_UP: u32 = 3;

/// What the experiment is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The load and the outage.
    pub plan: OutagePlan,
}

impl Settings {
    /// The standard run: 200 orders/s, 10 s of baseline, the seed's 60 s outage, 30 s after
    /// it; `quick`: 5 s of baseline, a 10 s outage and 15 s after it.
    pub fn standard(quick: bool) -> Self {
        Self {
            plan: OutagePlan {
                rate: 200.0,
                baseline: Duration::from_secs(if quick { 5 } else { 10 }),
                outage: Duration::from_secs(if quick { 10 } else { 60 }),
                after: Duration::from_secs(if quick { 15 } else { 30 }),
            },
        }
    }

    /// How soon after the validator is back the backlog must have drained: the breaker's
    /// close, then the backlog of the outage caught up [`CATCH_UP`] times faster than it
    /// built up.
    fn drain_within(&self) -> Duration {
        CLOSE_WITHIN + self.plan.outage / CATCH_UP
    }

    /// The most orders waiting that counts as drained: a second's worth of load.
    fn drained_level(&self) -> u64 {
        self.plan.rate.ceil() as u64
    }
}

/// Runs the experiment on a fresh `orderly up` (with `redis`); what it found.
pub async fn findings(settings: &Settings, redis: RedisChoice) -> anyhow::Result<Findings> {
    let app = RunningApp::start(redis, &breaker_variables()).await?;
    let observed = observe(app.http.address, &settings.plan).await;
    app.stop(false).await;
    report(settings, observed?)
}

/// The first poll at or after `from` that saw at most `level` orders processing.
fn drained_at(polls: &[(Instant, AdminStats)], from: Instant, level: u64) -> Option<Instant> {
    polls
        .iter()
        .find(|(at, stats)| *at >= from && stats.orders.processing <= level)
        .map(|(at, _)| *at)
}

/// The findings of an observed run.
fn report(settings: &Settings, mut observed: Observed) -> anyhow::Result<Findings> {
    let plan = &settings.plan;
    let outage = &observed.outage;
    let polls = &observed.stats_polls;
    let backlog_at_recovery = polls
        .iter()
        .rev()
        .find(|(at, _)| *at <= outage.back)
        .map_or(0, |(_, stats)| stats.orders.processing);
    let largest_backlog = polls
        .iter()
        .map(|(_, stats)| stats.orders.processing)
        .max()
        .unwrap_or(0);
    let drain_within = settings.drain_within();
    let drained = drained_at(polls, outage.back, settings.drained_level())
        .map(|at| at.saturating_duration_since(outage.back));
    if let Some(drained) = drained {
        let at = observed.timeline.secs(outage.back + drained);
        observed.timeline.observe(
            at,
            format!("backlog drained (≤ {} waiting)", settings.drained_level()),
        );
    }
    let phases = observed.phases();
    let counts = observed.drain.last.orders;
    let acknowledged = observed.acknowledged();
    let lost = i128::from(acknowledged) - i128::from(counts.settled());
    let during_outage = phases
        .iter()
        .find(|phase| phase.faulty)
        .map_or(0, |phase| phase.window.acknowledged);

    let mut findings = Findings::default();
    plan.configure(&mut findings);
    let out = &mut findings.body;
    observed.write_head(plan, "The backlog", out)?;
    writeln!(
        out,
        "| orders acknowledged while the validator was down | {during_outage} |"
    )?;
    writeln!(
        out,
        "| validator calls while it was down | {} before the breaker opened, {} after ({} \
         openings) |",
        outage.calls_before_open, outage.calls_after_open, outage.trips
    )?;
    writeln!(
        out,
        "| waiting for validation when it came back | {backlog_at_recovery} (largest seen: \
         {largest_backlog}) |"
    )?;
    writeln!(
        out,
        "| breaker closed, after the validator was back | {} |",
        whole_ms(outage.closed_after_ms)
    )?;
    writeln!(
        out,
        "| backlog drained (≤ {} waiting), after the validator was back | {} |",
        settings.drained_level(),
        drained.map_or_else(
            || "not while the load ran".to_owned(),
            |drained| format!(
                "{:.2} s (≈ {:.0} orders/s caught up on top of the load)",
                drained.as_secs_f64(),
                backlog_at_recovery as f64 / drained.as_secs_f64().max(f64::EPSILON)
            )
        )
    )?;
    writeln!(
        out,
        "| after the load: validated / rejected / failed / processing | {} / {} / {} / {} ({} \
         dead letters) |",
        counts.validated,
        counts.rejected,
        counts.failed,
        counts.processing,
        observed.drain.last.dead_letters
    )?;
    writeln!(
        out,
        "| lost (acknowledged − settled) | {lost} of {acknowledged} |"
    )?;
    writeln!(
        out,
        "\n## Acceptance by phase\n\n{}",
        phases_markdown(&phases)
    )?;
    findings.charts = observed.charts()?;

    findings.figure("validator_calls", observed.validator_calls as f64);
    findings.figure("amplification", observed.amplification());
    findings.figure("orders_acknowledged", acknowledged as f64);
    findings.figure("acknowledged_during_outage", during_outage as f64);
    findings.figure("backlog_at_recovery", backlog_at_recovery as f64);
    findings.figure("largest_backlog", largest_backlog as f64);
    findings.figure(
        "drained_after_secs",
        drained.map_or(f64::NAN, |drained| drained.as_secs_f64()),
    );
    findings.figure(
        "closed_after_ms",
        outage.closed_after_ms.unwrap_or(f64::NAN),
    );
    findings.figure("lost", lost as f64);

    findings.check(
        "Nothing is lost: every order acknowledged (202), during the outage too, is validated \
         once the validator is back; none fails, none is rejected",
        format!(
            "{acknowledged} acknowledged (warm-up included; {during_outage} while down); {} \
             validated, {} \
             rejected, {} failed, {} still processing; lost {lost}",
            counts.validated, counts.rejected, counts.failed, counts.processing
        ),
        observed.drain.drained_at.is_some()
            && lost == 0
            && counts.validated == acknowledged
            && counts.failed == 0
            && counts.rejected == 0,
    );
    findings.check(
        format!(
            "The backlog drains under load within {:.1} s of the validator being back (at \
             most {} s for the breaker to close, then {CATCH_UP}× faster than it built up): \
             no more than a second's orders ({}) waiting",
            drain_within.as_secs_f64(),
            CLOSE_WITHIN.as_secs(),
            settings.drained_level()
        ),
        format!(
            "{backlog_at_recovery} waiting when it came back; {}",
            drained.map_or_else(
                || "not drained while the load ran".to_owned(),
                |drained| format!("drained after {:.2} s", drained.as_secs_f64())
            )
        ),
        drained.is_some_and(|drained| drained <= drain_within),
    );
    let answered: Vec<String> = phases
        .iter()
        .map(|phase| {
            format!(
                "{}: {} × 202, {} not, p99 {} ms",
                phase.label,
                phase.window.acknowledged,
                phase.window.errors,
                format_ms(phase.window.latency_ms(0.99))
            )
        })
        .collect();
    findings.check(
        format!(
            "Acceptance stays fast throughout: every order answered 202, p99 under \
             {P99_LIMIT_MS} ms before, during and after the outage"
        ),
        answered.join("; "),
        phases.iter().all(|phase| {
            phase.window.errors == 0
                && phase
                    .window
                    .latency_ms(0.99)
                    .is_some_and(|p99| p99 < P99_LIMIT_MS)
        }),
    );
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::OrderCounts;

    fn stats(processing: u64) -> AdminStats {
        AdminStats {
            orders: OrderCounts {
                processing,
                validated: 0,
                rejected: 0,
                failed: 0,
            },
            jobs_due: 0,
            jobs_deferred: 0,
            jobs_leased: 0,
            oldest_due_age_ms: None,
            dead_letters: 0,
        }
    }

    #[test]
    fn the_backlog_is_drained_at_the_first_poll_after_recovery_at_or_under_the_level() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let polls = [
            (at(0), stats(5)),
            (at(250), stats(12_000)),
            (at(500), stats(6_000)),
            (at(750), stats(200)),
            (at(1_000), stats(3)),
        ];
        assert_eq!(drained_at(&polls, at(100), 200), Some(at(750)));
        assert_eq!(drained_at(&polls, at(100), 2), None);
        assert_eq!(drained_at(&polls, at(0), 200), Some(at(0)));
    }

    #[test]
    fn the_drain_has_time_to_be_seen_under_load() {
        for quick in [true, false] {
            let settings = Settings::standard(quick);
            assert!(
                settings.plan.after > settings.drain_within(),
                "quick: {quick}"
            );
        }
        assert_eq!(
            Settings::standard(false).drain_within(),
            Duration::from_secs(26)
        );
    }
}
