//! `orderly lab chaos SCENARIO.toml`: a scenario's phases run on an `orderly up` and a
//! `redis-server` of their own, an open-model order load through all of them and the fault
//! schedule ([`Scenario::schedule`], seeded) applied on time; then the faults are cleared and
//! the run is verified like `orderly lab verify` does (nothing acknowledged lost, nothing
//! duplicated, the saga's invariants intact). Its report shows the timeline and each phase's
//! throughput and latency.

use crate::api::Api;
use crate::app::{RedisChoice, RunningApp};
use crate::charts;
use crate::control::FaultMode;
use crate::fault_timeline::{Condition, FaultTimeline};
use crate::history::{self, Attempt, AttemptOutcome, HISTORY_FILE};
use crate::orders_load::{self, Model, Plan, Stop, format_ms};
use crate::pipeline::repository;
use crate::report::{Findings, Identity, Report, Verdict, run_folder};
use crate::scenario::{ActionKind, FaultTarget, Scenario, Scheduled};
use crate::verify;
use anyhow::bail;
use hdrhistogram::Histogram;
use http::Method;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The most connections the open-model load opens.
const MAX_CONNECTIONS: usize = 512;
/// The longest wait for every acknowledged order to be final once the faults are cleared.
const DRAIN: Duration = Duration::from_secs(180);

/// Runs the scenario in `path` and writes its report under `out`; an error when it does not
/// pass.
pub async fn run(path: &Path, out: &Path) -> anyhow::Result<()> {
    let scenario = Scenario::load(path)?;
    let identity = Identity::current(&repository());
    let began = Instant::now();
    let folder = run_folder(out, &format!("chaos-{}", scenario.name));
    std::fs::create_dir_all(&folder)?;
    let found = findings(&scenario, &folder).await;
    let report = Report::new(
        "chaos",
        &format!("Chaos: {}", scenario.name),
        &scenario.description,
        identity,
        began.elapsed(),
        found,
    );
    report.write(&folder)?;
    println!("{}", report.markdown());
    eprintln!("Run folder: {}", folder.display());
    if report.verdict != Verdict::Pass {
        bail!("the scenario did not pass");
    }
    Ok(())
}

/// Runs the scenario on a fresh app; what it found. The history goes into `folder`.
async fn findings(scenario: &Scenario, folder: &Path) -> anyhow::Result<Findings> {
    let mut app = RunningApp::start(RedisChoice::Server, &[]).await?;
    let found = drive(scenario, &mut app, folder).await;
    app.stop(false).await;
    found
}

/// What one scheduled action did.
struct Applied {
    at: Duration,
    phase: String,
    what: String,
    outcome: String,
}

