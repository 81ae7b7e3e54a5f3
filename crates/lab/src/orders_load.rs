//! A load generator for `POST /orders`, over HTTP/1.1 keep-alive, in one of two models:
//!
//! - closed: N connections, each sending its next order when the previous answer arrives;
//! - open: orders scheduled at a fixed rate whatever the answers, each one's latency measured
//!   from its intended send time, so a stalled server shows as latency instead of as fewer
//!   requests (coordinated omission).
//!
//! The order mix comes from a seeded generator, so a seed always offers the same orders.
//! Latencies of acknowledged (202) orders go into an HDR histogram; every other answer is an
//! error, counted by status class, and transport errors apart. Answers are also counted by the
//! second they arrived in, for the run's course over time.

use crate::api::Api;
use crate::history::{Attempt, AttemptOutcome};
use crate::load;
use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Quantities the orders ask for.
pub const QUANTITIES: RangeInclusive<u32> = 1..=10;

/// The highest latency the histogram tells apart (longer ones are recorded as this), in µs.
const LATENCY_CEILING_US: u64 = 3_600_000_000;

/// Significant figures of the whole run's latency histogram.
const RUN_PRECISION: u8 = 3;

/// Significant figures of each second's latency histogram: 1 % is plenty for a chart, and
/// keeps a second's histogram at a few KiB instead of hundreds.
const SECOND_PRECISION: u8 = 2;

/// The timer's tick: tokio wakes a sleeper on the first tick at or after its deadline, so
/// orders are released up to one tick early (and timed from when they were sent, if earlier
/// than intended) rather than up to one tick late, which would count as latency.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// How long a worker waits before trying to reconnect after a refused connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub enum Model {
    /// This many connections, each sending its next order when the previous answer arrives.
    Closed {
        /// Concurrent keep-alive connections.
        connections: usize,
    },
    /// Orders at fixed intervals, over as many connections as the answers need.
    Open {
        /// Orders per second.
        rate: f64,
        /// The most connections opened at once; orders due while all are busy wait for one
        /// (and that wait counts in their latency).
        max_connections: usize,
    },
}

/// When a run ends (after the warm-up).
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long: nothing is sent after it, answers still on their way are counted.
    After(Duration),
    /// Once this many orders were acknowledged.
    Acknowledged(u64),
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server.
    pub address: SocketAddr,
    /// How the load is offered.
    pub model: Model,
    /// When it ends.
    pub stop: Stop,
    /// Load offered first and not counted.
    pub warmup: Duration,
    /// Seeds the order mix.
    pub seed: u64,
    /// Tells this run's idempotency keys from other runs' with the same seed.
    pub run: u64,
    /// The API orders are created with.
    pub api: Api,
    /// Whether a live progress line is drawn (on standard error, when it is a terminal).
    pub progress: bool,
}

/// One order to send.
#[derive(Debug, Clone)]
pub struct Order {
    /// Its `idempotency-key` header: `lab-<seed>-<run>-<n>`.
    pub idempotency_key: HeaderValue,
    /// The order id it names, where the API lets the client name it (the key).
    pub order_id: Option<String>,
    /// Its JSON body.
    pub body: Bytes,
}

/// The orders of a run: products and quantities drawn from a generator seeded with `seed`,
/// idempotency keys numbered from 0.
pub struct OrderMix {
    draws: fastrand::Rng,
    seed: u64,
    run: u64,
    api: Api,
    issued: u64,
}

impl OrderMix {
    /// The mix for `seed`, with the keys of run `run`, in `api`'s shape.
    pub fn new(seed: u64, run: u64, api: Api) -> Self {
        Self {
            draws: fastrand::Rng::with_seed(seed),
            seed,
            run,
            api,
            issued: 0,
        }
    }

    /// The next order.
    pub fn next_order(&mut self) -> Order {
        let product = self.draws.usize(..self.api.products());
        let quantity = self.draws.u32(QUANTITIES);
        let key = format!("lab-{}-{}-{}", self.seed, self.run, self.issued);
        self.issued += 1;
        Order {
            body: self.api.body(&key, product, quantity),
            order_id: self.api.names_order(&key),
            idempotency_key: HeaderValue::try_from(key)
                .expect("digits and dashes make a valid header value"),
        }
    }
}

