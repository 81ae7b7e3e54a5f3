//! Outages of the validator, watched through Orderly's admin endpoints: the breaker opening
//! and closing, the backlog draining, and polls repeated in the background for the charts (the
//! `pipeline` command waits with these); and [`observe`], the run the `breaker` and
//! `backlog-recovery` experiments share: a steady load, the validator down for a while, then
//! back.

use crate::api::Api;
use crate::charts::{self, Chart};
use crate::control::{AdminStats, Breaker, BreakerState, Control, FaultMode};
use crate::fault_timeline::{Condition, FaultTimeline, Phase};
use crate::orders_load::{self, Model, OrdersReport, Plan, Stop};
use crate::report::Findings;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// How often the admin endpoints are polled while waiting for the breaker or the drain.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Polls between two progress lines while waiting for the backlog to drain.
const POLLS_PER_PROGRESS_LINE: u32 = 20;
/// The breaker's first open time in an observed outage (spin.toml's default).
pub const BREAKER_OPEN: Duration = Duration::from_millis(1_000);
/// Its longest open time (spin.toml's default).
pub const BREAKER_OPEN_MAX: Duration = Duration::from_millis(4_000);
/// Its probes at once in half-open (spin.toml's default).
pub const HALF_OPEN_PROBES: u64 = 1;
/// The failures in a row that trip it (spin.toml's default).
pub const CONSECUTIVE_FAILURES: u64 = 5;
/// How soon the breaker closes once the validator is back, at the latest: its longest open
/// time, then the sweep (every second) sends the probe that closes it; 2 s for that.
pub const CLOSE_WITHIN: Duration = BREAKER_OPEN_MAX.saturating_add(Duration::from_secs(2));
/// How often the breaker is polled for its chart.
const BREAKER_POLL: Duration = Duration::from_millis(100);
/// How often the pipeline's counters are polled for the backlog's chart.
const STATS_POLL: Duration = Duration::from_millis(250);
/// The longest wait for the breaker to open, and to close.
const BREAKER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for nothing to be processing once the load is over.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// A load of its own before the run, not shown: the app's instances are cold at first.
const WARMUP: Duration = Duration::from_secs(1);
/// Seeds the order mix.
const SEED: u64 = 1;
/// The most connections the load opens.
const MAX_CONNECTIONS: usize = 64;

/// Waiting for nothing to be processing.
pub struct Drain {
    /// When a poll first saw nothing processing; `None` if none did in time.
    pub drained_at: Option<Instant>,
    /// The last counters read.
    pub last: AdminStats,
}

