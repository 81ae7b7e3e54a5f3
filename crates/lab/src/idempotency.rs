//! The idempotency experiment: duplicate requests and redelivered messages change nothing. On
//! a fresh `orderly up` with a `redis-server` of its own (the experiment publishes on it):
//!
//! 1. requests repeated with their `Idempotency-Key`, one after another and several at once,
//!    must create one order per key, every repeat answered with the first answer;
//! 2. a key reused with another body, and an order id claimed under another key, must be
//!    refused and create or change nothing;
//! 3. while the orders are validated and fulfilled, each one's doorbell is published again many
//!    times on every channel the workers listen to: each order must still get one validator
//!    call, one decision, each saga step once, one notification and no dead letter, and the
//!    saga's invariants (nothing charged twice, stock conserved) must hold.

use crate::app::{RedisChoice, RunningApp};
use crate::app_http::Http;
use crate::channels::{EVENTS_CHANNEL, FULFILMENT_CHANNEL, JOBS_CHANNEL, Publisher};
use crate::control::Control;
use crate::inspection::Inspection;
use crate::report::{Findings, write_list};
use crate::saga::PAYMENT_LIMIT_CENTS;
use crate::settle::{wait_final, write_stuck};
use crate::submit::{PATIENT, Reply, Submission, keyed_body, orders_by_key, submit};
use anyhow::Context as _;
use catalog::Catalog;
use futures::StreamExt as _;
use saga_audit::mix::{self, MixSettings, PlannedOrder};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What the experiment is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Seeds the orders.
    pub seed: u64,
    /// Keys whose request is sent `sends` times, one after another.
    pub sequential_keys: usize,
    /// Keys whose request is sent `sends` times at once.
    pub concurrent_keys: usize,
    /// Sends of each key's request.
    pub sends: usize,
    /// Keys sent at once in the concurrent phase (each with its `sends` requests).
    pub keys_in_flight: usize,
    /// Keys sent again with another body (and as many order ids claimed under new keys).
    pub reused_keys: usize,
    /// Extra doorbells published for each order on each channel.
    pub redeliveries: usize,
    /// The pause between two of an order's redeliveries.
    pub redelivery_spacing: Duration,
    /// The longest wait for every order to be final.
    pub timeout: Duration,
}

impl Settings {
    /// The standard run: 20 keys sent 5 times in a row, 200 keys sent 5 times at once (16 keys
    /// at a time), 20 keys reused, 10 extra doorbells per order and channel 50 ms apart;
    /// `quick`: 10, 50, 10 and 5.
    pub fn standard(seed: u64, quick: bool) -> Self {
        Self {
            seed,
            sequential_keys: if quick { 10 } else { 20 },
            concurrent_keys: if quick { 50 } else { 200 },
            sends: 5,
            keys_in_flight: 16,
            reused_keys: if quick { 10 } else { 20 },
            redeliveries: if quick { 5 } else { 10 },
            redelivery_spacing: Duration::from_millis(50),
            timeout: Duration::from_secs(120),
        }
    }
}

/// Runs the experiment on a fresh `orderly up` with a `redis-server` of its own (the
/// redeliveries are published on it); what it found.
pub async fn findings(settings: &Settings) -> anyhow::Result<Findings> {
    let variables = [format!("payment_limit_cents={PAYMENT_LIMIT_CENTS}")];
    let app = RunningApp::start(RedisChoice::Server, &variables).await?;
    let found = experiment(settings, &app).await;
    app.stop(false).await;
    found
}

/// One key's request and every answer to it.
struct KeyRun {
    /// The order the key asks for (its id is the key).
    order: PlannedOrder,
    /// How each send ended.
    sends: Vec<Submission>,
}

impl KeyRun {
    /// The order the key's answers name (the created one's, else any).
    fn order_id(&self) -> Option<&str> {
        let replies = || self.sends.iter().filter_map(|send| send.reply.as_ref());
        replies()
            .find(|reply| matches!(reply, Reply::Created { .. }))
            .or_else(|| replies().find(|reply| reply.order_id().is_some()))
            .and_then(Reply::order_id)
    }
}