/// The open model's timetable: order `n` is due `n / rate` seconds after the start, computed
/// from the start each time so rounding never accumulates.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// `rate` orders per second (finite and positive) from `start`.
    pub fn new(start: Instant, rate: f64) -> Self {
        Self { start, rate }
    }

    /// When order `n` (from 0) is meant to be sent.
    pub fn intended(&self, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(n as f64 / self.rate)
    }
}

/// Where an open-model order's latency counts from: its intended send time, so waiting for a
/// connection or for the generator counts; or when it was actually sent, if that was earlier.
pub fn latency_origin(intended: Instant, sent: Instant) -> Instant {
    intended.min(sent)
}

/// How one order was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 202 Accepted.
    Acknowledged,
    /// Any other status.
    Refused(StatusCode),
    /// No answer: the connection could not be made, broke, or the body did not arrive.
    Transport,
}

impl Outcome {
    /// The outcome of an answer with `status` from an API whose `success` acknowledges.
    pub fn answered(status: StatusCode, success: StatusCode) -> Self {
        if status == success {
            Self::Acknowledged
        } else {
            Self::Refused(status)
        }
    }

    /// How the history keeps it.
    fn as_attempt(self) -> AttemptOutcome {
        match self {
            Self::Acknowledged => AttemptOutcome::Acknowledged,
            Self::Refused(status) => AttemptOutcome::Refused {
                status: status.as_u16(),
            },
            Self::Transport => AttemptOutcome::Transport,
        }
    }
}

/// Orders that were not acknowledged, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Errors {
    /// 4xx answers.
    pub client: u64,
    /// 5xx answers.
    pub server: u64,
    /// Answers with any other status than 202 (1xx, 2xx, 3xx).
    pub unexpected: u64,
    /// No answer.
    pub transport: u64,
}

impl Errors {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Acknowledged => {}
            Outcome::Refused(status) if status.is_client_error() => self.client += 1,
            Outcome::Refused(status) if status.is_server_error() => self.server += 1,
            Outcome::Refused(_) => self.unexpected += 1,
            Outcome::Transport => self.transport += 1,
        }
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "4xx {}, 5xx {}, transport {}",
            self.client, self.server, self.transport
        )?;
        if self.unexpected > 0 {
            write!(f, ", other status {}", self.unexpected)?;
        }
        Ok(())
    }
}

/// What a run measured, warm-up excluded.
#[derive(Debug, Clone)]
pub struct OrdersReport {
    /// Orders answered 202.
    pub acknowledged: u64,
    /// Orders that were not.
    pub errors: Errors,
    /// From the end of the warm-up to the last counted answer.
    pub elapsed: Duration,
    /// When the first counted 202 arrived.
    pub first_acknowledged: Option<Instant>,
    /// When counting began: the run's start, after the warm-up.
    pub measured_from: Instant,
    /// The answers by the second they arrived in: element `n` holds those that arrived `n` to
    /// `n + 1` seconds after [`OrdersReport::measured_from`] (a second without any is empty).
    pub by_second: Vec<Window>,
    /// Latencies of acknowledged orders, in µs, from their (intended) send time.
    latencies: Histogram<u64>,
    /// Every attempt, warm-up included, in the order answered.
    pub history: Vec<Attempt>,
}