/// Polls until nothing is processing, or until `limit` has passed.
pub async fn wait_drained(control: &Control, limit: Duration) -> anyhow::Result<Drain> {
    let give_up = Instant::now() + limit;
    let mut polls = 0_u32;
    loop {
        let stats = control.stats().await?;
        let now = Instant::now();
        if stats.orders.processing == 0 || now >= give_up {
            return Ok(Drain {
                drained_at: (stats.orders.processing == 0).then_some(now),
                last: stats,
            });
        }
        if polls.is_multiple_of(POLLS_PER_PROGRESS_LINE) {
            eprintln!("  draining: {}", backlog(&stats));
        }
        polls += 1;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The pipeline's backlog in one line.
fn backlog(stats: &AdminStats) -> String {
    format!(
        "{} processing, {} settled; jobs {} due (oldest {} ms), {} deferred, {} leased; {} dead letters",
        stats.orders.processing,
        stats.orders.settled(),
        stats.jobs_due,
        stats
            .oldest_due_age_ms
            .map_or_else(|| "–".to_owned(), |age| age.to_string()),
        stats.jobs_deferred,
        stats.jobs_leased,
        stats.dead_letters
    )
}

/// Polls the breaker until it is seen open since `began`, or until `give_up`; returns when it
/// opened.
pub async fn first_open(
    control: &Control,
    began: SystemTime,
    give_up: Instant,
) -> anyhow::Result<Option<SystemTime>> {
    loop {
        if let Some(since) = opened_since(&control.breaker().await?, began) {
            return Ok(Some(since));
        }
        if Instant::now() >= give_up {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// When `breaker` opened, if it is open and opened at or after `began` (an earlier opening
/// belongs to something else).
fn opened_since(breaker: &Breaker, began: SystemTime) -> Option<SystemTime> {
    (breaker.state == BreakerState::Open && breaker.since >= began).then_some(breaker.since)
}

/// Polls the breaker until it is closed, or until `give_up`; returns since when.
pub async fn wait_closed(
    control: &Control,
    give_up: Instant,
) -> anyhow::Result<Option<SystemTime>> {
    loop {
        let breaker = control.breaker().await?;
        if breaker.state == BreakerState::Closed {
            return Ok(Some(breaker.since));
        }
        if Instant::now() >= give_up {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A delay in whole milliseconds, or a dash when there was none.
pub fn whole_ms(delay_ms: Option<f64>) -> String {
    delay_ms.map_or_else(|| "–".to_owned(), |ms| format!("{ms:.0} ms"))
}

/// `to − from` in milliseconds, negative when `to` is earlier.
pub fn signed_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(after) => after.as_secs_f64() * 1000.0,
        Err(before) => -before.duration().as_secs_f64() * 1000.0,
    }
}

/// The most probes a breaker can let through in `outage` from its first opening, when every
/// probe fails: one per half-open window, `probes_per_window` calls each; the windows come
/// after open periods of `open`, doubling per trip in a row up to `open_max`, each counted from
/// the probe that failed (so no sooner than this).
fn probes_within(
    outage: Duration,
    open: Duration,
    open_max: Duration,
    probes_per_window: u64,
) -> u64 {
    let (mut elapsed, mut period, mut windows) = (Duration::ZERO, open, 0);
    loop {
        elapsed += period;
        if elapsed > outage || period.is_zero() {
            return windows * probes_per_window;
        }
        windows += 1;
        period = (period * 2).min(open_max);
    }
}

/// The `--variable`s that give the app the breaker's settings above, so that the thresholds
/// the experiments derive from them hold whatever spin.toml says.
pub fn breaker_variables() -> Vec<String> {
    vec![
        format!("breaker_open_ms={}", BREAKER_OPEN.as_millis()),
        format!("breaker_open_max_ms={}", BREAKER_OPEN_MAX.as_millis()),
        format!("breaker_half_open_probes={HALF_OPEN_PROBES}"),
        format!("breaker_consecutive_failures={CONSECUTIVE_FAILURES}"),
    ]
}

/// An outage of the validator under a steady load of `POST /orders`.
#[derive(Debug, Clone)]
pub struct OutagePlan {
    /// Orders per second, at fixed intervals (open model), for the whole run.
    pub rate: f64,
    /// Load before the outage.
    pub baseline: Duration,
    /// How long the validator is down.
    pub outage: Duration,
    /// Load after it is back.
    pub after: Duration,
}

impl OutagePlan {
    /// Records the plan in `findings`' configuration.
    pub fn configure(&self, findings: &mut Findings) {
        findings.configure("orders per second", self.rate);
        findings.configure("baseline", format!("{} s", self.baseline.as_secs()));
        findings.configure("outage", format!("{} s", self.outage.as_secs()));
        findings.configure("after the outage", format!("{} s", self.after.as_secs()));
    }

    /// The run in a paragraph of markdown.
    pub fn describe(&self) -> String {
        format!(
            "Orders are sent to `POST /orders` at {:.0}/s at fixed intervals for the whole run \
             (open model: latency counts from each order's intended send time, so a stall \
             shows), after a {} s warm-up at the same rate that is not shown (the app's \
             instances are cold at first). After {} s the simulated validator goes `down` \
             (every call answered 503) for {} s, then back to `normal` for {} s more. The \
             breaker is polled every {} ms and the pipeline's counters every {} ms; each \
             breaker change is timed by the breaker's own record. The breaker opens on \
             {CONSECUTIVE_FAILURES} failures in a row (or on half the calls in its window \
             failing), stays open {} ms, doubling on each trip in a row up to {} ms, then lets \
             {HALF_OPEN_PROBES} probe through.\n",
            self.rate,
            WARMUP.as_secs(),
            self.baseline.as_secs(),
            self.outage.as_secs(),
            self.after.as_secs(),
            BREAKER_POLL.as_millis(),
            STATS_POLL.as_millis(),
            BREAKER_OPEN.as_millis(),
            BREAKER_OPEN_MAX.as_millis(),
        )
    }

    /// The probes the breaker may let through in the rest of the outage once it opened
    /// `opened_after`.
    pub fn probes_allowed(&self, opened_after: Duration) -> u64 {
        probes_within(
            self.outage.saturating_sub(opened_after),
            BREAKER_OPEN,
            BREAKER_OPEN_MAX,
            HALF_OPEN_PROBES,
        )
    }
}

/// What the outage's script saw of the breaker and the validator.
#[derive(Debug, Clone)]
pub struct Outage {
    /// When the validator went back to normal.
    pub back: Instant,
    /// From the validator going down to the breaker's opening.
    pub opened_after_ms: Option<f64>,
    /// Validator calls from the validator going down until the opening was seen.
    pub calls_before_open: u64,
    /// Validator calls from then until the validator was back.
    pub calls_after_open: u64,
    /// Trips during the outage: the first opening, and one per failed probe.
    pub trips: u64,
    /// From the validator being back to the breaker's closing.
    pub closed_after_ms: Option<f64>,
}

/// Everything seen of one [`OutagePlan`] run.
pub struct Observed {
    /// Orders acknowledged in the warm-up.
    pub warmup_acknowledged: u64,
    /// The load's answers.
    pub load: OrdersReport,
    /// The breaker and the validator during the outage.
    pub outage: Outage,
    /// Waiting, after the load, for nothing to be processing.
    pub drain: Drain,
    /// The breaker, polled throughout.
    pub breaker_polls: Vec<(Instant, Breaker)>,
    /// The pipeline's counters, polled throughout.
    pub stats_polls: Vec<(Instant, AdminStats)>,
    /// What was done and seen, when.
    pub timeline: FaultTimeline,
    /// Validator calls from the start of the measured load until nothing was processing.
    pub validator_calls: u64,
}

impl Observed {
    /// Validator calls per order the measured load had acknowledged (1 when every order is
    /// validated with one call; retries and probes add to it).
    pub fn amplification(&self) -> f64 {
        self.validator_calls as f64 / self.load.acknowledged.max(1) as f64
    }

    /// The start of a report's body: what `plan` does, the timeline, and the table headed
    /// `section` with its first row, the amplification.
    pub fn write_head(
        &self,
        plan: &OutagePlan,
        section: &str,
        out: &mut String,
    ) -> std::fmt::Result {
        use std::fmt::Write as _;
        writeln!(out, "{}", plan.describe())?;
        writeln!(out, "## Timeline\n\n{}", self.timeline.markdown())?;
        writeln!(out, "## {section}\n\n| figure | value |\n|---|---|")?;
        writeln!(
            out,
            "| validator calls per order (amplification), the whole run | {:.3} ({} calls, {} \
             orders) |",
            self.amplification(),
            self.validator_calls,
            self.load.acknowledged
        )
    }

    /// Every order acknowledged, the warm-up's included: what the app must validate.
    pub fn acknowledged(&self) -> u64 {
        self.warmup_acknowledged + self.load.acknowledged
    }

    /// The load cut into phases: baseline, validator down, validator normal.
    pub fn phases(&self) -> Vec<Phase> {
        self.timeline.phases(&self.load)
    }

    /// The run's charts: acceptance latency and throughput, the breaker and the backlog.
    pub fn charts(&self) -> anyhow::Result<Vec<Chart>> {
        let mut charts = Vec::from(charts::acceptance(&self.load, &self.timeline)?);
        charts.push(charts::breaker(&self.breaker_polls, &self.timeline)?);
        charts.push(charts::backlog(&self.stats_polls, &self.timeline)?);
        Ok(charts)
    }
}

/// Runs `plan` against the app on `address` (which must have [`breaker_variables`]): the load,
/// the validator taken down and brought back on schedule, the breaker and the counters
/// watched; then waits for nothing to be processing.
pub async fn observe(address: SocketAddr, plan: &OutagePlan) -> anyhow::Result<Observed> {
    let control = Control::new(address);
    let load = Plan {
        address,
        model: Model::Open {
            rate: plan.rate,
            max_connections: MAX_CONNECTIONS,
        },
        stop: Stop::After(plan.baseline + plan.outage + plan.after),
        warmup: Duration::ZERO,
        seed: SEED,
        run: 1,
        api: Api::Orderly,
        progress: false,
    };
    let warmup = orders_load::run(&Plan {
        stop: Stop::After(WARMUP),
        run: 0,
        ..load.clone()
    })
    .await?;
    eprintln!(
        "{:.0} orders/s: {} s baseline, validator down {} s, then {} s more",
        plan.rate,
        plan.baseline.as_secs(),
        plan.outage.as_secs(),
        plan.after.as_secs()
    );
    let calls_at_start = control.validator_calls().await?;
    let mut timeline = FaultTimeline::start();
    let breaker_watch = watch_breaker(control, BREAKER_POLL);
    let stats_watch = watch_stats(control, STATS_POLL);
    let (load, outage) = tokio::join!(
        orders_load::run(&load),
        validator_outage(plan, control, &mut timeline)
    );
    let (load, outage) = (load?, outage?);
    let drain = wait_drained(&control, DRAIN_TIMEOUT).await?;
    if let Some(drained) = drain.drained_at {
        timeline.observe(timeline.secs(drained), "nothing left to validate");
    }
    let validator_calls = control
        .validator_calls()
        .await?
        .saturating_sub(calls_at_start);
    Ok(Observed {
        warmup_acknowledged: warmup.acknowledged,
        load,
        outage,
        drain,
        breaker_polls: breaker_watch.stop().await?,
        stats_polls: stats_watch.stop().await?,
        timeline,
        validator_calls,
    })
}

/// Waits out the baseline, takes the validator down for the outage and brings it back,
/// watching the breaker open and close; records on `timeline` what it did and saw.
async fn validator_outage(
    plan: &OutagePlan,
    control: Control,
    timeline: &mut FaultTimeline,
) -> anyhow::Result<Outage> {
    tokio::time::sleep(plan.baseline).await;
    let calls_before = control.validator_calls().await?;
    let trips_before = control.breaker().await?.trips;
    let began = SystemTime::now();
    let down = timeline.act("validator down", Condition::Faulty);
    control.configure(FaultMode::Down, None).await?;
    eprintln!("validator down");
    let opened = first_open(&control, began, down + BREAKER_TIMEOUT).await?;
    let calls_at_open = control.validator_calls().await?;
    if let Some(since) = opened {
        timeline.observe(timeline.wall_secs(since), "breaker opened");
    }
    tokio::time::sleep_until((down + plan.outage).into()).await;
    let calls_at_end = control.validator_calls().await?;
    let trips = control.breaker().await?.trips.saturating_sub(trips_before);

    let normal = SystemTime::now();
    let back = timeline.act("validator normal", Condition::Healthy);
    control.configure(FaultMode::Normal, None).await?;
    eprintln!("validator normal");
    let closed = wait_closed(&control, back + BREAKER_TIMEOUT).await?;
    if let Some(since) = closed {
        timeline.observe(timeline.wall_secs(since), "breaker closed");
    }
    Ok(Outage {
        back,
        opened_after_ms: opened.map(|since| signed_ms(began, since)),
        calls_before_open: calls_at_open.saturating_sub(calls_before),
        calls_after_open: calls_at_end.saturating_sub(calls_at_open),
        trips,
        closed_after_ms: closed.map(|since| signed_ms(normal, since)),
    })
}

/// A poll of the app repeated in a task of its own until stopped: what each poll saw, and
/// when its answer arrived. A poll that fails (the app busy) is left out.
pub struct Watch<T> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<(Instant, T)>>,
}

impl<T: Send + 'static> Watch<T> {
    /// Starts polling with `poll` every `every` (a slow poll delays the next one).
    pub fn start<Poll, Answer>(every: Duration, mut poll: Poll) -> Self
    where
        Poll: FnMut() -> Answer + Send + 'static,
        Answer: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return seen,
                    _ = ticks.tick() => {}
                }
                if let Ok(answer) = poll().await {
                    seen.push((Instant::now(), answer));
                }
            }
        });
        Self { stop, task }
    }

    /// Stops polling; what the polls saw, oldest first.
    pub async fn stop(self) -> anyhow::Result<Vec<(Instant, T)>> {
        // The task only ends when told to, so it is there to hear it.
        let _ = self.stop.send(());
        Ok(self.task.await?)
    }
}