async fn drive(
    scenario: &Scenario,
    app: &mut RunningApp,
    folder: &Path,
) -> anyhow::Result<Findings> {
    let schedule = scenario.schedule();
    let plan = Plan {
        address: app.http.address,
        model: Model::Open {
            rate: scenario.rate,
            max_connections: MAX_CONNECTIONS,
        },
        stop: Stop::After(scenario.duration()),
        warmup: Duration::ZERO,
        seed: scenario.seed,
        run: 1,
        api: Api::Orderly,
        progress: true,
    };
    let mut timeline = FaultTimeline::start();
    let started = Instant::now();
    let (load, (applied, killed)) = tokio::join!(
        orders_load::run(&plan),
        apply(&schedule, app, started, &mut timeline)
    );
    let load = load?;
    history::write(&folder.join(HISTORY_FILE), &load.history)?;

    eprintln!("scenario over: clearing every fault");
    restore(app, killed).await?;
    let mut findings = verify::judge(&load.history, &app.http, DRAIN).await?;
    findings
        .charts
        .extend(charts::acceptance(&load, &timeline)?);
    findings.configure("scenario", &scenario.name);
    findings.configure("seed", scenario.seed);
    findings.configure("load", format!("{} orders/s, open model", scenario.rate));
    findings.configure(
        "phases",
        scenario
            .phases
            .iter()
            .map(|phase| format!("{} {} s", phase.name, phase.seconds))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut body = String::new();
    writeln!(
        body,
        "## Timeline\n\n| at | phase | action | result |\n|---:|---|---|---|"
    )?;
    for action in &applied {
        writeln!(
            body,
            "| {:.1} s | {} | {} | {} |",
            action.at.as_secs_f64(),
            action.phase,
            action.what,
            action.outcome
        )?;
    }
    writeln!(
        body,
        "\n## Phases\n\n| phase | from | to | sent | acknowledged | refused | no answer | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for (name, from, to) in scenario.phase_spans() {
        let phase = PhaseFigures::of(&load.history, from, to);
        writeln!(
            body,
            "| {name} | {:.0} s | {:.0} s | {} | {} | {} | {} | {} | {} | {} |",
            from.as_secs_f64(),
            to.as_secs_f64(),
            phase.sent,
            phase.acknowledged,
            phase.refused,
            phase.unanswered,
            format_ms(phase.ms(0.5)),
            format_ms(phase.ms(0.99)),
            format_ms(phase.ms(1.0)),
        )?;
    }
    writeln!(
        body,
        "\n(latency in ms, from each order's intended send time)\n"
    )?;
    body.push_str(&findings.body);
    findings.body = body;
    Ok(findings)
}

/// Applies `schedule` on time (from `started`); what each action did, and whether it left
/// `orderly up` killed.
async fn apply(
    schedule: &[Scheduled],
    app: &mut RunningApp,
    started: Instant,
    timeline: &mut FaultTimeline,
) -> (Vec<Applied>, bool) {
    let mut applied = Vec::new();
    let mut killed = false;
    for action in schedule {
        tokio::time::sleep_until((started + action.at).into()).await;
        let (what, result) = match &action.kind {
            ActionKind::Fault { fault } => (
                fault.describe(),
                app.http
                    .expect_ok(
                        Method::POST,
                        fault.service.configure_path(),
                        Some(fault.body()),
                    )
                    .await
                    .map(drop),
            ),
            ActionKind::StopRedis => ("stop redis-server".to_owned(), app.stop_redis()),
            ActionKind::StartRedis => ("start redis-server".to_owned(), app.start_redis()),
            ActionKind::KillOrderly => {
                ("SIGKILL orderly up".to_owned(), app.kill().await.map(drop))
            }
            ActionKind::RestartOrderly => ("restart orderly up".to_owned(), app.restart().await),
            ActionKind::RandomFaults { .. } => {
                unreachable!("the schedule has drawn its random faults")
            }
        };
        if result.is_ok() {
            timeline.act(&what, condition(&action.kind));
            match action.kind {
                ActionKind::KillOrderly => killed = true,
                ActionKind::RestartOrderly => killed = false,
                _ => {}
            }
        }
        let outcome = match result {
            Ok(()) => format!("done at {:.1} s", started.elapsed().as_secs_f64()),
            Err(error) => format!("failed: {error:#}"),
        };
        eprintln!("{:>6.1} s  {what}: {outcome}", action.at.as_secs_f64());
        applied.push(Applied {
            at: action.at,
            phase: action.phase.clone(),
            what,
            outcome,
        });
    }
    (applied, killed)
}

/// Whether the app is left faulty after `kind` (until the next action).
fn condition(kind: &ActionKind) -> Condition {
    let healthy = match kind {
        ActionKind::Fault { fault } => {
            fault.mode == FaultMode::Normal && fault.failure_rate.unwrap_or(0.0) == 0.0
        }
        ActionKind::StartRedis | ActionKind::RestartOrderly => true,
        ActionKind::StopRedis | ActionKind::KillOrderly | ActionKind::RandomFaults { .. } => false,
    };
    if healthy {
        Condition::Healthy
    } else {
        Condition::Faulty
    }
}

/// Brings everything back: Redis and `orderly up` running (restarted if the scenario left it
/// `killed`), every service's faults cleared.
async fn restore(app: &mut RunningApp, killed: bool) -> anyhow::Result<()> {
    app.start_redis()?;
    if killed {
        app.restart().await?;
    }
    for service in FaultTarget::ALL {
        app.http
            .expect_ok(
                Method::POST,
                service.configure_path(),
                Some(json!({"mode": "normal", "failure_rate": 0.0})),
            )
            .await?;
    }
    Ok(())
}

/// One phase's orders, from the history.
struct PhaseFigures {
    sent: u64,
    acknowledged: u64,
    refused: u64,
    unanswered: u64,
    /// Latencies of the acknowledged, in µs.
    latencies: Histogram<u64>,
}

impl PhaseFigures {
    /// The attempts sent from `from` to `to` (since the run's start).
    fn of(history: &[Attempt], from: Duration, to: Duration) -> Self {
        let mut figures = Self {
            sent: 0,
            acknowledged: 0,
            refused: 0,
            unanswered: 0,
            latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("1 µs to an hour at 3 significant figures is a valid histogram"),
        };
        let (from, to) = (millis(from), millis(to));
        for attempt in history
            .iter()
            .filter(|attempt| (from..to).contains(&attempt.sent_ms))
        {
            figures.sent += 1;
            match attempt.outcome {
                AttemptOutcome::Acknowledged => {
                    figures.acknowledged += 1;
                    if let Some(latency) = attempt.latency_us {
                        figures.latencies.saturating_record(latency);
                    }
                }
                AttemptOutcome::Refused { .. } => figures.refused += 1,
                AttemptOutcome::Transport => figures.unanswered += 1,
            }
        }
        figures
    }

    fn ms(&self, quantile: f64) -> Option<f64> {
        (!self.latencies.is_empty())
            .then(|| self.latencies.value_at_quantile(quantile) as f64 / 1000.0)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(sent_ms: u64, outcome: AttemptOutcome, latency_us: u64) -> Attempt {
        Attempt {
            key: format!("k-{sent_ms}"),
            order_id: None,
            sent_ms,
            latency_us: Some(latency_us),
            outcome,
        }
    }

    #[test]
    fn attempts_count_in_the_phase_they_were_sent_in() {
        let history = [
            attempt(100, AttemptOutcome::Acknowledged, 2_000),
            attempt(999, AttemptOutcome::Refused { status: 503 }, 500),
            attempt(1_000, AttemptOutcome::Acknowledged, 9_000),
            attempt(1_500, AttemptOutcome::Transport, 0),
        ];
        let first = PhaseFigures::of(&history, Duration::ZERO, Duration::from_secs(1));
        assert_eq!((first.sent, first.acknowledged, first.refused), (2, 1, 1));
        assert_eq!(first.ms(1.0), Some(2.0));
        let second = PhaseFigures::of(&history, Duration::from_secs(1), Duration::from_secs(2));
        assert_eq!(
            (second.sent, second.acknowledged, second.unanswered),
            (2, 1, 1)
        );
        // HDR keeps three significant figures.
        let median = second.ms(0.5).unwrap();
        assert!((median - 9.0).abs() < 0.01, "{median}");
    }
}
