//! The poison experiment: what no handler can take goes to the dead-letter queue, and the rest
//! keeps flowing. On a fresh `orderly up` with a `redis-server` of its own, whose validator is
//! a [`ValidatorProxy`] in front of the simulator:
//!
//! 1. a seeded mix of orders is sent; the proxy answers garbage about every tenth of them
//!    (poison jobs), while malformed doorbells (on the validation and fulfilment channels) and
//!    doorbells about orders that do not exist are published among them (poison messages);
//! 2. every poison message and job must reach the queue once, with its reason, within a bound,
//!    and every good order must end final meanwhile, none dead-lettered;
//! 3. then a burst of poisoned orders is sent at once (a burst of failures would open the
//!    circuit; unreadable answers must not), and
//!    good orders after it: the burst must reach the queue within the bound and the good
//!    orders must still be decided promptly;
//! 4. then the proxy is healed and every dead-lettered job replayed: each poison order must end
//!    final, a second replay must be refused, a replayed poison message must come back to the
//!    queue, and the saga's invariants must hold over every order.

use crate::app::{RedisChoice, RunningApp};
use crate::app_http::Http;
use crate::channels::{FULFILMENT_CHANNEL, JOBS_CHANNEL, Publisher};
use crate::control::Control;
use crate::inspection::Inspection;
use crate::orders_load::Schedule;
use crate::report::{Findings, write_list};
use crate::saga::PAYMENT_LIMIT_CENTS;
use crate::settle::{wait_final, write_stuck};
use crate::submit::{PATIENT, Sent, submit_on_schedule};
use crate::timeline::{self, Traced};
use crate::validator_proxy::ValidatorProxy;
use anyhow::Context as _;
use catalog::Catalog;
use http::Method;
use saga_audit::mix::{self, MixSettings, PlannedOrder};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Unreadable answers before a job is dead-lettered (the app is given spin.toml's default).
const POISON_LIMIT: u32 = 3;
/// The rate of the burst: all at once, for a burst this small.
const BURST_RATE: f64 = 1000.0;
/// The longest wait for the circuit to open after the burst (the good orders go then anyway).
const OPEN_WAIT: Duration = Duration::from_secs(5);
/// How long after the circuit opened the good orders follow the burst: long enough for the
/// sweeps (every second) to put the burst's retries off behind the open circuit.
const BURST_HOLD: Duration = Duration::from_secs(3);
/// How often the dead-letter queue is read while waiting for it.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Dead letters read per listing (the most `/admin/dlq` gives).
const DLQ_PAGE: usize = 1000;
/// What a dead letter for a malformed message says.
const MALFORMED: &str = "malformed doorbell";
/// What a dead letter for a doorbell about an unknown order says.
const UNKNOWN_ORDER: &str = "does not exist";
/// What a dead letter for a job with unreadable answers says.
const UNREADABLE: &str = "unreadable";
/// How [`job_faults`] names a good order found in the queue.
const GOOD_ORDER_DEAD_LETTERED: &str = "a good order dead-lettered";

/// What the experiment is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Seeds the orders.
    pub seed: u64,
    /// Orders sent, good and poison.
    pub orders: usize,
    /// Every how many orders one is poison (its validator answers are garbage).
    pub poison_every: usize,
    /// Poison messages of each kind, on each channel that takes that kind (spread evenly over
    /// the time the orders are sent).
    pub messages_per_kind: usize,
    /// Orders sent per second (an open model: the poison does not slow the senders down).
    pub rate: f64,
    /// Poisoned orders sent at once after the first phase.
    pub burst_poison: usize,
    /// Good orders sent after the burst (at `rate`), [`BURST_HOLD`] after the circuit opened.
    pub burst_good: usize,
    /// The longest a good order may wait from its acceptance to its validation decision.
    pub decision_limit: Duration,
    /// The longest a poison message or job may take to reach the queue, from the last send.
    pub dead_letter_limit: Duration,
    /// The longest wait for the good orders to be final (from the last send), and for the
    /// replayed ones (from the replay).
    pub timeout: Duration,
}