impl OrdersReport {
    /// Acknowledged orders per second.
    pub fn per_second(&self) -> f64 {
        if self.acknowledged == 0 {
            return 0.0;
        }
        self.acknowledged as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `quantile` (0–1) in milliseconds; `None` when nothing was acknowledged.
    pub fn latency_ms(&self, quantile: f64) -> Option<f64> {
        (!self.latencies.is_empty())
            .then(|| self.latencies.value_at_quantile(quantile) as f64 / 1000.0)
    }

    /// The highest latency in milliseconds; `None` when nothing was acknowledged.
    pub fn max_ms(&self) -> Option<f64> {
        (!self.latencies.is_empty()).then(|| self.latencies.max() as f64 / 1000.0)
    }

    /// The answers that arrived in `seconds` (counted from [`OrdersReport::measured_from`]),
    /// as one window; seconds past the run's last answer add nothing.
    pub fn window(&self, seconds: Range<usize>) -> Window {
        let end = seconds.end.min(self.by_second.len());
        let mut merged = Window::new();
        for second in &self.by_second[seconds.start.min(end)..end] {
            merged.add(second);
        }
        merged
    }
}

#[cfg(test)]
impl OrdersReport {
    /// The report of a run counted from `measured_from` whose orders were each acknowledged
    /// `latency` after being sent, at `answered`: for other modules' tests.
    pub fn acknowledged_at(
        measured_from: Instant,
        latency: Duration,
        answered: &[Instant],
    ) -> Self {
        let mut tally = Tally::new(measured_from);
        for at in answered {
            tally.record(Outcome::Acknowledged, *at - latency, *at);
        }
        tally.into_report()
    }
}

/// The answers that arrived in a stretch of a run: one second, or several merged.
#[derive(Debug, Clone)]
pub struct Window {
    /// Orders answered 202 in it.
    pub acknowledged: u64,
    /// Orders answered otherwise, or not at all, in it.
    pub errors: u64,
    /// Latencies of its acknowledged orders, in µs, to [`SECOND_PRECISION`] figures.
    latencies: Histogram<u64>,
}

impl Window {
    fn new() -> Self {
        Self {
            acknowledged: 0,
            errors: 0,
            latencies: Histogram::new_with_bounds(1, LATENCY_CEILING_US, SECOND_PRECISION)
                .expect("1 µs to an hour at 2 significant figures is a valid histogram"),
        }
    }

    /// The latency at `quantile` (0–1) in milliseconds; `None` when nothing was acknowledged.
    pub fn latency_ms(&self, quantile: f64) -> Option<f64> {
        (!self.latencies.is_empty())
            .then(|| self.latencies.value_at_quantile(quantile) as f64 / 1000.0)
    }

    /// The highest latency in milliseconds; `None` when nothing was acknowledged.
    pub fn max_ms(&self) -> Option<f64> {
        (!self.latencies.is_empty()).then(|| self.latencies.max() as f64 / 1000.0)
    }

    /// Counts `other`'s answers in this window too.
    fn add(&mut self, other: &Window) {
        self.acknowledged += other.acknowledged;
        self.errors += other.errors;
        self.latencies
            .add(&other.latencies)
            .expect("windows share their bounds, so one always fits in another");
    }
}

/// A latency in milliseconds, or a dash when there is none.
pub fn format_ms(latency: Option<f64>) -> String {
    latency.map_or_else(|| "–".to_owned(), |ms| format!("{ms:.2}"))
}

impl fmt::Display for OrdersReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "acknowledged {} in {:.2} s: {:.0} orders/s",
            self.acknowledged,
            self.elapsed.as_secs_f64(),
            self.per_second()
        )?;
        writeln!(
            f,
            "latency (ms): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            format_ms(self.latency_ms(0.5)),
            format_ms(self.latency_ms(0.9)),
            format_ms(self.latency_ms(0.99)),
            format_ms(self.latency_ms(0.999)),
            format_ms(self.max_ms())
        )?;
        write!(f, "errors: {}", self.errors)
    }
}

/// Answers as they arrive, counted from `measured_from`; becomes the report.
struct Tally {
    measured_from: Instant,
    acknowledged: u64,
    errors: Errors,
    first_acknowledged: Option<Instant>,
    last_answer: Option<Instant>,
    latencies: Histogram<u64>,
    by_second: Vec<Window>,
}

impl Tally {
    fn new(measured_from: Instant) -> Self {
        Self {
            measured_from,
            acknowledged: 0,
            errors: Errors::default(),
            first_acknowledged: None,
            last_answer: None,
            latencies: Histogram::new_with_bounds(1, LATENCY_CEILING_US, RUN_PRECISION)
                .expect("1 µs to an hour at 3 significant figures is a valid histogram"),
            by_second: Vec::new(),
        }
    }

