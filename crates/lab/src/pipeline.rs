//! The order pipeline experiment: `orderly up` serving the real app, measured for
//!
//! 1. acceptance (orders/s and latency of `POST /orders`) under every validator fault mode;
//! 2. validations/s end to end, from the first acknowledged order until nothing is processing;
//! 3. an outage: orders accepted while the validator is down, the breaker opening, the backlog
//!    drained once the validator is back, and no order lost;
//!
//! printed as a markdown report with the goals next to the figures.

use crate::api::Api;
use crate::app::RedisChoice;
use crate::control::{Control, FaultMode};
use crate::orders_load::{self, Model, OrdersReport, Plan, Stop, format_ms};
use crate::outage::{Drain, first_open, signed_ms, wait_closed, wait_drained};
use crate::process::{self, Orderly, Server};
use anyhow::Context as _;
use redis_runner::RedisServer;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The validator's delay in `slow` mode.
const SLOW_DELAY: Duration = Duration::from_millis(2000);
/// Load offered before each acceptance measurement, not counted.
const WARMUP: Duration = Duration::from_secs(1);
/// Seeds the order mix.
const SEED: u64 = 1;
/// The longest wait for nothing to be processing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest wait for the breaker to open, from the start of the outage.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for the breaker to close once the backlog is drained.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the outage's orders may take to be accepted.
const OUTAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `orderly up` may take to stop after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

const ACCEPTED_PER_SECOND_GOAL: Target = Target::AtLeast(5_000.0);
const ACCEPTANCE_P99_GOAL_MS: Target = Target::AtMost(10.0);
const VALIDATIONS_PER_SECOND_GOAL: Target = Target::AtLeast(2_000.0);
const RECOVERY_GOAL_S: Target = Target::AtMost(10.0);
const LOST_ORDERS_GOAL: Target = Target::Exactly(0.0);

/// What the experiment is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Connections of the closed-model generator.
    pub concurrency: usize,
    /// Length of each timed load.
    pub load: Duration,
    /// Orders accepted while the validator is down.
    pub outage_orders: u64,
    /// Who serves Redis.
    pub redis: RedisChoice,
    /// Keep the state dir and print its path.
    pub keep: bool,
}

/// Runs the experiment on a fresh `orderly up` and prints the report.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let manifest = repository().join("spin.toml");
    let orderly = Orderly::locate()?;
    eprintln!("building the components of {}", manifest.display());
    orderly.build(&manifest)?;
    let redis = settings.redis.start()?;
    let state = tempfile::tempdir()?;
    let address = process::free_address()?;
    let flags = app_flags(address, redis.as_ref().map(RedisServer::url).as_deref());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::orderly_on(&orderly, &manifest, state.path(), address, &flags).await?;

    let experiment = Experiment {
        control: Control::new(address),
        address,
        settings: settings.clone(),
        first_run: SystemTime::now()
            .duration_since(UNIX_EPOCH)?
            .as_millis()
            .try_into()?,
    };
    println!("# Order pipeline\n");
    println!(
        "`orderly up` on {address}, Redis: {}; closed-model load, {} connections, {:.0} s per \
         measurement; order mix seed {SEED}.\n",
        match settings.redis {
            RedisChoice::Embedded => "embedded broker",
            RedisChoice::Server => "redis-server",
        },
        settings.concurrency,
        settings.load.as_secs_f64(),
    );
    let acceptance = experiment.acceptance().await?;
    print_acceptance(&acceptance);
    let end_to_end = experiment.end_to_end().await?;
    print_end_to_end(&end_to_end);
    let outage = experiment.outage().await?;
    print_outage(&outage, settings.outage_orders);
    print_goals(&goals(&acceptance, &end_to_end, &outage));

    server.terminate(SHUTDOWN_GRACE).await;
    drop(redis);
    if settings.keep {
        println!("\nState dir kept: {}", state.keep().display());
    }
    Ok(())
}

/// The repository root, where `spin.toml` is.
pub(crate) fn repository() -> PathBuf {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR"));
    lab.ancestors().nth(2).unwrap_or(lab).to_path_buf()
}

/// `orderly up` flags pointing the app at itself on `address`, and at `redis_url` (a
/// `redis-server`) or at the embedded broker.
pub(crate) fn app_flags(address: SocketAddr, redis_url: Option<&str>) -> Vec<String> {
    let origin = format!("http://{address}");
    let mut flags = Vec::new();
    for variable in [
        format!("app_url={origin}"),
        format!("validator_url={origin}/external/validate"),
        format!("validator_origin={origin}"),
    ]
    .into_iter()
    .chain(redis_url.map(|url| format!("redis_url={url}")))
    {
        flags.extend(["--variable".to_owned(), variable]);
    }
    let redis = if redis_url.is_some() {
        "server"
    } else {
        "embedded"
    };
    flags.extend(["--redis".to_owned(), redis.to_owned()]);
    flags
}