/// How the answers to one key's sends agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyAnswers {
    /// Answers that created the order (202 without `Idempotent-Replayed`).
    created: usize,
    /// Replays (202 with the header) whose body is the creating answer's.
    faithful_replays: usize,
    /// Replays whose body differs from the creating answer's, or that name another order.
    unfaithful_replays: usize,
    /// Sends no 202 settled, with what ended them.
    unsettled: Vec<String>,
    /// 409 (first request in flight) answers retried.
    in_flight: u32,
    /// 503 answers retried.
    busy: u32,
}

impl KeyAnswers {
    /// Compares every send's settling answer with the one that created the order.
    fn of(sends: &[Submission]) -> Self {
        let mut answers = Self::default();
        let body = |send: &Submission| send.answer.as_ref().and_then(|answer| answer.json().ok());
        let first = sends
            .iter()
            .find(|send| matches!(send.reply, Some(Reply::Created { .. })))
            .and_then(body);
        for send in sends {
            answers.in_flight += send.in_flight;
            answers.busy += send.busy;
            match &send.reply {
                Some(Reply::Created { .. }) => answers.created += 1,
                Some(Reply::Replayed { .. }) if first.is_some() && body(send) == first => {
                    answers.faithful_replays += 1;
                }
                Some(Reply::Replayed { .. }) => answers.unfaithful_replays += 1,
                Some(other) => answers.unsettled.push(format!("{other:?}")),
                None => answers.unsettled.push(format!(
                    "unanswered: {}",
                    send.last_error.as_deref().unwrap_or("?")
                )),
            }
        }
        answers
    }

    /// Adds another key's answers to these.
    fn absorb(&mut self, other: Self) {
        self.created += other.created;
        self.faithful_replays += other.faithful_replays;
        self.unfaithful_replays += other.unfaithful_replays;
        self.unsettled.extend(other.unsettled);
        self.in_flight += other.in_flight;
        self.busy += other.busy;
    }

    /// Whether exactly one send created the order and every other replayed its answer.
    fn held(&self, sends: usize) -> bool {
        self.created == 1
            && self.faithful_replays + 1 == sends
            && self.unfaithful_replays == 0
            && self.unsettled.is_empty()
    }
}

/// Doorbells published again for the orders, and how many a subscriber heard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Redelivered {
    /// Messages published, per channel of [`CHANNELS`].
    published: [u64; CHANNELS.len()],
    /// Messages at least one subscriber received, per channel of [`CHANNELS`].
    heard: [u64; CHANNELS.len()],
}

impl Redelivered {
    /// Adds another order's redeliveries to these.
    fn add(&mut self, other: Self) {
        for channel in 0..CHANNELS.len() {
            self.published[channel] += other.published[channel];
            self.heard[channel] += other.heard[channel];
        }
    }

    /// Whether doorbells were published on every channel and a subscriber heard each one.
    fn all_heard(&self) -> bool {
        self.published == self.heard && self.published.iter().all(|count| *count > 0)
    }
}

/// The channels redeliveries go to, in [`Redelivered`]'s order.
const CHANNELS: [&str; 3] = [JOBS_CHANNEL, FULFILMENT_CHANNEL, EVENTS_CHANNEL];

/// Publishes order `order_id`'s doorbell `times` more on the validation and fulfilment
/// channels, and a backlog doorbell on the events channel as often, `spacing` apart.
async fn redeliver(
    publisher: Publisher,
    order_id: String,
    times: usize,
    spacing: Duration,
) -> anyhow::Result<Redelivered> {
    let mut redelivered = Redelivered::default();
    for round in 0..times {
        if round > 0 {
            tokio::time::sleep(spacing).await;
        }
        for (index, channel) in CHANNELS.into_iter().enumerate() {
            let heard = if channel == EVENTS_CHANNEL {
                publisher.ring_backlog(channel).await?
            } else {
                publisher.ring(channel, &order_id).await?
            };
            redelivered.published[index] += 1;
            redelivered.heard[index] += u64::from(heard > 0);
        }
    }
    Ok(redelivered)
}

