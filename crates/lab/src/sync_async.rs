//! The Campus seed's contrast, measured: the same orders created asynchronously (`POST
//! /api/orders`, 202 once stored) and synchronously (`POST /api/orders?mode=sync`, 201 once
//! validated, reserved and paid) through the gateway, one at a time and alternating, while the
//! inventory is healthy, 2 s slow, failing, and slower than the sync deadline. Then the faults
//! are cleared, every order is awaited to a final status and the saga's invariants are checked
//! (a caller giving up leaks no stock). Findings with a verdict per hypothesis.

use crate::app::{RedisChoice, RunningApp};
use crate::app_http::Http;
use crate::orders_load::format_ms;
use crate::report::Findings;
use crate::settle::{last_events, wait_final};
use hdrhistogram::Histogram;
use http::Method;
use saga_audit::audit::Audit;
use saga_audit::state::{self, CancelRequest};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The Campus seed's menu, which the orders rotate through.
const PRODUCTS: [&str; 5] = ["Burger", "Pizza", "Sushi", "Taco", "Salad"];
/// The sync path's deadline the app is given (spin.toml's default), in ms.
const SYNC_DEADLINE_MS: u64 = 5_000;
/// How much later than the deadline a sync answer may come and still count as on time.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);
/// The async answer's p99 the hypothesis allows in every scenario, in ms: acceptance must not
/// wait for the inventory.
const ASYNC_P99_LIMIT_MS: f64 = 250.0;
/// The share of the injected delay the sync p50 must grow by.
const DELAY_PASSED_ON: f64 = 0.9;
/// Orders not final whose last events the report shows.
const SHOWN_STUCK: usize = 20;

/// What the experiment is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Orders of each kind (async and sync) at baseline.
    pub orders: usize,
    /// Orders of each kind while the inventory is slow.
    pub delayed_orders: usize,
    /// The delay injected into the inventory.
    pub delay: Duration,
    /// Orders of each kind while the inventory fails, and while it is past the deadline.
    pub cascade_orders: usize,
    /// The longest wait for every order to be final once the faults are cleared.
    pub timeout: Duration,
}

impl Settings {
    /// The standard run: 100 orders of each kind at baseline, 20 with 2 s injected, 5 per
    /// cascade; `quick`: 10, 3 and 2.
    pub fn standard(quick: bool) -> Self {
        Self {
            orders: if quick { 10 } else { 100 },
            delayed_orders: if quick { 3 } else { 20 },
            delay: Duration::from_secs(2),
            cascade_orders: if quick { 2 } else { 5 },
            timeout: Duration::from_secs(300),
        }
    }
}

/// How an order is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Creation {
    /// Stored and answered 202; the saga runs after.
    Async,
    /// Validated, reserved and paid inside the request; 201.
    Sync,
}

impl Creation {
    fn path(self) -> &'static str {
        match self {
            Self::Async => "/api/orders",
            Self::Sync => "/api/orders?mode=sync",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Sync => "sync",
        }
    }
}

/// One state of the inventory, and what each creation is expected to answer in it.
struct Scenario {
    name: String,
    /// The inventory's fault control body (the Campus seed's form).
    inventory: Value,
    orders: usize,
    /// The statuses a sync creation may answer.
    sync_answers: &'static [u16],
}

fn scenarios(settings: &Settings) -> Vec<Scenario> {
    let delay_secs = settings.delay.as_secs_f64();
    let past_deadline_secs = SYNC_DEADLINE_MS as f64 / 1000.0 * 2.0;
    vec![
        Scenario {
            name: "baseline".to_owned(),
            inventory: json!({"delay": 0, "failure_rate": 0}),
            orders: settings.orders,
            sync_answers: &[201],
        },
        Scenario {
            name: format!("inventory +{delay_secs} s"),
            inventory: json!({"delay": delay_secs, "failure_rate": 0}),
            orders: settings.delayed_orders,
            sync_answers: &[201],
        },
        // Past the deadline first: the failing scenario opens the inventory's circuit, which
        // would answer 503 here before the deadline could pass.
        Scenario {
            name: format!("inventory +{past_deadline_secs} s (past the sync deadline)"),
            inventory: json!({"delay": past_deadline_secs, "failure_rate": 0}),
            orders: settings.cascade_orders,
            // 503 once the inventory's circuit opens on the timeouts: failing fast is the point.
            sync_answers: &[504, 503],
        },
        Scenario {
            name: "inventory failing (failure_rate 1)".to_owned(),
            inventory: json!({"delay": 0, "failure_rate": 1}),
            orders: settings.cascade_orders,
            sync_answers: &[503],
        },
    ]
}

/// The answers of one creation in one scenario.
struct Cell {
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    /// Every answer's latency, in µs.
    latencies: Histogram<u64>,
}

impl Cell {
    fn new() -> Self {
        Self {
            statuses: BTreeMap::new(),
            transport_errors: 0,
            latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("1 µs to an hour at 3 significant figures is a valid histogram"),
        }
    }

    fn ms(&self, quantile: f64) -> Option<f64> {
        (!self.latencies.is_empty())
            .then(|| self.latencies.value_at_quantile(quantile) as f64 / 1000.0)
    }