impl Settings {
    /// The standard run: 400 orders at 40/s (10 s), every tenth poison, 4 poison messages of
    /// each kind per channel, then a burst of 10 poisoned orders and 80 good ones; a good order
    /// decided within 5 s; `quick`: 120 orders (3 s), 2 messages of each kind, 40 good orders
    /// after the burst.
    pub fn standard(seed: u64, quick: bool) -> Self {
        Self {
            seed,
            orders: if quick { 120 } else { 400 },
            poison_every: 10,
            messages_per_kind: if quick { 2 } else { 4 },
            rate: 40.0,
            burst_poison: 10,
            burst_good: if quick { 40 } else { 80 },
            decision_limit: Duration::from_secs(5),
            dead_letter_limit: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Runs the experiment on a fresh `orderly up` with a `redis-server` of its own (the poison
/// messages are published on it) and the proxy as its validator; what it found.
pub async fn findings(settings: &Settings) -> anyhow::Result<Findings> {
    let orders = mix::plan(
        &Catalog::standard(),
        &MixSettings {
            seed: settings.seed,
            orders: settings.orders + settings.burst_poison + settings.burst_good,
            cancel_fraction: 0.0,
            max_cancel_delay_ms: 0,
            payment_limit_cents: PAYMENT_LIMIT_CENTS,
            id_prefix: format!("poison-{}", settings.seed),
        },
    );
    let (steady, burst) = orders.split_at(settings.orders);
    let (burst_poison, burst_good) = burst.split_at(settings.burst_poison);
    let poisoned: BTreeSet<String> = steady
        .iter()
        .skip(settings.poison_every / 2)
        .step_by(settings.poison_every.max(1))
        .map(|order| order.id.clone())
        .collect();
    let every_poisoned = poisoned
        .iter()
        .cloned()
        .chain(burst_poison.iter().map(|order| order.id.clone()));
    let proxy = ValidatorProxy::start(every_poisoned).await?;
    let variables = [
        format!("payment_limit_cents={PAYMENT_LIMIT_CENTS}"),
        format!("poison_limit={POISON_LIMIT}"),
        format!("validator_url={}/external/validate", proxy.origin()),
        format!("validator_origin={}", proxy.origin()),
    ];
    let app = RunningApp::start(RedisChoice::Server, &variables).await?;
    proxy.relay_to(app.http.address);
    let run = Run {
        settings,
        http: &app.http,
        proxy: &proxy,
        orders: &orders,
        steady,
        poisoned: &poisoned,
        burst_poison,
        burst_good,
    };
    let found = match app.redis_url() {
        Some(url) => run.experiment(&url).await,
        None => Err(anyhow::anyhow!("the app has no redis-server to publish on")),
    };
    app.stop(false).await;
    found
}

/// A message no handler can take, and what its dead letter must say.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoisonMessage {
    /// The channel it is published on.
    channel: &'static str,
    /// What is published (unique per message, so its dead letter can be found).
    payload: String,
    /// A part of the reason its dead letter must give.
    reason: &'static str,
}

/// `per_kind` poison messages of each kind, each payload unique: on the validation channel
/// malformed doorbells (not JSON, not an object, an order id that is not text, an invalid order
/// id) and doorbells about orders that do not exist; on the fulfilment channel the malformed
/// ones (a fulfilment doorbell about an unknown order only wakes the worker).
fn poison_messages(seed: u64, per_kind: usize) -> Vec<PoisonMessage> {
    let mut messages = Vec::new();
    for n in 0..per_kind {
        for channel in [JOBS_CHANNEL, FULFILMENT_CHANNEL] {
            let serial = messages.len();
            for payload in [
                format!("not a doorbell #{serial}"),
                format!("[{serial}]"),
                format!(r#"{{"order_id": {serial}}}"#),
                format!(r#"{{"order_id": "bad id #{serial}"}}"#),
            ] {
                messages.push(PoisonMessage {
                    channel,
                    payload,
                    reason: MALFORMED,
                });
            }
        }
        messages.push(PoisonMessage {
            channel: JOBS_CHANNEL,
            payload: format!(r#"{{"order_id": "ghost-{seed}-{n}"}}"#),
            reason: UNKNOWN_ORDER,
        });
    }
    messages
}

/// One entry of `GET /admin/dlq`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct DeadLetter {
    /// Its id (for the replay route).
    id: i64,
    /// `job` or `message`.
    source: String,
    /// The job's order (jobs only).
    order_id: Option<String>,
    /// The channel the message came on (messages only).
    channel: Option<String>,
    /// The message (messages only).
    payload: Option<String>,
    /// Why it was given up on.
    reason: String,
    /// Validator calls made for the job (0 for messages).
    attempts: u32,
    /// When it was replayed, if it was.
    replayed_at: Option<serde_json::Value>,
}

impl DeadLetter {
    /// Whether it is a job given up on (rather than a message).
    fn is_job(&self) -> bool {
        self.source == "job"
    }
}

/// What is wrong with the queue's message entries: each published message must be there
/// exactly `copies` times, from its channel, with its reason; nothing else.
fn message_faults(
    published: &[PoisonMessage],
    copies: impl Fn(&PoisonMessage) -> usize,
    entries: &[DeadLetter],
) -> Vec<String> {
    let mut faults = Vec::new();
    let messages: Vec<&DeadLetter> = entries.iter().filter(|entry| !entry.is_job()).collect();
    for message in published {
        let found: Vec<&&DeadLetter> = messages
            .iter()
            .filter(|entry| {
                entry.channel.as_deref() == Some(message.channel)
                    && entry.payload.as_deref() == Some(message.payload.as_str())
            })
            .collect();
        if found.len() != copies(message) {
            faults.push(format!(
                "{} on {}: {} dead letters, expected {}",
                message.payload,
                message.channel,
                found.len(),
                copies(message)
            ));
        }
        for entry in found
            .iter()
            .filter(|entry| !entry.reason.contains(message.reason))
        {
            faults.push(format!(
                "{}: reason {:?} does not say {:?}",
                message.payload, entry.reason, message.reason
            ));
        }
    }
    for entry in messages.iter().filter(|entry| {
        !published.iter().any(|message| {
            entry.channel.as_deref() == Some(message.channel)
                && entry.payload.as_deref() == Some(message.payload.as_str())
        })
    }) {
        faults.push(format!(
            "a dead letter nobody published: {:?} on {:?}",
            entry.payload, entry.channel
        ));
    }
    faults
}

/// What is wrong with the queue's job entries: each poisoned order's job must be there once,
/// after `limit` attempts, saying its answers were unreadable; no other order's.
fn job_faults(poisoned: &BTreeSet<String>, entries: &[DeadLetter], limit: u32) -> Vec<String> {
    let mut faults = Vec::new();
    let mut by_order: BTreeMap<&str, Vec<&DeadLetter>> = BTreeMap::new();
    for entry in entries.iter().filter(|entry| entry.is_job()) {
        by_order
            .entry(entry.order_id.as_deref().unwrap_or("?"))
            .or_default()
            .push(entry);
    }
    for id in poisoned {
        match by_order.get(id.as_str()).map(Vec::as_slice) {
            Some([entry]) => {
                if entry.attempts != limit || !entry.reason.contains(UNREADABLE) {
                    faults.push(format!(
                        "{id}: after {} attempts, reason {:?}",
                        entry.attempts, entry.reason
                    ));
                }
            }
            found => faults.push(format!(
                "{id}: {} dead letters, expected 1",
                found.map_or(0, <[_]>::len)
            )),
        }
    }
    for id in by_order.keys().filter(|id| !poisoned.contains(**id)) {
        faults.push(format!("{id}: {GOOD_ORDER_DEAD_LETTERED}"));
    }
    faults
}

/// Polls the circuit breaker until it is open or `limit` passes; how long that took.
async fn wait_open(http: &Http, limit: Duration) -> anyhow::Result<Option<Duration>> {
    let began = Instant::now();
    loop {
        let breaker = http.expect_ok(Method::GET, "/admin/breaker", None).await?;
        if breaker["state"] == "open" {
            return Ok(Some(began.elapsed()));
        }
        if began.elapsed() >= limit {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The orders of `sent` that were not acknowledged, with why.
fn not_accepted(sent: &[Sent]) -> Vec<String> {
    sent.iter()
        .filter(|sent| sent.submission.order_id().is_none())
        .map(|sent| {
            let how = match &sent.submission.reply {
                Some(reply) => format!("{reply:?}"),
                None => sent.submission.last_error.clone().unwrap_or_default(),
            };
            format!("{}: {how}", sent.order.id)
        })
        .collect()
}

/// Reads the whole queue, replayed entries included.
async fn dead_letters(http: &Http) -> anyhow::Result<Vec<DeadLetter>> {
    let listing = http
        .expect_ok(
            Method::GET,
            &format!("/admin/dlq?include_replayed=true&limit={DLQ_PAGE}"),
            None,
        )
        .await?;
    serde_json::from_value(listing["dead_letters"].clone())
        .with_context(|| format!("GET /admin/dlq: {listing}"))
}

/// Polls the queue until it holds `expected` entries (replayed included) or `limit` passes;
/// the entries, and how long it took when they all came.
async fn wait_dead_letters(
    http: &Http,
    expected: usize,
    limit: Duration,
) -> anyhow::Result<(Vec<DeadLetter>, Option<Duration>)> {
    let began = Instant::now();
    loop {
        let entries = dead_letters(http).await?;
        if entries.len() >= expected {
            return Ok((entries, Some(began.elapsed())));
        }
        if began.elapsed() >= limit {
            return Ok((entries, None));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How the replays were answered.
#[derive(Debug, Default)]
struct Replays {
    /// Jobs put back in the queue (200, requeued).
    requeued: usize,
    /// Second replays refused (409 already-replayed).
    refused_again: usize,
    /// Messages published again (200).
    republished: usize,
    /// Any other answer.
    unexpected: Vec<String>,
}

/// One experiment's run: what it is given.
struct Run<'a> {
    /// What it is asked to do.
    settings: &'a Settings,
    /// A client of the app.
    http: &'a Http,
    /// The app's validator.
    proxy: &'a ValidatorProxy,
    /// Every order, good and poison.
    orders: &'a [PlannedOrder],
    /// The first phase's orders.
    steady: &'a [PlannedOrder],
    /// The first phase's orders the proxy answers garbage about.
    poisoned: &'a BTreeSet<String>,
    /// The poisoned orders sent at once in the second phase.
    burst_poison: &'a [PlannedOrder],
    /// The good orders sent after them.
    burst_good: &'a [PlannedOrder],
}

/// The first phase: good orders and poison together.
struct Poisoning {
    /// How long sending the orders took.
    send_time: Duration,
    /// The pause between two poison messages.
    spacing: Duration,
    /// Subscribers that heard each poison message.
    heard: Vec<u64>,
    /// Orders not acknowledged, with why.
    not_accepted: Vec<String>,
    /// The good orders.
    good: Vec<String>,
    /// Good orders not final in time.
    stuck: Vec<String>,
    /// From the last send until every good order was final (or the wait ended).
    good_time: Duration,
    /// The queue once every poison was in it (or the wait ended).
    entries: Vec<DeadLetter>,
    /// From the last send until every poison was in the queue.
    dead_time: Option<Duration>,
    /// What is wrong with the messages' dead letters.
    message_faults: Vec<String>,
    /// What is wrong with the jobs' dead letters.
    job_faults: Vec<String>,
    /// Poison orders not held `processing` and marked `dead_lettered`.
    not_held: Vec<String>,
    /// Poison orders whose validator was called other than [`POISON_LIMIT`] times.
    called_again: Vec<String>,
    /// How often the circuit opened.
    openings: u64,
}

/// The second phase: a burst of poison, then good orders.
struct Bursting {
    /// From the burst until the circuit was seen open (if it opened).
    opened_after: Option<Duration>,
    /// How often the circuit opened from the burst until the phase ended.
    openings: u64,
    /// Validator calls in the phase about the burst's poisoned orders (answered garbage).
    poisoned_calls: u32,
    /// Validator calls in the phase relayed to the simulator (about good orders).
    relayed_calls: u64,
    /// Orders not acknowledged, with why.
    not_accepted: Vec<String>,
    /// Good orders not final in time.
    stuck: Vec<String>,
    /// From the last good order sent until every good one was final (or the wait ended).
    good_time: Duration,
    /// From the burst until it was all in the queue.
    dead_time: Option<Duration>,
    /// What is wrong with the burst's dead letters.
    job_faults: Vec<String>,
}

/// The third phase: the validator healed, the dead letters replayed.
struct Replaying {
    /// Job entries replayed.
    jobs: usize,
    /// The orders of the jobs replayed.
    replayed_orders: BTreeSet<String>,
    /// Message entries replayed (one per channel).
    messages: usize,
    /// How the replays were answered.
    replays: Replays,
    /// Orders not final in time after the replay (every order should be, once healed).
    stuck: Vec<String>,
    /// From the first replay until every order was final (or the wait ended).
    time: Duration,
    /// The queue once the replayed messages were back in it (or the wait ended).
    entries: Vec<DeadLetter>,
    /// Whether the replayed messages came back in time.
    came_back: bool,
    /// What is wrong with the messages' dead letters now.
    message_faults: Vec<String>,
    /// Entries `GET /admin/dlq` lists (those not replayed).
    listed: u64,
}

impl Replaying {
    /// Replayed orders not final in time.
    fn replayed_stuck(&self) -> usize {
        self.stuck
            .iter()
            .filter(|id| self.replayed_orders.contains(*id))
            .count()
    }

    /// Entries not replayed.
    fn unreplayed(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.replayed_at.is_none())
            .count()
    }
}

impl Run<'_> {
    /// The experiment: poison among good orders, then the replay; what it found.
    async fn experiment(&self, redis_url: &str) -> anyhow::Result<Findings> {
        let (settings, http) = (self.settings, self.http);
        let publisher = Publisher::connect(redis_url).await?;
        let messages = poison_messages(settings.seed, settings.messages_per_kind);
        let poisoning = self.poison(&publisher, &messages).await?;
        let bursting = self.burst(poisoning.entries.len()).await?;
        eprintln!("healing the validator and replaying the dead letters");
        self.proxy.heal();
        let replaying = self.replay(&messages).await?;
        let every: Vec<String> = self.orders.iter().map(|order| order.id.clone()).collect();
        let observed = Observed {
            run: self,
            messages,
            inspection: Inspection::of(http, &every).await?,
            poisoning,
            bursting,
            replaying,
        };

        let mut findings = Findings::default();
        findings.configure("seed", settings.seed);
        findings.configure(
            "redis",
            "server (always: the experiment publishes on the app's Redis)",
        );
        findings.configure("orders", settings.orders);
        findings.configure("rate", format!("{} orders/s", settings.rate));
        findings.configure(
            "poison orders",
            format!("every {}th", settings.poison_every),
        );
        findings.configure("poison_limit", POISON_LIMIT);
        findings.configure("poison messages", observed.messages.len());
        findings.configure(
            "burst",
            format!(
                "{} poisoned at once, then {} good",
                settings.burst_poison, settings.burst_good
            ),
        );
        observed.write(&mut findings.body)?;
        write_stuck(&mut findings.body, http, &observed.replaying.stuck).await?;
        writeln!(
            findings.body,
            "\n## Invariants\n\n{}",
            observed.inspection.audit.markdown()
        )?;
        observed.judge(&mut findings);
        Ok(findings)
    }

    /// Sends the orders at the settings' rate, the poison messages among them, and waits for
    /// the good orders to be final and the poison to be in the queue.
    async fn poison(
        &self,
        publisher: &Publisher,
        messages: &[PoisonMessage],
    ) -> anyhow::Result<Poisoning> {
        let (settings, http) = (self.settings, self.http);
        eprintln!(
            "sending {} orders ({} poison) and {} poison messages",
            self.steady.len(),
            self.poisoned.len(),
            messages.len()
        );
        let sending = Instant::now();
        let schedule = Schedule::new(sending, settings.rate);
        let spacing = Duration::from_secs_f64(
            self.steady.len() as f64 / settings.rate / messages.len().max(1) as f64,
        );
        let (sent, heard) = tokio::join!(
            submit_on_schedule(http, self.steady, PlannedOrder::body, schedule, PATIENT),
            publish_all(publisher, messages, spacing)
        );
        let heard = heard?;
        let send_time = sending.elapsed();
        let not_accepted = not_accepted(&sent);
        let good: Vec<String> = self
            .steady
            .iter()
            .filter(|order| !self.poisoned.contains(&order.id))
            .map(|order| order.id.clone())
            .collect();
        let ((stuck, good_time), dead) = tokio::join!(
            async {
                let began = Instant::now();
                let stuck = wait_final(http, &good, settings.timeout).await;
                (stuck, began.elapsed())
            },
            wait_dead_letters(
                http,
                messages.len() + self.poisoned.len(),
                settings.dead_letter_limit
            ),
        );
        let (entries, dead_time) = dead?;
        let poisoned: Vec<String> = self.poisoned.iter().cloned().collect();
        let not_held = timeline::trace_all(http, &poisoned)
            .await?
            .iter()
            .filter(|order| {
                order.status != "processing" || order.order["validation"]["dead_lettered"] != true
            })
            .map(|order| {
                format!(
                    "{}: {} {}",
                    order.id, order.status, order.order["validation"]
                )
            })
            .collect();
        let called_again = self
            .proxy
            .garbage_served()
            .iter()
            .filter(|(id, count)| self.poisoned.contains(*id) && **count != POISON_LIMIT)
            .map(|(id, count)| format!("{id}: {count} garbage answers"))
            .collect();
        Ok(Poisoning {
            send_time,
            spacing,
            heard,
            not_accepted,
            good,
            stuck,
            good_time,
            message_faults: message_faults(messages, |_| 1, &entries),
            job_faults: job_faults(self.poisoned, &entries, POISON_LIMIT),
            entries,
            dead_time,
            not_held,
            called_again,
            openings: times_opened(&http.expect_ok(Method::GET, "/admin/breaker", None).await?),
        })
    }

    /// Sends the burst of poisoned orders at once, waits for the circuit to open and
    /// [`BURST_HOLD`] more, sends the good orders at the settings' rate, and waits for them to be final and for the burst to be in
    /// the queue (which holds `queued` entries before it).
    async fn burst(&self, queued: usize) -> anyhow::Result<Bursting> {
        let (settings, http) = (self.settings, self.http);
        eprintln!(
            "a burst of {} poisoned orders, then {} good ones",
            self.burst_poison.len(),
            self.burst_good.len()
        );
        let openings_before =
            times_opened(&http.expect_ok(Method::GET, "/admin/breaker", None).await?);
        let control = Control::new(http.address);
        let relayed_before = control.validator_calls().await?;
        let began = Instant::now();
        let burst_schedule = Schedule::new(began, BURST_RATE);
        let (mut sent, queue) = tokio::join!(
            submit_on_schedule(
                http,
                self.burst_poison,
                PlannedOrder::body,
                burst_schedule,
                PATIENT
            ),
            async {
                let opened_after = wait_open(http, OPEN_WAIT).await?;
                tokio::time::sleep(BURST_HOLD).await;
                let schedule = Schedule::new(Instant::now(), settings.rate);
                let sent = submit_on_schedule(
                    http,
                    self.burst_good,
                    PlannedOrder::body,
                    schedule,
                    PATIENT,
                )
                .await;
                let good: Vec<String> = self
                    .burst_good
                    .iter()
                    .map(|order| order.id.clone())
                    .collect();
                let waiting = Instant::now();
                let remaining = settings
                    .dead_letter_limit
                    .saturating_sub(waiting.duration_since(began));
                let (stuck, dead) = tokio::join!(
                    wait_final(http, &good, settings.timeout),
                    wait_dead_letters(http, queued + self.burst_poison.len(), remaining),
                );
                let (entries, waited) = dead?;
                let dead_time = waited.map(|waited| waiting.duration_since(began) + waited);
                anyhow::Ok((
                    opened_after,
                    sent,
                    stuck,
                    waiting.elapsed(),
                    entries,
                    dead_time,
                ))
            }
        );
        let (opened_after, good_sent, stuck, good_time, entries, dead_time) = queue?;
        sent.extend(good_sent);
        let burst: BTreeSet<String> = self
            .burst_poison
            .iter()
            .map(|order| order.id.clone())
            .collect();
        let later: Vec<DeadLetter> = entries
            .iter()
            .filter(|entry| {
                entry.is_job()
                    && !entry
                        .order_id
                        .as_ref()
                        .is_some_and(|id| self.poisoned.contains(id))
            })
            .cloned()
            .collect();
        let job_faults = job_faults(&burst, &later, POISON_LIMIT);
        let openings = times_opened(&http.expect_ok(Method::GET, "/admin/breaker", None).await?)
            .saturating_sub(openings_before);
        let garbage = self.proxy.garbage_served();
        Ok(Bursting {
            opened_after,
            openings,
            poisoned_calls: burst.iter().filter_map(|id| garbage.get(id)).sum(),
            relayed_calls: control
                .validator_calls()
                .await?
                .saturating_sub(relayed_before),
            not_accepted: not_accepted(&sent),
            stuck,
            good_time,
            dead_time,
            job_faults,
        })
    }

    /// Replays every job in the queue (twice: the second must be refused) and one message per
    /// channel, then waits for every order to be final and the messages to come back.
    async fn replay(&self, messages: &[PoisonMessage]) -> anyhow::Result<Replaying> {
        let (settings, http) = (self.settings, self.http);
        // Read afresh: dead letters that came after the phases' bounds are replayed too.
        let entries = &dead_letters(http).await?;
        let began = Instant::now();
        let replayed_messages: Vec<&DeadLetter> = [JOBS_CHANNEL, FULFILMENT_CHANNEL]
            .into_iter()
            .filter_map(|channel| {
                entries
                    .iter()
                    .find(|entry| !entry.is_job() && entry.channel.as_deref() == Some(channel))
            })
            .collect();
        let jobs: Vec<&DeadLetter> = entries.iter().filter(|entry| entry.is_job()).collect();
        let replays = replay_entries(http, &jobs, &replayed_messages).await?;
        let every: Vec<String> = self.orders.iter().map(|order| order.id.clone()).collect();
        let stuck = wait_final(http, &every, settings.timeout).await;
        let time = began.elapsed();
        let (after, came_back) = wait_dead_letters(
            http,
            entries.len() + replayed_messages.len(),
            settings.dead_letter_limit,
        )
        .await?;
        let was_replayed = |message: &PoisonMessage| {
            replayed_messages
                .iter()
                .any(|entry| entry.payload.as_deref() == Some(message.payload.as_str()))
        };
        let listed = http
            .expect_ok(Method::GET, &format!("/admin/dlq?limit={DLQ_PAGE}"), None)
            .await?["count"]
            .as_u64()
            .context("GET /admin/dlq: no count")?;
        Ok(Replaying {
            jobs: jobs.len(),
            replayed_orders: jobs
                .iter()
                .filter_map(|entry| entry.order_id.clone())
                .collect(),
            messages: replayed_messages.len(),
            replays,
            stuck,
            time,
            message_faults: message_faults(
                messages,
                |message| 1 + usize::from(was_replayed(message)),
                &after,
            ),
            entries: after,
            came_back: came_back.is_some(),
            listed,
        })
    }
}

/// Everything the run saw.
struct Observed<'a> {
    /// What the run was given.
    run: &'a Run<'a>,
    /// The poison messages published.
    messages: Vec<PoisonMessage>,
    /// The first phase.
    poisoning: Poisoning,
    /// The second phase.
    bursting: Bursting,
    /// The third phase.
    replaying: Replaying,
    /// Every order, read after the replay.
    inspection: Inspection,
}

impl Observed<'_> {
    /// The good ones of `orders` (not poisoned), as read after the run.
    fn good_among(&self, orders: &[PlannedOrder]) -> Vec<&Traced> {
        let wanted: BTreeSet<&str> = orders
            .iter()
            .map(|order| order.id.as_str())
            .filter(|id| !self.run.poisoned.contains(*id))
            .collect();
        self.inspection
            .traced
            .iter()
            .filter(|order| wanted.contains(order.id.as_str()))
            .collect()
    }

    /// The good ones of `orders` decided later than the limit after their acceptance, or
    /// never.
    fn decided_late(&self, orders: &[PlannedOrder]) -> Vec<String> {
        let limit = self.run.settings.decision_limit;
        self.good_among(orders)
            .into_iter()
            .filter(|order| {
                order
                    .timeline
                    .decided_after
                    .is_none_or(|delay| delay > limit)
            })
            .map(|order| {
                format!(
                    "{}: decided after {:?}, {} deferrals",
                    order.id,
                    order.timeline.decided_after,
                    order.timeline.count("deferred")
                )
            })
            .collect()
    }

    /// The slowest good order's acceptance → decision among `orders`, and the median one's.
    fn decision_delays(&self, orders: &[PlannedOrder]) -> (Duration, Duration) {
        let mut delays: Vec<Duration> = self
            .good_among(orders)
            .iter()
            .filter_map(|order| order.timeline.decided_after)
            .collect();
        delays.sort();
        (
            delays.last().copied().unwrap_or_default(),
            delays.get(delays.len() / 2).copied().unwrap_or_default(),
        )
    }

    /// Replayed orders whose timeline does not show the dead letter, the replay and one
    /// decision.
    fn replay_faults(&self) -> Vec<String> {
        self.inspection
            .traced
            .iter()
            .filter(|order| self.replaying.replayed_orders.contains(&order.id))
            .filter(|order| {
                order.timeline.count("dead_lettered") == 0
                    || order.timeline.count("replayed") == 0
                    || order.timeline.decisions() != 1
            })
            .map(|order| format!("{}: {:?}", order.id, order.timeline.kinds))
            .collect()
    }

    /// When the poison was all in the queue, in words.
    fn dead_letter_timing(&self) -> String {
        match self.poisoning.dead_time {
            Some(time) => format!(
                "all in the queue {:.2} s after the last send",
                time.as_secs_f64()
            ),
            None => format!(
                "not all within {} s",
                self.run.settings.dead_letter_limit.as_secs()
            ),
        }
    }

    /// The findings' tables.
    fn write(&self, out: &mut String) -> std::fmt::Result {
        let (run, poisoning, replaying) = (self.run, &self.poisoning, &self.replaying);
        writeln!(
            out,
            "`orderly up` on {} with its own `redis-server`; its validator is a proxy on {} \
             that relays to the simulator, except for {} of the {} orders (seed {}), about \
             which it answers 200 with garbage (HTML, no verdict, an unknown verdict, a \
             verdict about another order, in turn). The orders were sent at {}/s ({:.2} s), \
             and {} poison messages published {} ms apart meanwhile.\n",
            run.http.address,
            run.proxy.origin(),
            run.poisoned.len(),
            run.steady.len(),
            run.settings.seed,
            run.settings.rate,
            poisoning.send_time.as_secs_f64(),
            self.messages.len(),
            poisoning.spacing.as_millis(),
        )?;
        writeln!(
            out,
            "## Poison\n\n| poison | sent | dead-lettered as expected |\n|---|---:|---:|"
        )?;
        for (name, reason, channel) in [
            (
                "malformed doorbells on `orderly-jobs`",
                MALFORMED,
                JOBS_CHANNEL,
            ),
            (
                "malformed doorbells on `orderly-fulfilment`",
                MALFORMED,
                FULFILMENT_CHANNEL,
            ),
            (
                "doorbells for orders that do not exist",
                UNKNOWN_ORDER,
                JOBS_CHANNEL,
            ),
        ] {
            let kind: Vec<&PoisonMessage> = self
                .messages
                .iter()
                .filter(|message| message.reason == reason && message.channel == channel)
                .collect();
            let faulty = kind
                .iter()
                .filter(|message| {
                    poisoning
                        .message_faults
                        .iter()
                        .any(|fault| fault.starts_with(&message.payload))
                })
                .count();
            writeln!(out, "| {name} | {} | {} |", kind.len(), kind.len() - faulty)?;
        }
        let poison_job_faults = poisoning
            .job_faults
            .iter()
            .filter(|fault| !fault.contains(GOOD_ORDER_DEAD_LETTERED))
            .count();
        writeln!(
            out,
            "| orders whose validator answers garbage | {} | {} |",
            run.poisoned.len(),
            run.poisoned.len() - poison_job_faults
        )?;
        writeln!(
            out,
            "\nThe poison was {}; every poison message was heard by the app: {}.",
            self.dead_letter_timing(),
            if poisoning.heard.iter().all(|count| *count > 0) {
                "yes"
            } else {
                "**no**"
            }
        )?;
        write_list(out, "Message dead letters wrong", &poisoning.message_faults)?;
        write_list(out, "Job dead letters wrong", &poisoning.job_faults)?;
        write_list(
            out,
            "Poison orders not held (processing, dead_lettered)",
            &poisoning.not_held,
        )?;
        write_list(
            out,
            "Validator called again after the dead letter",
            &poisoning.called_again,
        )?;

        let decided_late = self.decided_late(run.steady);
        let good_deferrals: usize = self
            .good_among(run.steady)
            .iter()
            .map(|order| order.timeline.count("deferred"))
            .sum();
        writeln!(out, "\n## Good orders\n\n| figure | value |\n|---|---|")?;
        writeln!(
            out,
            "| accepted, of every order | {} of {} |",
            run.steady.len() - poisoning.not_accepted.len(),
            run.steady.len()
        )?;
        self.write_good_rows(out, run.steady, &poisoning.stuck, poisoning.good_time)?;
        writeln!(
            out,
            "| deferrals of good orders (circuit open) / times the circuit opened | \
             {good_deferrals} / {} |",
            poisoning.openings
        )?;
        write_list(out, "Not accepted", &poisoning.not_accepted)?;
        write_list(out, "Decided late", &decided_late)?;

        self.write_burst(out)?;

        writeln!(out, "\n## Replay\n\n| figure | value |\n|---|---|")?;
        writeln!(
            out,
            "| jobs replayed (200, requeued) / replayed again (409) | {} / {} of {} |",
            replaying.replays.requeued, replaying.replays.refused_again, replaying.jobs
        )?;
        writeln!(
            out,
            "| replayed orders final after the replay | {} of {} ({}) |",
            replaying.replayed_orders.len() - replaying.replayed_stuck(),
            replaying.replayed_orders.len(),
            if replaying.replayed_stuck() == 0 {
                format!("{:.2} s", replaying.time.as_secs_f64())
            } else {
                format!("not within {} s", run.settings.timeout.as_secs())
            }
        )?;
        writeln!(
            out,
            "| messages replayed (200) / back in the queue | {} / {} |",
            replaying.replays.republished,
            if replaying.came_back && replaying.message_faults.is_empty() {
                "each, with its reason"
            } else {
                "**not all**"
            }
        )?;
        writeln!(
            out,
            "| entries listed (`GET /admin/dlq`: not replayed) / not replayed / all | {} / {} \
             / {} |",
            replaying.listed,
            replaying.unreplayed(),
            replaying.entries.len()
        )?;
        writeln!(
            out,
            "| confirmed or cancelled orders notified exactly once | {} of {} |",
            self.inspection.notifiable - self.inspection.notification_faults.len(),
            self.inspection.notifiable
        )?;
        write_list(
            out,
            "Unexpected replay answers",
            &replaying.replays.unexpected,
        )?;
        write_list(out, "Replayed messages", &replaying.message_faults)?;
        write_list(out, "Poison orders' timelines", &self.replay_faults())?;
        write_list(
            out,
            "Transitions repeated or missing",
            &self.inspection.timeline_faults,
        )?;
        write_list(out, "Notifications", &self.inspection.notification_faults)
    }

    /// The burst's figures and its hypothesis.
    fn judge_burst(&self, findings: &mut Findings) {
        let (run, bursting) = (self.run, &self.bursting);
        let settings = run.settings;
        let (slowest, _) = self.decision_delays(run.burst_good);
        let decided_late = self.decided_late(run.burst_good);
        findings.figure(
            "burst_slowest_good_decision_ms",
            slowest.as_secs_f64() * 1000.0,
        );
        findings.figure("burst_circuit_openings", bursting.openings as f64);
        findings.figure(
            "burst_dead_letter_secs",
            bursting
                .dead_time
                .map_or(f64::NAN, |time| time.as_secs_f64()),
        );
        findings.check(
            format!(
                "A burst of poison holds nothing up: {} poisoned orders sent at once (their \
                 unreadable answers must not open the circuit), then, {} s later, {} good ones: \
                 every poisoned one \
                 is dead-lettered within {} s of the burst, and every good one decided within {} \
                 s of its acceptance and final within {} s",
                run.burst_poison.len(),
                BURST_HOLD.as_secs(),
                run.burst_good.len(),
                settings.dead_letter_limit.as_secs(),
                settings.decision_limit.as_secs(),
                settings.timeout.as_secs()
            ),
            format!(
                "circuit open {} ({} openings; validator calls: {} about poisoned orders, {} \
                 relayed); {} dead letters wrong ({}); {} not accepted, {} good orders decided \
                 late (slowest {:.2} s), {} not final",
                bursting.opened_after.map_or_else(
                    || "never".to_owned(),
                    |after| format!("after {:.2} s", after.as_secs_f64())
                ),
                bursting.openings,
                bursting.poisoned_calls,
                bursting.relayed_calls,
                bursting.job_faults.len(),
                bursting.dead_time.map_or_else(
                    || "not all in time".to_owned(),
                    |time| format!("all in {:.2} s", time.as_secs_f64())
                ),
                bursting.not_accepted.len(),
                decided_late.len(),
                slowest.as_secs_f64(),
                bursting.stuck.len()
            ),
            bursting.dead_time.is_some()
                && bursting.job_faults.is_empty()
                && bursting.not_accepted.is_empty()
                && decided_late.is_empty()
                && bursting.stuck.is_empty(),
        );
    }

    /// The rows about the good ones among `orders`: how many are final (`stuck` not, the rest
    /// `good_time` after the last was sent), acceptance → decision, and how many were decided
    /// late.
    fn write_good_rows(
        &self,
        out: &mut String,
        orders: &[PlannedOrder],
        stuck: &[String],
        good_time: Duration,
    ) -> std::fmt::Result {
        let good = self.good_among(orders).len();
        let (slowest, median) = self.decision_delays(orders);
        writeln!(
            out,
            "| good orders final | {} of {good} ({}) |",
            good - stuck.len(),
            if stuck.is_empty() {
                format!("{:.2} s after the last was sent", good_time.as_secs_f64())
            } else {
                format!("not within {} s", self.run.settings.timeout.as_secs())
            }
        )?;
        writeln!(
            out,
            "| acceptance → decision, good orders: median / slowest | {:.0} ms / {:.0} ms |",
            median.as_secs_f64() * 1000.0,
            slowest.as_secs_f64() * 1000.0
        )?;
        writeln!(
            out,
            "| good orders decided later than {} s after acceptance | {} |",
            self.run.settings.decision_limit.as_secs(),
            self.decided_late(orders).len()
        )
    }

    /// The burst's table.
    fn write_burst(&self, out: &mut String) -> std::fmt::Result {
        let (run, bursting) = (self.run, &self.bursting);
        let decided_late = self.decided_late(run.burst_good);
        writeln!(
            out,
            "\n## A burst of poison\n\n{} poisoned orders sent at once, then {} good ones at \
             {}/s, from {} s after the circuit opened (or {} s after the burst if it did not).\n\n\
             | figure | value |\n|---|---|",
            run.burst_poison.len(),
            run.burst_good.len(),
            run.settings.rate,
            BURST_HOLD.as_secs(),
            OPEN_WAIT.as_secs() + BURST_HOLD.as_secs()
        )?;
        writeln!(
            out,
            "| burst → circuit open | {} |",
            bursting.opened_after.map_or_else(
                || format!("not within {} s", OPEN_WAIT.as_secs()),
                |after| format!("{:.2} s", after.as_secs_f64())
            )
        )?;
        writeln!(out, "| times the circuit opened | {} |", bursting.openings)?;
        writeln!(
            out,
            "| validator calls: about the poisoned orders (garbage) / relayed (good orders) | \
             {} / {} |",
            bursting.poisoned_calls, bursting.relayed_calls
        )?;
        writeln!(
            out,
            "| poisoned orders dead-lettered as expected | {} of {} ({}) |",
            run.burst_poison.len()
                - bursting
                    .job_faults
                    .iter()
                    .filter(|fault| !fault.contains(GOOD_ORDER_DEAD_LETTERED))
                    .count(),
            run.burst_poison.len(),
            bursting.dead_time.map_or_else(
                || {
                    format!(
                        "not all within {} s",
                        run.settings.dead_letter_limit.as_secs()
                    )
                },
                |time| format!("all {:.2} s after the burst", time.as_secs_f64())
            )
        )?;
        self.write_good_rows(out, run.burst_good, &bursting.stuck, bursting.good_time)?;
        write_list(out, "Not accepted", &bursting.not_accepted)?;
        write_list(out, "Burst dead letters wrong", &bursting.job_faults)?;
        write_list(out, "Decided late", &decided_late)
    }

    /// The figures, and a verdict on each hypothesis.
    fn judge(&self, findings: &mut Findings) {
        let (run, poisoning, replaying) = (self.run, &self.poisoning, &self.replaying);
        let settings = run.settings;
        let (slowest, _) = self.decision_delays(run.steady);
        let decided_late = self.decided_late(run.steady);
        let replay_faults = self.replay_faults();
        let good_dead_lettered = poisoning
            .job_faults
            .iter()
            .any(|fault| fault.contains(GOOD_ORDER_DEAD_LETTERED));
        findings.figure("poison_messages", self.messages.len() as f64);
        findings.figure("poison_orders", run.poisoned.len() as f64);
        findings.figure(
            "dead_letter_secs",
            poisoning
                .dead_time
                .map_or(f64::NAN, |time| time.as_secs_f64()),
        );
        findings.figure("good_orders_final_secs", poisoning.good_time.as_secs_f64());
        findings.figure("slowest_good_decision_ms", slowest.as_secs_f64() * 1000.0);
        findings.figure("circuit_openings", poisoning.openings as f64);
        findings.figure("replay_final_secs", replaying.time.as_secs_f64());
        findings.figure(
            "failed_invariants",
            self.inspection.failed_invariants() as f64,
        );
        let limit = settings.dead_letter_limit.as_secs();
        findings.check(
            format!(
                "Every poison message ({}: malformed doorbells on both channels, doorbells for \
                 orders that do not exist) is dead-lettered exactly once with its reason within \
                 {limit} s of the last send, and nothing else is",
                self.messages.len()
            ),
            format!(
                "{} wrong; {}",
                poisoning.message_faults.len(),
                self.dead_letter_timing()
            ),
            poisoning.heard.iter().all(|count| *count > 0)
                && poisoning.dead_time.is_some()
                && poisoning.message_faults.is_empty(),
        );
        findings.check(
            format!(
                "Every order whose validator answers garbage ({}) is dead-lettered once, after \
                 exactly {POISON_LIMIT} answers, saying they were unreadable, within {limit} s; \
                 it stays `processing` marked `dead_lettered`, and the validator is not called \
                 about it again",
                run.poisoned.len()
            ),
            format!(
                "{} dead letters wrong, {} orders not held, {} called other than \
                 {POISON_LIMIT} times",
                poisoning.job_faults.len(),
                poisoning.not_held.len(),
                poisoning.called_again.len()
            ),
            poisoning.dead_time.is_some()
                && poisoning.job_faults.is_empty()
                && poisoning.not_held.is_empty()
                && poisoning.called_again.is_empty(),
        );
        findings.check(
            format!(
                "The rest flows: every good order ({}) is accepted, decided within {} s of its \
                 acceptance and final within {} s of the last send; none is dead-lettered",
                poisoning.good.len(),
                settings.decision_limit.as_secs(),
                settings.timeout.as_secs()
            ),
            format!(
                "{} not accepted; {} decided late (slowest {:.2} s; the circuit opened {} \
                 times); {} not final ({:.2} s)",
                poisoning.not_accepted.len(),
                decided_late.len(),
                slowest.as_secs_f64(),
                poisoning.openings,
                poisoning.stuck.len(),
                poisoning.good_time.as_secs_f64()
            ),
            poisoning.not_accepted.is_empty()
                && decided_late.is_empty()
                && poisoning.stuck.is_empty()
                && !good_dead_lettered,
        );
        self.judge_burst(findings);
        let replays = &replaying.replays;
        findings.check(
            format!(
                "Dead letters can be listed and replayed: with the validator healed, every \
                 replayed job's order ends final within {} s (dead_lettered, replayed, one \
                 decision); a second replay is refused (409); a replayed poison message comes \
                 back to the queue; the listing shows exactly the entries not replayed",
                settings.timeout.as_secs()
            ),
            format!(
                "{} of {} requeued, {} refused again, {} not final after the replay, {} \
                 messages republished, {} wrong after; {} listed, {} not replayed",
                replays.requeued,
                replaying.jobs,
                replays.refused_again,
                replaying.replayed_stuck(),
                replays.republished,
                replaying.message_faults.len(),
                replaying.listed,
                replaying.unreplayed()
            ),
            replays.requeued == replaying.jobs
                && replays.refused_again == replaying.jobs
                && replays.republished == replaying.messages
                && replays.unexpected.is_empty()
                && replaying.replayed_stuck() == 0
                && replay_faults.is_empty()
                && replaying.came_back
                && replaying.message_faults.is_empty()
                && replaying.listed == replaying.unreplayed() as u64,
        );
        findings.check(
            "Nothing is done twice (one decision, each saga step at most once, one end, one \
             notification) and the saga's invariants hold over every order, poison ones \
             included",
            format!(
                "{} timeline faults, {} notification faults; {} of {} invariants failed",
                self.inspection.timeline_faults.len(),
                self.inspection.notification_faults.len(),
                self.inspection.failed_invariants(),
                self.inspection.audit.checks.len()
            ),
            self.inspection.once_each() && self.inspection.audit.passed(),
        );
    }
}

/// How often the circuit has opened (`GET /admin/breaker`'s transitions to `open`).
fn times_opened(breaker: &serde_json::Value) -> u64 {
    breaker["transitions"]
        .as_array()
        .map(|transitions| {
            transitions
                .iter()
                .filter(|transition| transition["to"] == "open")
                .filter_map(|transition| transition["count"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Publishes each message, `spacing` apart; how many subscribers heard each.
async fn publish_all(
    publisher: &Publisher,
    messages: &[PoisonMessage],
    spacing: Duration,
) -> anyhow::Result<Vec<u64>> {
    let mut heard = Vec::new();
    for message in messages {
        heard.push(
            publisher
                .publish(message.channel, message.payload.as_bytes())
                .await?,
        );
        tokio::time::sleep(spacing).await;
    }
    Ok(heard)
}

/// Replays every job entry twice (the second must be refused) and each message entry once.
async fn replay_entries(
    http: &Http,
    jobs: &[&DeadLetter],
    messages: &[&DeadLetter],
) -> anyhow::Result<Replays> {
    let mut replays = Replays::default();
    let post = async |entry: &DeadLetter| {
        http.send(
            Method::POST,
            &format!("/admin/dlq/{}/replay", entry.id),
            &[],
            None,
        )
        .await
    };
    for job in jobs {
        let first = post(job).await?;
        if first.status == 200 && first.json()?["requeued"] == true {
            replays.requeued += 1;
        } else {
            replays
                .unexpected
                .push(format!("replay {}: {}", job.id, first.describe()));
        }
        let again = post(job).await?;
        if again.status == 409 && again.json()?["type"] == "/problems/already-replayed" {
            replays.refused_again += 1;
        } else {
            replays
                .unexpected
                .push(format!("replay {} again: {}", job.id, again.describe()));
        }
    }
    for message in messages {
        let answer = post(message).await?;
        if answer.status == 200
            && answer.json()?["republished_on"] == message.channel.as_deref().unwrap_or("")
        {
            replays.republished += 1;
        } else {
            replays
                .unexpected
                .push(format!("replay {}: {}", message.id, answer.describe()));
        }
    }
    Ok(replays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::Doorbell;

    /// A dead letter for `message`, or for `order`'s job after three unreadable answers.
    fn letter(id: i64, message: Option<&PoisonMessage>, order: Option<&str>) -> DeadLetter {
        DeadLetter {
            id,
            source: if message.is_some() { "message" } else { "job" }.to_owned(),
            order_id: order.map(str::to_owned),
            channel: message.map(|message| message.channel.to_owned()),
            payload: message.map(|message| message.payload.clone()),
            reason: match message {
                Some(message) => format!("{}: whatever", message.reason),
                None => "the validator's answer was unreadable 3 times; last: x".to_owned(),
            },
            attempts: if message.is_some() { 0 } else { 3 },
            replayed_at: None,
        }
    }

    #[test]
    fn openings_are_counted_from_the_transitions() {
        let breaker = serde_json::json!({"trips": 0, "transitions": [
            {"from": "closed", "to": "open", "count": 2},
            {"from": "half_open", "to": "open", "count": 3},
            {"from": "open", "to": "half_open", "count": 5},
        ]});
        assert_eq!(times_opened(&breaker), 5);
        assert_eq!(times_opened(&serde_json::json!({"transitions": []})), 0);
    }

    #[test]
    fn poison_messages_are_unique_and_really_poison() {
        let messages = poison_messages(7, 3);
        assert_eq!(messages.len(), 3 * (4 + 4 + 1));
        let payloads: BTreeSet<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
        assert_eq!(payloads.len(), messages.len(), "each payload is unique");
        for message in &messages {
            let parsed = Doorbell::parse(message.payload.as_bytes());
            match message.reason {
                MALFORMED => assert!(parsed.is_err(), "{}", message.payload),
                UNKNOWN_ORDER => {
                    assert_eq!(message.channel, JOBS_CHANNEL);
                    assert!(parsed.unwrap().order_id.is_some(), "{}", message.payload);
                }
                other => panic!("unexpected reason {other}"),
            }
        }
        assert_eq!(
            messages
                .iter()
                .filter(|m| m.channel == FULFILMENT_CHANNEL)
                .count(),
            12
        );
    }

    #[test]
    fn each_message_must_be_dead_lettered_as_often_as_published_and_nothing_else() {
        let messages = poison_messages(1, 1);
        let entries: Vec<DeadLetter> = (0..)
            .zip(&messages)
            .map(|(id, message)| letter(id, Some(message), None))
            .collect();
        assert!(message_faults(&messages, |_| 1, &entries).is_empty());
        let faults = message_faults(&messages, |_| 1, &entries[1..]);
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert!(
            faults[0].contains("0 dead letters, expected 1"),
            "{faults:?}"
        );
        let mut doubled = entries.clone();
        doubled.push(letter(99, Some(&messages[0]), None));
        assert_eq!(message_faults(&messages, |_| 1, &doubled).len(), 1);
        assert!(
            message_faults(&messages, |m| 1 + usize::from(*m == messages[0]), &doubled).is_empty()
        );
        let mut wrong_reason = entries.clone();
        wrong_reason[0].reason = "something else".into();
        assert_eq!(message_faults(&messages, |_| 1, &wrong_reason).len(), 1);
        let stranger = PoisonMessage {
            channel: JOBS_CHANNEL,
            payload: "from elsewhere".into(),
            reason: MALFORMED,
        };
        let mut extra = entries;
        extra.push(letter(100, Some(&stranger), None));
        let faults = message_faults(&messages, |_| 1, &extra);
        assert!(faults[0].contains("nobody published"), "{faults:?}");
    }

    #[test]
    fn each_poisoned_job_must_be_dead_lettered_once_after_the_limit() {
        let poisoned: BTreeSet<String> = ["p-1".to_owned(), "p-2".to_owned()].into();
        let entries = vec![letter(1, None, Some("p-1")), letter(2, None, Some("p-2"))];
        assert!(job_faults(&poisoned, &entries, 3).is_empty());
        assert_eq!(
            job_faults(&poisoned, &entries[..1], 3),
            ["p-2: 0 dead letters, expected 1"]
        );
        let mut early = entries.clone();
        early[0].attempts = 2;
        assert_eq!(job_faults(&poisoned, &early, 3).len(), 1);
        let mut good = entries;
        good.push(letter(3, None, Some("g-1")));
        assert_eq!(
            job_faults(&poisoned, &good, 3),
            ["g-1: a good order dead-lettered"]
        );
    }
}