/// The validator modes acceptance is measured under, with the delay of each. Slow comes last:
/// its calls stay in flight for the delay after the load stops, and would weigh on the next
/// measurement.
const MODES: [(FaultMode, Option<Duration>); 4] = [
    (FaultMode::Normal, None),
    (FaultMode::Down, None),
    (FaultMode::Error, None),
    (FaultMode::Slow, Some(SLOW_DELAY)),
];
/// The pause between two measurements, for the work the previous one left to settle.
const SETTLE: Duration = Duration::from_secs(2);

fn mode_label(mode: FaultMode, delay: Option<Duration>) -> String {
    match delay {
        Some(delay) => format!("{} ({} ms)", mode.as_str(), delay.as_millis()),
        None => mode.as_str().to_owned(),
    }
}

/// Acceptance under one validator mode.
struct ModeAcceptance {
    label: String,
    report: OrdersReport,
}

/// The end-to-end measurement.
struct EndToEnd {
    load: OrdersReport,
    settled_at_load_end: u64,
    drain: Drain,
}

impl EndToEnd {
    /// Orders settled per second, from the first acknowledged order until nothing was
    /// processing.
    fn validations_per_second(&self) -> Option<f64> {
        let busy = self
            .drain
            .drained_at?
            .saturating_duration_since(self.load.first_acknowledged?);
        Some(self.drain.last.orders.settled() as f64 / busy.as_secs_f64())
    }

    /// Orders settled per second while the load ran.
    fn sustained_per_second(&self) -> f64 {
        self.settled_at_load_end as f64 / self.load.elapsed.as_secs_f64()
    }
}

/// The outage measurement.
struct Outage {
    load: OrdersReport,
    /// From the start of the outage to the breaker's `since` when first seen open.
    opened_after_ms: Option<f64>,
    trips: u64,
    calls_during_outage: u64,
    calls_during_recovery: u64,
    /// From normal mode being set until nothing was processing.
    recovery: Option<Duration>,
    /// From normal mode being set to the breaker's `since` once closed (negative if it was
    /// closed before).
    closed_after_ms: Option<f64>,
    drain: Drain,
}

impl Outage {
    /// Accepted orders the pipeline never settled.
    fn lost(&self) -> i128 {
        i128::from(self.load.acknowledged) - i128::from(self.drain.last.orders.settled())
    }
}

/// One app under test and how to load it.
struct Experiment {
    control: Control,
    address: SocketAddr,
    settings: Settings,
    /// Numbers this run's idempotency keys; each load adds its own offset.
    first_run: u64,
}

impl Experiment {
    fn plan(&self, stop: Stop, warmup: Duration, load_number: u64) -> Plan {
        Plan {
            address: self.address,
            model: Model::Closed {
                connections: self.settings.concurrency,
            },
            stop,
            warmup,
            seed: SEED,
            run: self.first_run + load_number,
            api: Api::Orderly,
            progress: false,
        }
    }

    async fn acceptance(&self) -> anyhow::Result<Vec<ModeAcceptance>> {
        let mut results = Vec::new();
        for (load_number, (mode, delay)) in (0..).zip(MODES) {
            let label = mode_label(mode, delay);
            eprintln!("acceptance, validator {label}");
            self.control.clear_orders().await?;
            self.control.configure(mode, delay).await?;
            tokio::time::sleep(SETTLE).await;
            let plan = self.plan(Stop::After(self.settings.load), WARMUP, load_number);
            let report = orders_load::run(&plan).await?;
            results.push(ModeAcceptance { label, report });
        }
        Ok(results)
    }

    async fn end_to_end(&self) -> anyhow::Result<EndToEnd> {
        eprintln!("end to end, validator normal");
        self.control.clear_orders().await?;
        self.control.configure(FaultMode::Normal, None).await?;
        tokio::time::sleep(SLOW_DELAY + SETTLE).await;
        let plan = self.plan(Stop::After(self.settings.load), Duration::ZERO, 10);
        let load = orders_load::run(&plan).await?;
        let settled_at_load_end = self.control.stats().await?.orders.settled();
        let drain = wait_drained(&self.control, DRAIN_TIMEOUT).await?;
        Ok(EndToEnd {
            load,
            settled_at_load_end,
            drain,
        })
    }