    /// Counts an order answered (or given up on) at `answered`, its latency counted from
    /// `origin`.
    fn record(&mut self, outcome: Outcome, origin: Instant, answered: Instant) {
        self.last_answer = self.last_answer.max(Some(answered));
        let second = self.second_of(answered);
        if outcome != Outcome::Acknowledged {
            second.errors += 1;
            self.errors.count(outcome);
            return;
        }
        let latency = answered.saturating_duration_since(origin);
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        second.acknowledged += 1;
        second.latencies.saturating_record(latency_us);
        self.acknowledged += 1;
        self.first_acknowledged = Some(
            self.first_acknowledged
                .map_or(answered, |first| first.min(answered)),
        );
        self.latencies.saturating_record(latency_us);
    }

    /// The window of the second `at` falls in, the seconds before it made if needed.
    fn second_of(&mut self, at: Instant) -> &mut Window {
        let index = at.saturating_duration_since(self.measured_from).as_secs();
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        if self.by_second.len() <= index {
            self.by_second.resize_with(index + 1, Window::new);
        }
        &mut self.by_second[index]
    }

    fn into_report(self) -> OrdersReport {
        OrdersReport {
            acknowledged: self.acknowledged,
            errors: self.errors,
            elapsed: self.last_answer.map_or(Duration::ZERO, |last| {
                last.saturating_duration_since(self.measured_from)
            }),
            first_acknowledged: self.first_acknowledged,
            measured_from: self.measured_from,
            by_second: self.by_second,
            latencies: self.latencies,
            history: Vec::new(),
        }
    }
}

/// With `Stop::Acknowledged`, how many more counted orders may be sent: each is claimed before
/// it is sent and given back if it is not acknowledged, so the run ends on exactly the target.
struct Quota {
    target: Option<u64>,
    claimed: AtomicU64,
    acknowledged: AtomicU64,
}

impl Quota {
    fn new(target: Option<u64>) -> Self {
        Self {
            target,
            claimed: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
        }
    }