/// The experiment on a running app with a `redis-server`.
async fn experiment(settings: &Settings, app: &RunningApp) -> anyhow::Result<Findings> {
    let http = &app.http;
    let redis_url = app
        .redis_url()
        .context("the app has no redis-server to publish on")?;
    let control = Control::new(http.address);
    let orders = mix::plan(
        &Catalog::standard(),
        &MixSettings {
            seed: settings.seed,
            orders: settings.sequential_keys + settings.concurrent_keys,
            cancel_fraction: 0.0,
            max_cancel_delay_ms: 0,
            payment_limit_cents: PAYMENT_LIMIT_CENTS,
            id_prefix: format!("idem-{}", settings.seed),
        },
    );
    let (sequential, concurrent) = orders.split_at(settings.sequential_keys);
    let calls_before = control.validator_calls().await?;
    let mut redeliveries = Redeliveries::new(Publisher::connect(&redis_url).await?, settings);

    let sending = Instant::now();
    eprintln!(
        "{} keys, {} sends each, one after another",
        sequential.len(),
        settings.sends
    );
    let mut sequential_runs = Vec::new();
    for order in sequential {
        let mut sends = Vec::new();
        for _ in 0..settings.sends {
            sends.push(submit(http, &order.id, &keyed_body(order), PATIENT).await);
        }
        let run = KeyRun {
            order: order.clone(),
            sends,
        };
        redeliveries.start(&run);
        sequential_runs.push(run);
    }
    eprintln!(
        "{} keys, {} sends each at once",
        concurrent.len(),
        settings.sends
    );
    let mut concurrent_runs = Vec::new();
    let mut in_flight = futures::stream::iter(concurrent)
        .map(|order| async move {
            let body = keyed_body(order);
            let sends = (0..settings.sends).map(|_| submit(http, &order.id, &body, PATIENT));
            KeyRun {
                order: order.clone(),
                sends: futures::future::join_all(sends).await,
            }
        })
        .buffer_unordered(settings.keys_in_flight.max(1));
    while let Some(run) = in_flight.next().await {
        redeliveries.start(&run);
        concurrent_runs.push(run);
    }
    drop(in_flight);
    let send_time = sending.elapsed();

    eprintln!("{} keys reused", settings.reused_keys);
    let runs = || sequential_runs.iter().chain(&concurrent_runs);
    let reuses = reuse_keys(http, runs().take(settings.reused_keys)).await?;
    let ids: Vec<String> = runs()
        .filter_map(|run| run.order_id().map(str::to_owned))
        .collect();
    eprintln!("waiting for {} orders to be final", ids.len());
    let stuck = wait_final(http, &ids, settings.timeout).await;
    let settle_time = sending.elapsed();
    let redelivered = redeliveries.finish().await?;
    let validator_calls = control
        .validator_calls()
        .await?
        .saturating_sub(calls_before);
    eprintln!("reading every order, its timeline, the notifications and the services");
    let by_key = orders_by_key(&http.every_page("/orders", "orders").await?);
    let observed = Observed {
        phases: [
            Phase::judge(
                "one after another",
                &sequential_runs,
                &by_key,
                settings.sends,
            ),
            Phase::judge("all at once", &concurrent_runs, &by_key, settings.sends),
        ],
        changed: changed_orders(&orders, &by_key),
        orders_listed: by_key.values().map(Vec::len).sum(),
        keys: orders.len(),
        reuses,
        redelivered,
        validator_calls,
        dead_letters: control.stats().await?.dead_letters,
        inspection: Inspection::of(http, &ids).await?,
        ids,
        send_time,
        settle_time,
    };

    let mut findings = Findings::default();
    findings.configure("seed", settings.seed);
    findings.configure(
        "redis",
        "server (always: the experiment publishes on the app's Redis)",
    );
    findings.configure("keys sent one send after another", settings.sequential_keys);
    findings.configure("keys sent all sends at once", settings.concurrent_keys);
    findings.configure("sends per key", settings.sends);
    findings.configure("keys reused", settings.reused_keys);
    findings.configure(
        "redeliveries per order and channel",
        format!(
            "{}, {} ms apart",
            settings.redeliveries,
            settings.redelivery_spacing.as_millis()
        ),
    );
    writeln!(
        findings.body,
        "`orderly up` on {} with its own `redis-server`; {} orders of a seeded mix (seed {}), \
         each sent without an `order_id` (the app makes one) and with its key as the customer, \
         so only the key can keep a repeat from creating a second order. Sent in {:.2} s; \
         every order final {:.2} s after the first send.\n",
        http.address,
        orders.len(),
        settings.seed,
        send_time.as_secs_f64(),
        settle_time.as_secs_f64(),
    )?;
    observed.write(&mut findings.body)?;
    write_stuck(&mut findings.body, http, &stuck).await?;
    writeln!(
        findings.body,
        "\n## Invariants\n\n{}",
        observed.inspection.audit.markdown()
    )?;
    observed.judge(settings, &stuck, &mut findings);
    Ok(findings)
}