    fn statuses_text(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, count)| format!("{count} × {status}"))
            .collect();
        if self.transport_errors > 0 {
            parts.push(format!("{} unanswered", self.transport_errors));
        }
        parts.join(", ")
    }
}

/// Runs the experiment on a fresh `orderly up` (with `redis`); what it found.
pub async fn findings(settings: &Settings, redis: RedisChoice) -> anyhow::Result<Findings> {
    // The gateway's limit is lifted: this measures creation, not the rate limiter.
    let app = RunningApp::start(
        redis,
        &[
            "rate_limit=1000000".to_owned(),
            "rate_limit_burst=1000000".to_owned(),
            "rate_limit_period_secs=1".to_owned(),
            format!("sync_deadline_ms={SYNC_DEADLINE_MS}"),
        ],
    )
    .await?;
    let found = experiment(settings, &app.http).await;
    app.stop(false).await;
    found
}

/// The experiment on a running app.
async fn experiment(settings: &Settings, http: &Http) -> anyhow::Result<Findings> {
    let scenarios = scenarios(settings);
    let mut findings = Findings::default();
    findings.configure("orders of each kind at baseline", settings.orders);
    findings.configure("orders of each kind while slow", settings.delayed_orders);
    findings.configure(
        "injected delay",
        format!("{} ms", settings.delay.as_millis()),
    );
    findings.configure("orders of each kind per cascade", settings.cascade_orders);
    findings.configure("sync deadline", format!("{SYNC_DEADLINE_MS} ms"));
    let out = &mut findings.body;
    writeln!(
        out,
        "In each scenario the inventory's faults are set (`POST /internal/inventory/configure`, \
         the Campus seed's body), then orders are sent one at a time through the gateway, \
         alternating: `POST /api/orders` (async) and `POST /api/orders?mode=sync` (sync). \
         Latency is from sending to the whole answer.\n"
    )?;

    let mut cells: Vec<(Creation, Cell)> = Vec::new();
    let mut created: Vec<String> = Vec::new();
    let mut draws = fastrand::Rng::with_seed(1);
    for (index, scenario) in scenarios.iter().enumerate() {
        http.expect_ok(
            Method::POST,
            "/internal/inventory/configure",
            Some(scenario.inventory.clone()),
        )
        .await?;
        eprintln!("{}: {} orders of each kind", scenario.name, scenario.orders);
        let (mut asynchronous, mut synchronous) = (Cell::new(), Cell::new());
        for n in 0..scenario.orders {
            for (creation, cell) in [
                (Creation::Async, &mut asynchronous),
                (Creation::Sync, &mut synchronous),
            ] {
                let id = format!("s{index}-{}-{n}", creation.name());
                let body = json!({"order_id": id, "items": [{
                    "product": PRODUCTS[draws.usize(..PRODUCTS.len())],
                    "quantity": draws.u32(1..=3),
                }]});
                let sent = Instant::now();
                let answer = http
                    .call(
                        Method::POST,
                        creation.path(),
                        &[("idempotency-key", &id)],
                        Some(body.to_string()),
                    )
                    .await;
                let latency = sent.elapsed();
                match answer {
                    Ok((status, _)) => {
                        *cell.statuses.entry(status).or_default() += 1;
                        cell.latencies.saturating_record(
                            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                        );
                        if matches!(status, 201 | 202 | 402 | 409 | 503 | 504) {
                            created.push(id);
                        }
                    }
                    Err(_) => cell.transport_errors += 1,
                }
            }
        }
        cells.push((Creation::Async, asynchronous));
        cells.push((Creation::Sync, synchronous));
    }

    writeln!(
        out,
        "## Latency\n\n| inventory | creation | answers | min | mean | p50 | p95 | p99 | max |"
    )?;
    writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|")?;
    for (scenario, pair) in scenarios.iter().zip(cells.chunks(2)) {
        for (creation, cell) in pair {
            let mean = (!cell.latencies.is_empty()).then(|| cell.latencies.mean() / 1000.0);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                scenario.name,
                creation.name(),
                cell.statuses_text(),
                format_ms(cell.ms(0.0)),
                format_ms(mean),
                format_ms(cell.ms(0.5)),
                format_ms(cell.ms(0.95)),
                format_ms(cell.ms(0.99)),
                format_ms(cell.ms(1.0)),
            )?;
        }
    }
    writeln!(out, "\n(milliseconds)")?;

    http.expect_ok(
        Method::POST,
        "/internal/inventory/configure",
        Some(json!({"delay": 0, "failure_rate": 0})),
    )
    .await?;
    let cleared = Instant::now();
    eprintln!("faults cleared; waiting for every order to be final");
    let stuck = wait_final(http, &created, settings.timeout).await;
    let settle_time = cleared.elapsed();
    let with_cancel: Vec<(String, CancelRequest)> = created
        .iter()
        .map(|id| (id.clone(), CancelRequest::NotAsked))
        .collect();
    let snapshot = state::snapshot(http, &with_cancel, Vec::new())
        .await
        .map_err(anyhow::Error::msg)?;
    let audit = Audit::of(&snapshot);
    writeln!(
        out,
        "\n## After the faults were cleared\n\n{} orders created; {}.",
        created.len(),
        if stuck.is_empty() {
            format!("every one final {:.2} s later", settle_time.as_secs_f64())
        } else {
            format!(
                "{} still not final after {} s",
                stuck.len(),
                settings.timeout.as_secs()
            )
        }
    )?;
    for id in stuck.iter().take(SHOWN_STUCK) {
        writeln!(out, "- not final: {id}: {}", last_events(http, id).await?)?;
    }
    writeln!(out, "\n### Invariants\n\n{}", audit.markdown())?;

    let sync_p50 = |scenario: usize| cells[scenario * 2 + 1].1.ms(0.5).unwrap_or(f64::NAN);
    findings.figure("sync_p50_ms_baseline", sync_p50(0));
    findings.figure("sync_p50_ms_delayed", sync_p50(1));
    findings.figure("orders_created", created.len() as f64);
    findings.figure("settle_secs", settle_time.as_secs_f64());
    for (claim, held, observed) in judge(
        settings,
        &scenarios,
        &cells,
        stuck.is_empty() && audit.passed(),
    ) {
        findings.check(claim, observed, held);
    }
    Ok(findings)
}