    async fn outage(&self) -> anyhow::Result<Outage> {
        let orders = self.settings.outage_orders;
        eprintln!("outage: {orders} orders while the validator is down");
        self.control.clear_orders().await?;
        self.control.configure(FaultMode::Down, None).await?;
        let calls_before = self.control.validator_calls().await?;
        let trips_before = self.control.breaker().await?.trips;
        let (began, began_instant) = (SystemTime::now(), Instant::now());

        let plan = self.plan(Stop::Acknowledged(orders), Duration::ZERO, 20);
        let (load, opened) = tokio::join!(
            async {
                tokio::time::timeout(OUTAGE_LOAD_TIMEOUT, orders_load::run(&plan))
                    .await
                    .with_context(|| {
                        format!("{orders} orders were not accepted within {OUTAGE_LOAD_TIMEOUT:?}")
                    })?
            },
            first_open(&self.control, began, began_instant + OPEN_TIMEOUT),
        );
        let (load, opened) = (load?, opened?);
        let calls_in_outage = self.control.validator_calls().await?;
        let trips = self
            .control
            .breaker()
            .await?
            .trips
            .saturating_sub(trips_before);

        eprintln!("recovery: validator normal");
        let (normal, normal_instant) = (SystemTime::now(), Instant::now());
        self.control.configure(FaultMode::Normal, None).await?;
        let drain = wait_drained(&self.control, DRAIN_TIMEOUT).await?;
        let calls_after_recovery = self.control.validator_calls().await?;
        let closed = wait_closed(&self.control, Instant::now() + CLOSE_TIMEOUT).await?;
        Ok(Outage {
            load,
            opened_after_ms: opened.map(|since| signed_ms(began, since)),
            trips,
            calls_during_outage: calls_in_outage.saturating_sub(calls_before),
            calls_during_recovery: calls_after_recovery.saturating_sub(calls_in_outage),
            recovery: drain
                .drained_at
                .map(|at| at.saturating_duration_since(normal_instant)),
            closed_after_ms: closed.map(|since| signed_ms(normal, since)),
            drain,
        })
    }
}

fn print_acceptance(results: &[ModeAcceptance]) {
    println!("## 1. Acceptance per validator mode\n");
    println!("| validator | accepted orders/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for ModeAcceptance { label, report } in results {
        println!(
            "| {label} | {:.0} | {} | {} | {} | {} | {} |",
            report.per_second(),
            format_ms(report.latency_ms(0.5)),
            format_ms(report.latency_ms(0.99)),
            format_ms(report.latency_ms(0.999)),
            format_ms(report.max_ms()),
            report.errors
        );
    }
    println!();
}

fn print_end_to_end(measured: &EndToEnd) {
    let load = &measured.load;
    let orders = measured.drain.last.orders;
    println!("## 2. End-to-end validations (validator normal)\n");
    println!("| figure | value |\n|---|---|");
    println!(
        "| orders accepted | {} in {:.2} s ({:.0}/s; errors: {}) |",
        load.acknowledged,
        load.elapsed.as_secs_f64(),
        load.per_second(),
        load.errors
    );
    println!(
        "| settled by the end of the load | {} (sustained {:.0} validations/s) |",
        measured.settled_at_load_end,
        measured.sustained_per_second()
    );
    match (measured.drain.drained_at, load.first_acknowledged) {
        (Some(drained), Some(first)) => println!(
            "| nothing processing | {:.2} s after the first acknowledged order |",
            drained.saturating_duration_since(first).as_secs_f64()
        ),
        _ => println!(
            "| nothing processing | not within {} s ({} still processing) |",
            DRAIN_TIMEOUT.as_secs(),
            orders.processing
        ),
    }
    println!(
        "| validations/s end to end | {} |",
        measured
            .validations_per_second()
            .map_or_else(|| "–".to_owned(), |rate| format!("{rate:.0}"))
    );
    println!(
        "| settled: validated / rejected / failed | {} / {} / {} |\n",
        orders.validated, orders.rejected, orders.failed
    );
}