    /// Claims one order; false when every order still needed is already on its way.
    fn try_claim(&self) -> bool {
        let Some(target) = self.target else {
            return true;
        };
        self.claimed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |claimed| {
                (claimed < target).then_some(claimed + 1)
            })
            .is_ok()
    }

    /// Settles a claimed order: kept if acknowledged, given back otherwise.
    fn settle(&self, acknowledged: bool) {
        if acknowledged {
            self.acknowledged.fetch_add(1, Ordering::SeqCst);
        } else if self.target.is_some() {
            self.claimed.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether the target was reached.
    fn is_met(&self) -> bool {
        self.target
            .is_some_and(|target| self.acknowledged.load(Ordering::SeqCst) >= target)
    }
}

/// What every connection of a run shares.
struct Shared {
    address: SocketAddr,
    host: HeaderValue,
    api: Api,
    mix: Mutex<OrderMix>,
    quota: Quota,
    tally: Mutex<Tally>,
    /// When the run started: attempts are timed from it.
    start: Instant,
    /// Every attempt, warm-up included (its orders exist all the same).
    history: Mutex<Record>,
}

/// The attempts so far, and those not acknowledged by cause, kept as they arrive so the
/// progress line reads them without going over every attempt.
#[derive(Default)]
struct Record {
    attempts: Vec<Attempt>,
    errors: Errors,
}

impl Shared {
    fn next_order(&self) -> Order {
        self.mix
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_order()
    }

    /// Keeps an attempt, counted or not, in the history.
    fn remember(&self, order: &Order, answer: &Answer, sent: Instant, answered: Instant) {
        let attempt = Attempt {
            key: order
                .idempotency_key
                .to_str()
                .expect("keys are ASCII")
                .to_owned(),
            order_id: answer.order_id.clone().or_else(|| order.order_id.clone()),
            sent_ms: u64::try_from(sent.saturating_duration_since(self.start).as_millis())
                .unwrap_or(u64::MAX),
            latency_us: (answer.outcome != Outcome::Transport).then(|| {
                u64::try_from(answered.saturating_duration_since(sent).as_micros())
                    .unwrap_or(u64::MAX)
            }),
            outcome: answer.outcome.as_attempt(),
        };
        let mut record = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        record.attempts.push(attempt);
        record.errors.count(answer.outcome);
    }

    /// The progress line: attempts sent, acknowledged and failed by class (warm-up included),
    /// acknowledgements per second since `before` (`(when, acknowledged then)`), and the p99
    /// of the counted ones.
    fn progress_line(&self, before: &mut (Instant, u64)) -> String {
        let (sent, errors) = {
            let record = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            (record.attempts.len() as u64, record.errors)
        };
        let failed = errors.client + errors.server + errors.unexpected + errors.transport;
        let acknowledged = sent - failed;
        let p99 = {
            let tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
            (!tally.latencies.is_empty())
                .then(|| tally.latencies.value_at_quantile(0.99) as f64 / 1000.0)
        };
        let now = Instant::now();
        let seconds = now
            .saturating_duration_since(before.0)
            .as_secs_f64()
            .max(1e-3);
        let rate = acknowledged.saturating_sub(before.1) as f64 / seconds;
        *before = (now, acknowledged);
        format!(
            "sent {sent}  acknowledged {acknowledged}  errors: {errors}  {rate:.0}/s  p99 {} ms",
            format_ms(p99)
        )
    }

    /// Records a counted order's outcome.
    fn settle(&self, outcome: Outcome, origin: Instant, answered: Instant) {
        self.quota.settle(outcome == Outcome::Acknowledged);
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(outcome, origin, answered);
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// How often the progress line is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// Draws the progress line of a run until the returned task is aborted.
fn draw_progress(shared: Arc<Shared>) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .expect("a valid progress template"),
    );
    let drawn = bar.clone();
    let ticker = tokio::spawn(async move {
        let mut before = (Instant::now(), 0);
        loop {
            tokio::time::sleep(PROGRESS_TICK).await;
            drawn.set_message(shared.progress_line(&mut before));
            drawn.tick();
        }
    });
    (bar, ticker)
}

/// Runs `plan` and reports what it measured.
pub async fn run(plan: &Plan) -> anyhow::Result<OrdersReport> {
    let start = Instant::now();
    let measured_from = start + plan.warmup;
    let shared = Arc::new(Shared {
        address: plan.address,
        host: HeaderValue::try_from(plan.address.to_string())?,
        api: plan.api,
        mix: Mutex::new(OrderMix::new(plan.seed, plan.run, plan.api)),
        quota: Quota::new(match plan.stop {
            Stop::After(_) => None,
            Stop::Acknowledged(orders) => Some(orders),
        }),
        tally: Mutex::new(Tally::new(measured_from)),
        start,
        history: Mutex::new(Record::default()),
    });
    let progress = plan.progress.then(|| draw_progress(Arc::clone(&shared)));
    let deadline = match plan.stop {
        Stop::After(duration) => Some(measured_from + duration),
        Stop::Acknowledged(_) => None,
    };
    match plan.model {
        Model::Closed { connections } => {
            let mut workers = JoinSet::new();
            for _ in 0..connections {
                let sender = load::connect(plan.address)
                    .await
                    .with_context(|| format!("cannot connect to {}", plan.address))?;
                workers.spawn(closed_connection(
                    Arc::clone(&shared),
                    sender,
                    measured_from,
                    deadline,
                ));
            }
            while let Some(worker) = workers.join_next().await {
                worker?;
            }
        }
        Model::Open {
            rate,
            max_connections,
        } => {
            let schedule = Schedule::new(start, rate);
            open_schedule(&shared, schedule, max_connections, measured_from, deadline).await?;
        }
    }
    let tally = std::mem::replace(
        &mut *shared.tally.lock().unwrap_or_else(PoisonError::into_inner),
        Tally::new(measured_from),
    );
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let mut report = tally.into_report();
    report.history = std::mem::take(
        &mut shared
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .attempts,
    );
    Ok(report)
}

/// One connection of the closed model.
async fn closed_connection(
    shared: Arc<Shared>,
    sender: Sender,
    measured_from: Instant,
    deadline: Option<Instant>,
) {
    let mut sender = Some(sender);
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|end| now >= end) || shared.quota.is_met() {
            return;
        }
        let counted = now >= measured_from;
        let Some(connection) = sender.as_mut() else {
            sender = load::connect(shared.address).await.ok();
            if sender.is_none() {
                if counted {
                    shared
                        .tally
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record(Outcome::Transport, now, Instant::now());
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
            continue;
        };
        if counted && !shared.quota.try_claim() {
            return;
        }
        let order = shared.next_order();
        let sent = Instant::now();
        let answer = send_order(connection, &shared.host, shared.api, &order).await;
        let answered = Instant::now();
        shared.remember(&order, &answer, sent, answered);
        let outcome = answer.outcome;
        if counted {
            shared.settle(outcome, sent, answered);
        }
        if outcome == Outcome::Transport {
            sender = None;
        }
    }
}

/// Idle connections of the open model, and the limit on how many exist.
struct Pool {
    idle: Mutex<Vec<Sender>>,
    slots: Semaphore,
}

impl Pool {
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_back(&self, sender: Sender) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
    }
}