/// The breaker, polled every `every` until stopped.
fn watch_breaker(control: Control, every: Duration) -> Watch<Breaker> {
    Watch::start(every, move || async move { control.breaker().await })
}

/// The pipeline's counters, polled every `every` until stopped.
fn watch_stats(control: Control, every: Duration) -> Watch<AdminStats> {
    Watch::start(every, move || async move { control.stats().await })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::parse_timestamp;

    #[test]
    fn only_an_opening_after_the_outage_began_counts() {
        let began = parse_timestamp("2026-11-30T10:00:00.000Z").unwrap();
        let breaker = |state, since| Breaker {
            state,
            since: parse_timestamp(since).unwrap(),
            trips: 1,
        };
        let opened = breaker(BreakerState::Open, "2026-11-30T10:00:00.412Z");
        assert_eq!(opened_since(&opened, began), Some(opened.since));
        assert_eq!(signed_ms(began, opened.since), 412.0);
        let stale = breaker(BreakerState::Open, "2026-11-30T09:59:59.000Z");
        assert_eq!(opened_since(&stale, began), None);
        let probing = breaker(BreakerState::HalfOpen, "2026-11-30T10:00:01.000Z");
        assert_eq!(opened_since(&probing, began), None);
    }

    #[test]
    fn delays_read_in_whole_milliseconds() {
        assert_eq!(whole_ms(Some(3_116.6)), "3117 ms");
        assert_eq!(whole_ms(None), "–");
    }

    #[test]
    fn signed_ms_is_negative_when_the_event_came_first() {
        let normal = parse_timestamp("2026-11-30T10:00:05.000Z").unwrap();
        let closed = parse_timestamp("2026-11-30T10:00:04.750Z").unwrap();
        assert_eq!(signed_ms(normal, closed), -250.0);
        assert_eq!(signed_ms(closed, normal), 250.0);
    }

    #[test]
    fn probes_come_after_open_periods_doubling_up_to_the_cap() {
        let (open, open_max) = (Duration::from_secs(1), Duration::from_secs(4));
        let probes =
            |outage_secs| probes_within(Duration::from_secs(outage_secs), open, open_max, 1);
        // Windows at 1, 3, 7, 11, 15, 19 s after the first opening.
        assert_eq!(probes(0), 0);
        assert_eq!(probes(1), 1);
        assert_eq!(probes(2), 1);
        assert_eq!(probes(3), 2);
        assert_eq!(probes(10), 3);
        assert_eq!(probes(20), 6);
        assert_eq!(
            probes_within(Duration::from_secs(20), open, open_max, 3),
            18
        );
        assert_eq!(
            probes_within(Duration::from_secs(5), Duration::ZERO, open_max, 1),
            0,
            "a zero open time does not loop"
        );
    }

    #[tokio::test]
    async fn a_watch_keeps_what_each_poll_saw_until_stopped() {
        let mut polls = 0_u32;
        let watch = Watch::start(Duration::from_millis(5), move || {
            polls += 1;
            let answer = polls;
            async move {
                if answer == 2 {
                    anyhow::bail!("the app was busy")
                }
                Ok(answer)
            }
        });
        tokio::time::sleep(Duration::from_millis(40)).await;
        let seen = watch.stop().await.unwrap();
        let answers: Vec<u32> = seen.iter().map(|(_, answer)| *answer).collect();
        assert!(answers.len() >= 3, "{answers:?}");
        assert_eq!(&answers[..2], [1, 3], "the failed poll is left out");
        assert!(seen.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    }
}