/// The doorbells published again for each order as soon as its key created it.
struct Redeliveries<'a> {
    /// Where they are published.
    publisher: Publisher,
    /// How many, how far apart.
    settings: &'a Settings,
    /// Each order's redeliveries under way.
    running: JoinSet<anyhow::Result<Redelivered>>,
}

impl<'a> Redeliveries<'a> {
    /// None started yet.
    fn new(publisher: Publisher, settings: &'a Settings) -> Self {
        Self {
            publisher,
            settings,
            running: JoinSet::new(),
        }
    }

    /// Starts publishing the doorbells of the order `run` created (if it did).
    fn start(&mut self, run: &KeyRun) {
        if let Some(id) = run.order_id() {
            self.running.spawn(redeliver(
                self.publisher.clone(),
                id.to_owned(),
                self.settings.redeliveries,
                self.settings.redelivery_spacing,
            ));
        }
    }

    /// Waits for every order's redeliveries; what was published and heard.
    async fn finish(mut self) -> anyhow::Result<Redelivered> {
        let mut total = Redelivered::default();
        while let Some(done) = self.running.join_next().await {
            total.add(done??);
        }
        Ok(total)
    }
}

/// How the keys of one phase were answered.
struct Phase {
    /// How the phase sends each key's requests (`one after another`, `all at once`).
    name: &'static str,
    /// Keys sent.
    keys: usize,
    /// Every key's answers together.
    total: KeyAnswers,
    /// The keys that did not hold, with why.
    faults: Vec<String>,
}

impl Phase {
    /// Judges each key of `runs`: one creating answer, faithful replays, one order listed.
    fn judge(
        name: &'static str,
        runs: &[KeyRun],
        by_key: &BTreeMap<String, Vec<Value>>,
        sends: usize,
    ) -> Self {
        let mut phase = Self {
            name,
            keys: runs.len(),
            total: KeyAnswers::default(),
            faults: Vec::new(),
        };
        for run in runs {
            let answers = KeyAnswers::of(&run.sends);
            let orders = by_key.get(&run.order.id).map_or(0, Vec::len);
            if !answers.held(sends) || orders != 1 {
                phase
                    .faults
                    .push(format!("{}: {orders} orders, {answers:?}", run.order.id));
            }
            phase.total.absorb(answers);
        }
        phase
    }
}

/// Everything the run saw.
struct Observed {
    /// The sequential and the concurrent phase.
    phases: [Phase; 2],
    /// Keys whose order is not as their first request asked, or orders nobody asked for.
    changed: Vec<String>,
    /// Orders the app lists.
    orders_listed: usize,
    /// Keys sent (each should have made one order).
    keys: usize,
    /// The answers to the reused keys and ids.
    reuses: Reuses,
    /// The doorbells published again.
    redelivered: Redelivered,
    /// Calls that reached the validator during the run.
    validator_calls: u64,
    /// Entries in the dead-letter queue after the run.
    dead_letters: u64,
    /// Every order, read after the run.
    inspection: Inspection,
    /// The orders the keys created.
    ids: Vec<String>,
    /// From the first send to the last answer of the concurrent phase.
    send_time: Duration,
    /// From the first send until every order was final (or the wait ended).
    settle_time: Duration,
}