/// Each hypothesis: its claim, whether it held, and the figures that say so.
fn judge(
    settings: &Settings,
    scenarios: &[Scenario],
    cells: &[(Creation, Cell)],
    settled_consistently: bool,
) -> Vec<(String, bool, String)> {
    let cell = |scenario: usize, creation: Creation| {
        &cells[scenario * 2 + usize::from(creation == Creation::Sync)].1
    };
    let (base, delayed) = (
        cell(0, Creation::Sync).ms(0.5),
        cell(1, Creation::Sync).ms(0.5),
    );
    let delay_ms = settings.delay.as_secs_f64() * 1000.0;
    let growth = delayed.zip(base).map(|(delayed, base)| delayed - base);
    let passed_on = (
        format!(
            "Sync creation passes the inventory's delay on to its caller: its p50 grows by at \
             least {:.0} % of the injected {delay_ms:.0} ms",
            DELAY_PASSED_ON * 100.0
        ),
        growth.is_some_and(|growth| growth >= DELAY_PASSED_ON * delay_ms),
        format!(
            "sync p50 {} → {} ms (+{} ms for {delay_ms:.0} ms injected)",
            format_ms(base),
            format_ms(delayed),
            format_ms(growth)
        ),
    );

    let async_cells: Vec<&Cell> = (0..scenarios.len())
        .map(|scenario| cell(scenario, Creation::Async))
        .collect();
    let all_accepted = async_cells.iter().all(|cell| {
        cell.transport_errors == 0 && cell.statuses.keys().all(|status| *status == 202)
    });
    let worst_p99 = async_cells
        .iter()
        .filter_map(|cell| cell.ms(0.99))
        .fold(0.0_f64, f64::max);
    let async_fast = (
        format!(
            "Async creation does not wait for the inventory: 202 for every order, p99 under \
             {ASYNC_P99_LIMIT_MS} ms in every scenario"
        ),
        all_accepted && worst_p99 < ASYNC_P99_LIMIT_MS,
        format!(
            "{}; worst p99 {worst_p99:.2} ms",
            if all_accepted {
                "every async order answered 202".to_owned()
            } else {
                let answers: Vec<String> = async_cells
                    .iter()
                    .map(|cell| cell.statuses_text())
                    .collect();
                format!("async answers: {}", answers.join(" / "))
            }
        ),
    );

    let latest_allowed = Duration::from_millis(SYNC_DEADLINE_MS) + DEADLINE_SLACK;
    let mut cascades = Vec::new();
    let mut cascaded = true;
    for (index, scenario) in scenarios.iter().enumerate().skip(2) {
        let sync = cell(index, Creation::Sync);
        let expected = sync.transport_errors == 0
            && sync
                .statuses
                .keys()
                .all(|status| scenario.sync_answers.contains(status));
        let slowest = sync.ms(1.0).unwrap_or(f64::INFINITY);
        cascaded &= expected && slowest <= latest_allowed.as_secs_f64() * 1000.0;
        cascades.push(format!(
            "{}: {} (slowest {slowest:.0} ms)",
            scenario.name,
            sync.statuses_text()
        ));
    }
    let cascade = (
        format!(
            "Sync errors cascade as the seed's do, never later than the deadline + {} s: 503 \
             while the inventory fails, 504 (or 503 once its circuit opens) past the deadline",
            DEADLINE_SLACK.as_secs()
        ),
        cascaded,
        cascades.join("; "),
    );

    let consistent = (
        "Once the faults are cleared every order ends `confirmed` or `cancelled` and the \
         saga's invariants hold: no stock leaked by a caller who gave up"
            .to_owned(),
        settled_consistently,
        if settled_consistently {
            "every order final, every invariant held".to_owned()
        } else {
            "see the invariants and the orders not final above".to_owned()
        },
    );
    vec![passed_on, async_fast, cascade, consistent]
}