fn print_outage(outage: &Outage, orders: u64) {
    let load = &outage.load;
    let counts = outage.drain.last.orders;
    println!("## 3. Outage and recovery (validator down for {orders} orders)\n");
    println!("| figure | value |\n|---|---|");
    println!(
        "| orders accepted while down | {} in {:.2} s ({:.0}/s), p99 {} ms, errors: {} |",
        load.acknowledged,
        load.elapsed.as_secs_f64(),
        load.per_second(),
        format_ms(load.latency_ms(0.99)),
        load.errors
    );
    match outage.opened_after_ms {
        Some(ms) => println!("| breaker opened | {ms:.0} ms after the outage began |"),
        None => println!(
            "| breaker opened | did not open within {} s |",
            OPEN_TIMEOUT.as_secs()
        ),
    }
    println!("| breaker trips during the outage | {} |", outage.trips);
    println!(
        "| validator calls during the outage | {} |",
        outage.calls_during_outage
    );
    match outage.recovery {
        Some(recovery) => println!(
            "| recovery: validator normal → nothing processing | {:.2} s |",
            recovery.as_secs_f64()
        ),
        None => println!(
            "| recovery: validator normal → nothing processing | not within {} s ({} still processing) |",
            DRAIN_TIMEOUT.as_secs(),
            counts.processing
        ),
    }
    match outage.closed_after_ms {
        Some(ms) => println!("| breaker closed | {ms:.0} ms after the validator was back |"),
        None => println!(
            "| breaker closed | not within {} s of the drain |",
            CLOSE_TIMEOUT.as_secs()
        ),
    }
    println!(
        "| validator calls during recovery | {} |",
        outage.calls_during_recovery
    );
    if let (Some(recovery), Some(closed_ms)) = (outage.recovery, outage.closed_after_ms) {
        let draining = recovery.as_secs_f64() - closed_ms.max(0.0) / 1000.0;
        if draining > 0.0 {
            println!(
                "| backlog drained after the breaker closed | {:.0} validations/s ({} orders in {draining:.2} s) |",
                outage.load.acknowledged as f64 / draining,
                outage.load.acknowledged
            );
        }
    }
    println!(
        "| settled: validated / rejected / failed | {} / {} / {} ({} dead letters) |",
        counts.validated, counts.rejected, counts.failed, outage.drain.last.dead_letters
    );
    println!("| lost (accepted − settled) | {} |\n", outage.lost());
}

/// A goal's bound.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// The figure must be this or more.
    AtLeast(f64),
    /// The figure must be this or less.
    AtMost(f64),
    /// The figure must be this.
    Exactly(f64),
}

impl Target {
    /// Whether `measured` meets it; a figure that could not be measured does not.
    fn met_by(self, measured: Option<f64>) -> bool {
        match (self, measured) {
            (Self::AtLeast(bound), Some(figure)) => figure >= bound,
            (Self::AtMost(bound), Some(figure)) => figure <= bound,
            (Self::Exactly(bound), Some(figure)) => figure == bound,
            (_, None) => false,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtLeast(bound) => write!(f, "≥ {bound}"),
            Self::AtMost(bound) => write!(f, "≤ {bound}"),
            Self::Exactly(bound) => write!(f, "= {bound}"),
        }
    }
}

/// What a goal's figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    OrdersPerSecond,
    ValidationsPerSecond,
    Milliseconds,
    Seconds,
    Orders,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Self::OrdersPerSecond => "orders/s",
            Self::ValidationsPerSecond => "validations/s",
            Self::Milliseconds => "ms",
            Self::Seconds => "s",
            Self::Orders => "orders",
        }
    }

    fn format(self, figure: f64) -> String {
        match self {
            Self::Milliseconds | Self::Seconds => format!("{figure:.2} {}", self.name()),
            _ => format!("{figure:.0} {}", self.name()),
        }
    }
}

/// A goal with the figure measured for it.
#[derive(Debug, Clone, PartialEq)]
struct GoalCheck {
    goal: String,
    target: Target,
    unit: Unit,
    measured: Option<f64>,
}

impl GoalCheck {
    fn new(goal: String, target: Target, unit: Unit, measured: Option<f64>) -> Self {
        Self {
            goal,
            target,
            unit,
            measured,
        }
    }

    fn verdict(&self) -> &'static str {
        if self.target.met_by(self.measured) {
            "PASS"
        } else {
            "MISS"
        }
    }
}

