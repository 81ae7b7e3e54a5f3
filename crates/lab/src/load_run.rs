//! `orderly lab load`: orders created on a running server under a closed or open model, with
//! a live progress line; the run's folder gets its history (every attempt, for `orderly lab
//! verify`) and a report (throughput, latency percentiles from an HDR histogram, errors by
//! class).

use crate::control::{Control, FaultMode};
use crate::history::{self, HISTORY_FILE};
use crate::orders_load::{self, Model, Plan, Stop, format_ms};
use crate::pipeline::repository;
use crate::report::{Findings, Identity, Report, run_folder};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `plan` against its server (after setting the simulated validator's `fault`, if any)
/// and writes the run's folder under `out`.
pub async fn run(
    plan: &Plan,
    fault: Option<(FaultMode, Option<Duration>)>,
    out: &Path,
) -> anyhow::Result<()> {
    let identity = Identity::current(&repository());
    let began = Instant::now();
    if let Some((mode, delay)) = fault {
        Control::new(plan.address).configure(mode, delay).await?;
    }
    let folder = run_folder(out, "load");
    std::fs::create_dir_all(&folder)?;
    eprintln!(
        "{} on {}: {}",
        plan.api.path(),
        plan.address,
        describe(plan)
    );
    let report = orders_load::run(plan).await?;
    history::write(&folder.join(HISTORY_FILE), &report.history)?;

    let mut findings = Findings::default();
    findings.configure("server", plan.address);
    findings.configure(
        "api",
        format!("{:?} (`POST {}`)", plan.api, plan.api.path()).to_lowercase(),
    );
    findings.configure("load", describe(plan));
    if let Some((mode, delay)) = fault {
        let delay = delay.map_or(String::new(), |delay| format!(", {} ms", delay.as_millis()));
        findings.configure("validator", format!("{}{delay}", mode.as_str()));
    }
    findings.figure("acknowledged", report.acknowledged as f64);
    findings.figure("acknowledged_per_second", report.per_second());
    for (name, quantile) in [
        ("p50_ms", 0.5),
        ("p90_ms", 0.9),
        ("p99_ms", 0.99),
        ("p999_ms", 0.999),
    ] {
        if let Some(ms) = report.latency_ms(quantile) {
            findings.figure(name, ms);
        }
    }
    let errors = report.errors;
    for (name, count) in [
        ("errors_4xx", errors.client),
        ("errors_5xx", errors.server),
        ("errors_transport", errors.transport),
    ] {
        findings.figure(name, count as f64);
    }
    let body = &mut findings.body;
    writeln!(
        body,
        "## Throughput and latency\n\n| acknowledged | per second | p50 | p90 | p99 | p99.9 | max |\n|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    writeln!(
        body,
        "| {} | {:.0} | {} | {} | {} | {} | {} |\n\n(latency in ms, from each order's {} send time)",
        report.acknowledged,
        report.per_second(),
        format_ms(report.latency_ms(0.5)),
        format_ms(report.latency_ms(0.9)),
        format_ms(report.latency_ms(0.99)),
        format_ms(report.latency_ms(0.999)),
        format_ms(report.max_ms()),
        match plan.model {
            Model::Closed { .. } => "actual",
            Model::Open { .. } => "intended",
        }
    )?;
    writeln!(
        body,
        "\n## Errors\n\n| 4xx | 5xx | other status | no answer |\n|---:|---:|---:|---:|\n| {} | {} | {} | {} |",
        errors.client, errors.server, errors.unexpected, errors.transport
    )?;
    writeln!(
        body,
        "\n{} attempts, warm-up included, are in `{HISTORY_FILE}`: `orderly lab verify {}` \
         judges what became of each.",
        report.history.len(),
        folder.display()
    )?;
    let report = Report::new(
        "load",
        "Order load",
        "Orders created on a running server; a measurement, with no hypotheses of its own.",
        identity,
        began.elapsed(),
        Ok(findings),
    );
    report.write(&folder)?;
    println!("{}", report.markdown());
    eprintln!("Run folder: {}", folder.display());
    Ok(())
}

/// What a load plan does, in words.
fn describe(plan: &Plan) -> String {
    let model = match plan.model {
        Model::Closed { connections } => format!("closed model, {connections} connections"),
        Model::Open {
            rate,
            max_connections,
        } => format!("open model, {rate} orders/s (at most {max_connections} connections)"),
    };
    let stop = match plan.stop {
        Stop::After(duration) => format!("{} s", duration.as_secs_f64()),
        Stop::Acknowledged(orders) => format!("until {orders} orders are acknowledged"),
    };
    format!(
        "{model}, {stop} after {} s of warm-up, seed {}",
        plan.warmup.as_secs_f64(),
        plan.seed
    )
}