impl Observed {
    /// Orders whose validator was called other than once.
    fn extra_attempts(&self) -> Vec<String> {
        self.inspection
            .traced
            .iter()
            .filter(|order| order.timeline.count("attempt") != 1)
            .map(|order| format!("{}: {} attempts", order.id, order.timeline.count("attempt")))
            .collect()
    }

    /// The findings' tables.
    fn write(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "## Repeated requests\n\n| sends of each key | keys | created | faithful replays | \
             other replays | unsettled | 409 in flight, retried | 503, retried | keys that \
             held |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for phase in &self.phases {
            let total = &phase.total;
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                phase.name,
                phase.keys,
                total.created,
                total.faithful_replays,
                total.unfaithful_replays,
                total.unsettled.len(),
                total.in_flight,
                total.busy,
                phase.keys - phase.faults.len(),
            )?;
        }
        writeln!(
            out,
            "\nA faithful replay is a 202 with `Idempotent-Replayed: true` whose body equals the \
             creating answer's (same order id, status, items, timestamps); a key holds when one \
             answer created its order, every other is a faithful replay, and the app lists one \
             order for it."
        )?;
        for phase in &self.phases {
            write_list(
                out,
                &format!("Keys sent {} that did not hold", phase.name),
                &phase.faults,
            )?;
        }

        writeln!(
            out,
            "\n## Refused reuses\n\n| request | sent | refused as expected | other answers |\n\
             |---|---:|---:|---|"
        )?;
        for (name, expected, replies) in self.reuses.kinds() {
            let others: Vec<String> = replies
                .iter()
                .filter(|reply| **reply != expected)
                .map(|reply| format!("{reply:?}"))
                .collect();
            writeln!(
                out,
                "| {name} | {} | {} | {} |",
                replies.len(),
                replies.len() - others.len(),
                if others.is_empty() {
                    "–".to_owned()
                } else {
                    others.join("; ")
                }
            )?;
        }
        writeln!(
            out,
            "\nOrders in the app: {} for {} keys.",
            self.orders_listed, self.keys
        )?;
        write_list(
            out,
            "Orders created or changed by a refused request",
            &self.changed,
        )?;

        writeln!(
            out,
            "\n## Redeliveries\n\n| channel | doorbells published again | heard by a subscriber \
             |\n|---|---:|---:|"
        )?;
        for (index, channel) in CHANNELS.into_iter().enumerate() {
            writeln!(
                out,
                "| `{channel}` | {} | {} |",
                self.redelivered.published[index], self.redelivered.heard[index]
            )?;
        }
        let inspection = &self.inspection;
        let extra_attempts = self.extra_attempts();
        writeln!(out, "\n| figure | value |\n|---|---|")?;
        writeln!(out, "| final statuses | {} |", inspection.statuses())?;
        writeln!(out, "| validator calls | {} |", self.validator_calls)?;
        writeln!(
            out,
            "| orders with other than one validator attempt | {} |",
            extra_attempts.len()
        )?;
        writeln!(
            out,
            "| orders with a transition repeated or missing | {} |",
            inspection.timeline_faults.len()
        )?;
        writeln!(
            out,
            "| `duplicate_ignored` events (late decisions dropped) | {} |",
            inspection.events("duplicate_ignored")
        )?;
        writeln!(
            out,
            "| confirmed or cancelled orders notified exactly once | {} of {} |",
            inspection.notifiable - inspection.notification_faults.len(),
            inspection.notifiable
        )?;
        writeln!(out, "| dead letters | {} |", self.dead_letters)?;
        write_list(out, "Timeline faults", &inspection.timeline_faults)?;
        write_list(out, "Attempts", &extra_attempts)?;
        write_list(out, "Notifications", &inspection.notification_faults)
    }

    /// The figures, and a verdict on each hypothesis.
    fn judge(&self, settings: &Settings, stuck: &[String], findings: &mut Findings) {
        let inspection = &self.inspection;
        let in_flight: u32 = self.phases.iter().map(|phase| phase.total.in_flight).sum();
        let published: u64 = self.redelivered.published.iter().sum();
        let extra_attempts = self.extra_attempts();
        findings.figure("orders", self.ids.len() as f64);
        findings.figure("validator_calls", self.validator_calls as f64);
        findings.figure("in_flight_answers_retried", f64::from(in_flight));
        findings.figure("redeliveries_published", published as f64);
        findings.figure(
            "duplicate_ignored_events",
            inspection.events("duplicate_ignored") as f64,
        );
        findings.figure("dead_letters", self.dead_letters as f64);
        findings.figure("send_secs", self.send_time.as_secs_f64());
        findings.figure("settle_secs", self.settle_time.as_secs_f64());
        findings.figure("failed_invariants", inspection.failed_invariants() as f64);
        for phase in &self.phases {
            let total = &phase.total;
            findings.check(
                format!(
                    "Each key's request sent {} times {} creates exactly one order; one answer \
                     is 202 (created), each other is 202 with `Idempotent-Replayed: true` and \
                     the same body (409 in flight is retried)",
                    settings.sends, phase.name
                ),
                format!(
                    "{} of {} keys held: {} created, {} faithful replays, {} other replays, {} \
                     unsettled ({} 409s retried)",
                    phase.keys - phase.faults.len(),
                    phase.keys,
                    total.created,
                    total.faithful_replays,
                    total.unfaithful_replays,
                    total.unsettled.len(),
                    total.in_flight
                ),
                phase.faults.is_empty(),
            );
        }
        let reuses = &self.reuses;
        findings.check(
            format!(
                "A key reused with another body is refused (422 idempotency-key-reused) and an \
                 order id claimed under another key too (409 duplicate-order), {} of each; \
                 neither creates nor changes an order (orders in the app = keys, each with its \
                 first body's items)",
                settings.reused_keys
            ),
            format!(
                "{} + {} refused as expected of {} + {}; {} orders for {} keys; {} created or \
                 changed",
                reuses.refused(&reuses.other_body, &Reply::KeyReused),
                reuses.refused(&reuses.taken_id, &Reply::DuplicateOrder),
                reuses.other_body.len(),
                reuses.taken_id.len(),
                self.orders_listed,
                self.keys,
                self.changed.len()
            ),
            reuses.all_refused()
                && reuses.other_body.len() == settings.reused_keys
                && self.orders_listed == self.keys
                && self.changed.is_empty(),
        );
        findings.check(
            format!(
                "Redelivered doorbells change nothing: with {} extra doorbells per order on each \
                 of the {} channels (every one heard by the app), every order ends final within \
                 {} s with exactly one validator call (calls = orders), one decision, each saga \
                 step done at most once (all four if confirmed), one end, one notification, and \
                 no dead letter",
                settings.redeliveries,
                CHANNELS.len(),
                settings.timeout.as_secs()
            ),
            format!(
                "{published} doorbells published, {} heard; {} of {} final; {} validator \
                 calls; {} orders with other than one attempt; {} timeline faults; {} \
                 notification faults; {} dead letters",
                self.redelivered.heard.iter().sum::<u64>(),
                self.ids.len() - stuck.len(),
                self.ids.len(),
                self.validator_calls,
                extra_attempts.len(),
                inspection.timeline_faults.len(),
                inspection.notification_faults.len(),
                self.dead_letters
            ),
            self.redelivered.all_heard()
                && stuck.is_empty()
                && self.validator_calls == self.ids.len() as u64
                && extra_attempts.is_empty()
                && inspection.once_each()
                && self.dead_letters == 0,
        );
        findings.check(
            "Every saga invariant holds: each order charged at most once (a confirmed one \
             exactly once), stock conserved, nothing kept for an order not confirmed",
            format!(
                "{} of {} invariants failed",
                inspection.failed_invariants(),
                inspection.audit.checks.len()
            ),
            inspection.audit.passed(),
        );
    }
}