fn goals(acceptance: &[ModeAcceptance], end_to_end: &EndToEnd, outage: &Outage) -> Vec<GoalCheck> {
    let mut checks = Vec::new();
    for ModeAcceptance { label, report } in acceptance {
        checks.push(GoalCheck::new(
            format!("accepted orders/s, validator {label}"),
            ACCEPTED_PER_SECOND_GOAL,
            Unit::OrdersPerSecond,
            Some(report.per_second()),
        ));
        checks.push(GoalCheck::new(
            format!("acceptance p99, validator {label}"),
            ACCEPTANCE_P99_GOAL_MS,
            Unit::Milliseconds,
            report.latency_ms(0.99),
        ));
    }
    checks.push(GoalCheck::new(
        "validations/s end to end".to_owned(),
        VALIDATIONS_PER_SECOND_GOAL,
        Unit::ValidationsPerSecond,
        end_to_end.validations_per_second(),
    ));
    checks.push(GoalCheck::new(
        "recovery after the outage".to_owned(),
        RECOVERY_GOAL_S,
        Unit::Seconds,
        outage.recovery.map(|recovery| recovery.as_secs_f64()),
    ));
    checks.push(GoalCheck::new(
        "orders lost in the outage".to_owned(),
        LOST_ORDERS_GOAL,
        Unit::Orders,
        Some(outage.lost() as f64),
    ));
    checks
}

fn print_goals(checks: &[GoalCheck]) {
    println!("## Goals\n");
    println!("| goal | target | measured | verdict |\n|---|---|---:|---|");
    for check in checks {
        let measured = check.measured.map_or_else(
            || "not measured".to_owned(),
            |figure| check.unit.format(figure),
        );
        println!(
            "| {} | {} {} | {measured} | {} |",
            check.goal,
            check.target,
            check.unit.name(),
            check.verdict()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_pass_on_their_bound_and_miss_past_it_or_unmeasured() {
        assert!(ACCEPTED_PER_SECOND_GOAL.met_by(Some(5_000.0)));
        assert!(ACCEPTED_PER_SECOND_GOAL.met_by(Some(12_000.0)));
        assert!(!ACCEPTED_PER_SECOND_GOAL.met_by(Some(4_999.9)));
        assert!(ACCEPTANCE_P99_GOAL_MS.met_by(Some(10.0)));
        assert!(!ACCEPTANCE_P99_GOAL_MS.met_by(Some(10.01)));
        assert!(RECOVERY_GOAL_S.met_by(Some(0.0)));
        assert!(!RECOVERY_GOAL_S.met_by(None), "a drain that timed out");
        assert!(!ACCEPTANCE_P99_GOAL_MS.met_by(Some(f64::NAN)));
        assert!(LOST_ORDERS_GOAL.met_by(Some(0.0)));
        assert!(!LOST_ORDERS_GOAL.met_by(Some(1.0)));
        assert!(
            !LOST_ORDERS_GOAL.met_by(Some(-1.0)),
            "more settled than accepted"
        );
    }

    #[test]
    fn verdicts_read_pass_or_miss() {
        let check = |measured| {
            GoalCheck::new(
                "validations/s end to end".to_owned(),
                VALIDATIONS_PER_SECOND_GOAL,
                Unit::ValidationsPerSecond,
                measured,
            )
            .verdict()
        };
        assert_eq!(check(Some(2_400.0)), "PASS");
        assert_eq!(check(Some(1_999.0)), "MISS");
        assert_eq!(check(None), "MISS");
        assert_eq!(VALIDATIONS_PER_SECOND_GOAL.to_string(), "≥ 2000");
        assert_eq!(ACCEPTANCE_P99_GOAL_MS.to_string(), "≤ 10");
        assert_eq!(LOST_ORDERS_GOAL.to_string(), "= 0");
        assert_eq!(Unit::Milliseconds.format(3.456), "3.46 ms");
        assert_eq!(Unit::OrdersPerSecond.format(5_123.4), "5123 orders/s");
    }

    #[test]
    fn the_app_points_at_itself_and_at_the_chosen_redis() {
        let address: SocketAddr = "127.0.0.1:4100".parse().unwrap();
        let embedded = app_flags(address, None).join(" ");
        assert_eq!(
            embedded,
            "--variable app_url=http://127.0.0.1:4100 \
             --variable validator_url=http://127.0.0.1:4100/external/validate \
             --variable validator_origin=http://127.0.0.1:4100 --redis embedded"
        );
        let server = app_flags(address, Some("redis://127.0.0.1:6400")).join(" ");
        assert!(
            server.ends_with("--variable redis_url=redis://127.0.0.1:6400 --redis server"),
            "{server}"
        );
    }

    #[test]
    fn slow_mode_is_labelled_with_its_delay() {
        assert_eq!(
            mode_label(FaultMode::Slow, Some(SLOW_DELAY)),
            "slow (2000 ms)"
        );
        assert_eq!(mode_label(FaultMode::Down, None), "down");
    }
}