/// The open model: releases each order at its intended time, whatever is still in flight.
async fn open_schedule(
    shared: &Arc<Shared>,
    schedule: Schedule,
    max_connections: usize,
    measured_from: Instant,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let pool = Arc::new(Pool {
        idle: Mutex::new(vec![
            load::connect(shared.address)
                .await
                .with_context(|| format!("cannot connect to {}", shared.address))?,
        ]),
        slots: Semaphore::new(max_connections),
    });
    let mut in_flight = JoinSet::new();
    for n in 0.. {
        let intended = schedule.intended(n);
        if deadline.is_some_and(|end| intended >= end) || shared.quota.is_met() {
            break;
        }
        let release = intended.checked_sub(TIMER_TICK).unwrap_or(intended);
        tokio::time::sleep_until(release.into()).await;
        let counted = intended >= measured_from;
        if counted && !shared.quota.try_claim() {
            continue;
        }
        let order = shared.next_order();
        in_flight.spawn(scheduled_order(
            Arc::clone(shared),
            Arc::clone(&pool),
            order,
            intended,
            counted,
        ));
        while let Some(done) = in_flight.try_join_next() {
            done?;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done?;
    }
    Ok(())
}

/// One order of the open model, timed from when it was due.
async fn scheduled_order(
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    order: Order,
    intended: Instant,
    counted: bool,
) {
    let Ok(_slot) = pool.slots.acquire().await else {
        return;
    };
    let origin = latency_origin(intended, Instant::now());
    let connection = match pool.take() {
        Some(sender) => Ok(sender),
        None => load::connect(shared.address).await,
    };
    let sent = Instant::now();
    let (answer, connection) = match connection {
        Ok(mut sender) => (
            send_order(&mut sender, &shared.host, shared.api, &order).await,
            Some(sender),
        ),
        Err(_) => (Answer::transport(), None),
    };
    let answered = Instant::now();
    shared.remember(&order, &answer, sent, answered);
    let outcome = answer.outcome;
    if counted {
        shared.settle(outcome, origin, answered);
    }
    if let Some(sender) = connection
        && outcome != Outcome::Transport
    {
        pool.put_back(sender);
    }
}

/// How one order was answered, and the order the answer named.
struct Answer {
    outcome: Outcome,
    order_id: Option<String>,
}

impl Answer {
    fn transport() -> Self {
        Self {
            outcome: Outcome::Transport,
            order_id: None,
        }
    }
}

/// Sends `order` in `api`'s shape and reads the whole answer, leaving the connection ready for
/// the next one.
async fn send_order(sender: &mut Sender, host: &HeaderValue, api: Api, order: &Order) -> Answer {
    if sender.ready().await.is_err() {
        return Answer::transport();
    }
    let mut request = Request::new(Full::new(order.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from_static(api.path());
    let headers = request.headers_mut();
    headers.insert(HOST, host.clone());
    headers.insert(CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(IDEMPOTENCY_KEY.clone(), order.idempotency_key.clone());
    let Ok(response) = sender.send_request(request).await else {
        return Answer::transport();
    };
    let status = response.status();
    match response.into_body().collect().await {
        Ok(body) => Answer {
            outcome: Outcome::answered(status, api.success()),
            order_id: api.answered_order(&body.to_bytes()),
        },
        Err(_) => Answer::transport(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders(seed: u64, run: u64, count: usize) -> Vec<Order> {
        let mut mix = OrderMix::new(seed, run, Api::Orderly);
        (0..count).map(|_| mix.next_order()).collect()
    }

    #[test]
    fn a_seed_always_offers_the_same_orders() {
        let bodies = |seed| -> Vec<Bytes> {
            orders(seed, 1, 200)
                .into_iter()
                .map(|order| order.body)
                .collect()
        };
        assert_eq!(bodies(7), bodies(7));
        assert_ne!(bodies(7), bodies(8));
    }

    #[test]
    fn the_run_changes_the_keys_but_not_what_is_ordered() {
        let (first, second) = (orders(7, 1, 50), orders(7, 2, 50));
        let ordered = |order: &Order| {
            let body: serde_json::Value = serde_json::from_slice(&order.body).unwrap();
            (body["product"].clone(), body["quantity"].clone())
        };
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(ordered(a), ordered(b));
            assert_ne!(a.idempotency_key, b.idempotency_key);
        }
    }

    #[test]
    fn orders_name_catalogue_products_and_quantities_under_unique_keys() {
        let orders = orders(3, 9, 1000);
        let mut keys = std::collections::HashSet::new();
        let mut products = std::collections::HashSet::new();
        for order in &orders {
            let body: serde_json::Value = serde_json::from_slice(&order.body).unwrap();
            let product = body["product"].as_str().unwrap().to_owned();
            // Orderly's API lets the client name the order: the key.
            let key = order.idempotency_key.to_str().unwrap();
            assert_eq!(body["order_id"], key);
            assert_eq!(order.order_id.as_deref(), Some(key));
            let quantity = u32::try_from(body["quantity"].as_u64().unwrap()).unwrap();
            assert!(QUANTITIES.contains(&quantity), "{quantity}");
            products.insert(product);
            assert!(keys.insert(order.idempotency_key.clone()));
        }
        assert_eq!(
            products.len(),
            Api::Orderly.products(),
            "every product is drawn"
        );
        assert_eq!(orders[0].idempotency_key, "lab-3-9-0");
        assert_eq!(orders[999].idempotency_key, "lab-3-9-999");
    }

    #[test]
    fn the_schedule_spaces_orders_evenly_without_drift() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 3.0);
        assert_eq!(schedule.intended(0), start);
        assert_eq!(schedule.intended(3), start + Duration::from_secs(1));
        assert_eq!(schedule.intended(3_000), start + Duration::from_secs(1_000));
        let gap = schedule.intended(2) - schedule.intended(1);
        assert!(gap.abs_diff(Duration::from_nanos(333_333_333)) <= Duration::from_nanos(1));

        let fast = Schedule::new(start, 5_000.0);
        assert_eq!(fast.intended(1), start + Duration::from_micros(200));
        assert_eq!(
            fast.intended(50_000_000),
            start + Duration::from_secs(10_000)
        );
    }

    #[test]
    fn latency_counts_from_the_intended_send_time() {
        let intended = Instant::now();
        let mut tally = Tally::new(intended);
        // Sent 40 ms late because the server held every connection, answered 2 ms after that:
        // the order waited 42 ms, not 2.
        let sent = intended + Duration::from_millis(40);
        tally.record(
            Outcome::Acknowledged,
            latency_origin(intended, sent),
            sent + Duration::from_millis(2),
        );
        let report = tally.into_report();
        let p50 = report.latency_ms(0.5).unwrap();
        assert!((p50 - 42.0).abs() < 0.05, "{p50}");
        assert_eq!(report.elapsed, Duration::from_millis(42));
    }

    #[test]
    fn an_order_released_early_counts_from_when_it_was_sent() {
        let intended = Instant::now() + Duration::from_millis(1);
        let early = intended - Duration::from_micros(700);
        assert_eq!(latency_origin(intended, early), early);
        assert_eq!(latency_origin(intended, intended), intended);
    }

    #[test]
    fn the_report_counts_errors_by_class_and_latencies_of_acknowledged_orders_only() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut tally = Tally::new(start);
        for ms in 1..=100 {
            tally.record(Outcome::Acknowledged, at(ms), at(2 * ms));
        }
        tally.record(
            Outcome::answered(StatusCode::UNPROCESSABLE_ENTITY, StatusCode::ACCEPTED),
            start,
            at(500),
        );
        tally.record(
            Outcome::answered(StatusCode::SERVICE_UNAVAILABLE, StatusCode::ACCEPTED),
            start,
            at(900),
        );
        tally.record(
            Outcome::answered(StatusCode::OK, StatusCode::ACCEPTED),
            start,
            at(300),
        );
        tally.record(Outcome::Transport, start, at(1000));
        let report = tally.into_report();

        assert_eq!(report.acknowledged, 100);
        assert_eq!(
            report.errors,
            Errors {
                client: 1,
                server: 1,
                unexpected: 1,
                transport: 1
            }
        );
        assert_eq!(report.first_acknowledged, Some(at(2)));
        assert_eq!(report.elapsed, Duration::from_secs(1));
        assert_eq!(report.per_second(), 100.0);
        let close = |measured: Option<f64>, expected: f64| {
            let measured = measured.unwrap();
            assert!(
                (measured - expected).abs() <= expected * 0.001,
                "{measured}"
            );
        };
        close(report.latency_ms(0.5), 50.0);
        close(report.latency_ms(0.99), 99.0);
        close(report.max_ms(), 100.0);
        assert_eq!(
            report.errors.to_string(),
            "4xx 1, 5xx 1, transport 1, other status 1"
        );
    }

    #[test]
    fn an_empty_report_has_no_latencies_and_no_rate() {
        let report = Tally::new(Instant::now()).into_report();
        assert!(report.by_second.is_empty());
        assert_eq!(report.window(0..10).acknowledged, 0);
        assert_eq!(report.latency_ms(0.99), None);
        assert_eq!(report.max_ms(), None);
        assert_eq!(report.per_second(), 0.0);
        assert_eq!(format_ms(report.max_ms()), "–");
    }

    #[test]
    fn answers_count_in_the_second_they_arrived_in() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut tally = Tally::new(start);
        // Second 0: two orders of 10 and 30 ms; second 1: one of 400 ms, sent in second 0;
        // second 2: nothing; second 3: an error.
        tally.record(Outcome::Acknowledged, at(100), at(110));
        tally.record(Outcome::Acknowledged, at(900), at(930));
        tally.record(Outcome::Acknowledged, at(800), at(1_200));
        tally.record(Outcome::Transport, at(3_000), at(3_500));
        let report = tally.into_report();

        let counts: Vec<(u64, u64)> = report
            .by_second
            .iter()
            .map(|second| (second.acknowledged, second.errors))
            .collect();
        assert_eq!(counts, [(2, 0), (1, 0), (0, 0), (0, 1)]);
        let close = |measured: Option<f64>, expected: f64| {
            let measured = measured.unwrap();
            assert!((measured - expected).abs() <= expected * 0.01, "{measured}");
        };
        close(report.by_second[0].latency_ms(0.5), 10.0);
        close(report.by_second[0].max_ms(), 30.0);
        close(report.by_second[1].latency_ms(0.99), 400.0);
        assert_eq!(report.by_second[2].latency_ms(0.5), None);

        let first_two = report.window(0..2);
        assert_eq!((first_two.acknowledged, first_two.errors), (3, 0));
        close(first_two.max_ms(), 400.0);
        let past_the_end = report.window(3..60);
        assert_eq!((past_the_end.acknowledged, past_the_end.errors), (0, 1));
        assert_eq!(report.window(10..20).acknowledged, 0);
    }

    #[test]
    fn only_202_acknowledges_an_order() {
        assert_eq!(
            Outcome::answered(StatusCode::ACCEPTED, StatusCode::ACCEPTED),
            Outcome::Acknowledged
        );
        for status in [StatusCode::OK, StatusCode::CREATED, StatusCode::CONFLICT] {
            assert_eq!(
                Outcome::answered(status, StatusCode::ACCEPTED),
                Outcome::Refused(status)
            );
        }
    }

    #[test]
    fn the_quota_ends_on_exactly_the_target() {
        let quota = Quota::new(Some(2));
        assert!(quota.try_claim() && quota.try_claim());
        assert!(!quota.try_claim(), "both orders still needed are in flight");
        quota.settle(false);
        assert!(quota.try_claim(), "a refused order is given back");
        quota.settle(true);
        quota.settle(true);
        assert!(quota.is_met());
        assert!(!quota.try_claim());

        let unlimited = Quota::new(None);
        assert!((0..1000).all(|_| unlimited.try_claim()));
        unlimited.settle(true);
        assert!(!unlimited.is_met());
    }
}