/// Keys whose listed orders are not as their first request asked, and orders no key asked
/// for.
fn changed_orders(planned: &[PlannedOrder], by_key: &BTreeMap<String, Vec<Value>>) -> Vec<String> {
    let planned: BTreeMap<&str, &PlannedOrder> = planned
        .iter()
        .map(|order| (order.id.as_str(), order))
        .collect();
    by_key
        .iter()
        .filter_map(|(key, listed)| match planned.get(key.as_str()) {
            None => Some(format!("{key}: an order nobody asked for")),
            Some(order) if listed.iter().any(|found| !same_items(found, order)) => {
                Some(format!("{key}: items differ from its first request's"))
            }
            Some(_) => None,
        })
        .collect()
}

/// The answers to the reused keys and ids.
struct Reuses {
    /// Each key sent again with another body.
    other_body: Vec<Reply>,
    /// Each order's id claimed by a body under a new key.
    taken_id: Vec<Reply>,
}

impl Reuses {
    /// Each kind of reuse: its name, the answer it must get, and the answers it got.
    fn kinds(&self) -> [(&'static str, Reply, &[Reply]); 2] {
        [
            (
                "same key, another body → 422 idempotency-key-reused",
                Reply::KeyReused,
                &self.other_body,
            ),
            (
                "another key, the order's id → 409 duplicate-order",
                Reply::DuplicateOrder,
                &self.taken_id,
            ),
        ]
    }

    /// How many of `replies` are `expected`.
    fn refused(&self, replies: &[Reply], expected: &Reply) -> usize {
        replies.iter().filter(|reply| *reply == expected).count()
    }

    /// Whether every reuse got the answer it must.
    fn all_refused(&self) -> bool {
        self.kinds()
            .iter()
            .all(|(_, expected, replies)| self.refused(replies, expected) == replies.len())
    }
}

/// Sends each run's key again with another body, and its order's id under a new key.
async fn reuse_keys(http: &Http, runs: impl Iterator<Item = &KeyRun>) -> anyhow::Result<Reuses> {
    let mut reuses = Reuses {
        other_body: Vec::new(),
        taken_id: Vec::new(),
    };
    for run in runs {
        let order_id = run
            .order_id()
            .with_context(|| format!("key {} created no order", run.order.id))?;
        let mut other = run.order.clone();
        let (_, quantity) = &mut other.lines[0];
        *quantity = if *quantity < 1000 { *quantity + 1 } else { 1 };
        let answered = submit(http, &run.order.id, &keyed_body(&other), PATIENT).await;
        reuses
            .other_body
            .push(settled_reply(&answered, &run.order.id)?);
        let mut claiming: Value = serde_json::from_str(&keyed_body(&run.order))?;
        claiming["order_id"] = order_id.into();
        let new_key = format!("{}-again", run.order.id);
        let answered = submit(http, &new_key, &claiming.to_string(), PATIENT).await;
        reuses.taken_id.push(settled_reply(&answered, &new_key)?);
    }
    Ok(reuses)
}

/// The reply that settled a submission, or an error when the app never answered.
fn settled_reply(submission: &Submission, key: &str) -> anyhow::Result<Reply> {
    submission.reply.clone().with_context(|| {
        format!(
            "key {key}: no answer ({})",
            submission.last_error.as_deref().unwrap_or("?")
        )
    })
}

/// Whether a listed order has exactly `planned`'s lines.
fn same_items(listed: &Value, planned: &PlannedOrder) -> bool {
    let items: Vec<(String, u64)> = listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    (
                        item["product"].as_str().unwrap_or("").to_owned(),
                        item["quantity"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<(String, u64)> = planned
        .lines
        .iter()
        .map(|(product, quantity)| (product.clone(), u64::from(*quantity)))
        .collect();
    items == expected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_http::Answer;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    /// A send settled by an answer with `status` (replayed or not) and `body`, after
    /// `in_flight` answers 409.
    fn send(status: u16, replayed: bool, body: &str, in_flight: u32) -> Submission {
        let mut headers = HeaderMap::new();
        if replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        let answer = Answer {
            status,
            headers,
            body: Bytes::from(body.to_owned()),
        };
        Submission {
            reply: Some(Reply::of(&answer)),
            answer: Some(answer),
            answered_at: Some(Instant::now()),
            tries: in_flight + 1,
            in_flight,
            busy: 0,
            unanswered: 0,
            last_error: None,
        }
    }

    const FIRST: &str = r#"{"order": {"id": "o-1", "status": "processing", "created_at": 5}}"#;

    #[test]
    fn one_creation_and_faithful_replays_hold() {
        let sends = [
            send(202, true, FIRST, 2),
            send(202, false, FIRST, 0),
            send(202, true, FIRST, 1),
        ];
        let answers = KeyAnswers::of(&sends);
        assert_eq!(answers.created, 1);
        assert_eq!(answers.faithful_replays, 2);
        assert_eq!(answers.in_flight, 3);
        assert!(answers.held(3));
        assert!(!answers.held(4), "a send is missing");
    }

    #[test]
    fn a_second_creation_or_a_different_replay_does_not_hold() {
        let twice = KeyAnswers::of(&[send(202, false, FIRST, 0), send(202, false, FIRST, 0)]);
        assert_eq!(twice.created, 2);
        assert!(!twice.held(2));
        let other = r#"{"order": {"id": "o-1", "status": "validated", "created_at": 5}}"#;
        let changed = KeyAnswers::of(&[send(202, false, FIRST, 0), send(202, true, other, 0)]);
        assert_eq!(changed.unfaithful_replays, 1);
        assert!(!changed.held(2));
        let never_created = KeyAnswers::of(&[send(202, true, FIRST, 0), send(202, true, FIRST, 0)]);
        assert_eq!(never_created.unfaithful_replays, 2);
        assert!(!never_created.held(2));
    }

    #[test]
    fn a_send_left_unsettled_does_not_hold() {
        let busy = r#"{"type": "/problems/idempotency-key-in-flight"}"#;
        let answers = KeyAnswers::of(&[send(202, false, FIRST, 0), send(409, false, busy, 9)]);
        assert_eq!(answers.unsettled, ["InFlight"]);
        assert!(!answers.held(2));
        let mut lost = send(202, false, FIRST, 0);
        lost.answer = None;
        lost.reply = None;
        lost.last_error = Some("connection refused".into());
        let answers = KeyAnswers::of(&[send(202, false, FIRST, 0), lost]);
        assert_eq!(answers.unsettled, ["unanswered: connection refused"]);
    }

    #[test]
    fn redeliveries_count_as_heard_only_when_every_one_was() {
        let mut total = Redelivered::default();
        assert!(!total.all_heard(), "nothing published proves nothing");
        total.add(Redelivered {
            published: [2, 2, 2],
            heard: [2, 2, 2],
        });
        assert!(total.all_heard());
        total.add(Redelivered {
            published: [1, 1, 1],
            heard: [1, 0, 1],
        });
        assert!(!total.all_heard());
    }

    #[test]
    fn listed_orders_are_grouped_by_customer_and_compared_by_items() {
        let planned = PlannedOrder {
            id: "k-1".into(),
            lines: vec![("Pizza".into(), 2)],
            kind: saga_audit::mix::Kind::Small,
            cancel: false,
            cancel_after_ms: 0,
        };
        let listed = [
            serde_json::json!({"id": "a", "customer": "k-1",
                "items": [{"product": "Pizza", "quantity": 2}]}),
            serde_json::json!({"id": "b", "customer": "k-1",
                "items": [{"product": "Pizza", "quantity": 3}]}),
        ];
        let by_customer = orders_by_key(&listed);
        assert_eq!(by_customer["k-1"].len(), 2);
        assert!(same_items(&listed[0], &planned));
        assert!(!same_items(&listed[1], &planned));
    }
}
