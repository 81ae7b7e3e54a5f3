//! The validation worker: claims due jobs in waves, asks the circuit breaker before calling,
//! calls the validator for a whole wave concurrently, and writes every outcome back in one
//! statement. Durable state lives in the ledger (SQLite) and the key-value store; a worker
//! holds nothing between invocations, so any number of them can run, and one that dies loses
//! nothing (its claims expire).
//!
//! Everything the worker touches comes in through traits (SQL, key-value, clock, random,
//! the validator, the doorbell publisher), so the whole loop runs natively in tests.

use crate::answer::{CallResult, interpret, request_body};
use crate::doorbell::Doorbell;
use crate::metrics::Tally;
use crate::plan::{JobFacts, dead_letter_expired, deadline_passed, next_step};
use crate::settings::WorkerSettings;
use ledger::{Applied, ClaimedJob, EventKind, JobResult, Ledger, LedgerError, NextStep, Sql};
use orders_core::Timestamp;
use resilience::{
    Admission, BreakerError, BreakerPolicy, Bulkhead, BulkheadError, BulkheadPermit,
    BulkheadPolicy, CallFailure, CallOutcome, CallWindow, CircuitBreaker, Clock, HttpAnswer,
    KvStore, Random, RetryBudget, Transition,
};
use std::future::Future;

/// The Redis channel doorbells are published on: the `channel` of the validator's
/// `[[trigger.redis]]` in `spin.toml`.
pub const JOBS_CHANNEL: &str = "orderly-jobs";
/// The Redis channel that wakes the fulfilment workers: the `channel` of the fulfilment
/// worker's `[[trigger.redis]]` in `spin.toml`. Rung once per wave that validated orders.
pub const FULFILMENT_CHANNEL: &str = "orderly-fulfilment";
/// The bulkhead of the fulfilment workers a doorbell starts (their slots, fleet-wide).
pub const FULFILMENT_DRAINERS: &str = "fulfilment-drainers";
/// The Redis channel that wakes the notification service: the `channel` of the
/// `notification` component's `[[trigger.redis]]` in `spin.toml`. Rung when orders become
/// final (a saga ended, a customer cancelled an order still being validated).
pub const EVENTS_CHANNEL: &str = "orderly-events";
/// The job kind this worker handles.
pub const JOB_KIND: &str = ledger::VALIDATION_JOB;
/// The circuit breaker's (and the retry budget's) name: the dependency it guards.
pub const DEPENDENCY: &str = "external-validator";
/// The bulkhead that limits how many workers drain at once.
const DRAINERS: &str = "validation-drainers";
/// Where the sweeper leaves its heartbeat (JSON, for the health monitor).
pub const HEARTBEAT_KEY: &str = "validator/heartbeat";
/// When the sweeper last pruned old keys (milliseconds, as text).
const HOUSEKEEPING_KEY: &str = "validator/housekeeping-at";
/// How often the sweeper prunes idempotency keys and old window counters.
const HOUSEKEEPING_EVERY_MS: u64 = 60_000;
/// How many jobs one deferral statement moves at most.
const DEFER_CHUNK: u32 = 500;
/// How many expired jobs one sweep handles at most, and how many orders one key-pruning
/// statement looks at.
const SWEEP_LIMIT: u32 = 500;
/// How many key-pruning statements one housekeeping pass runs at most (while each clears a
/// full chunk): up to 10,000 keys. A pass that stops at this bound with keys left leaves the
/// next sweep (a second later) to go on, so pruning keeps up with any sustained intake rate.
const PRUNE_CHUNKS: u32 = 20;

/// The external validator, as the worker calls it.
pub trait ValidatorClient {
    /// Sends a validation request body; the answer read whole, or why there is none.
    fn validate(&self, body: Vec<u8>) -> impl Future<Output = Result<HttpAnswer, CallFailure>>;
}

/// Publishes doorbells (to wake more workers when a backlog is found, and the fulfilment
/// workers when orders were validated).
pub trait DoorbellPublisher {
    /// Publishes `doorbell` on `channel`; a failure is reported, never fatal (the sweepers find
    /// the work).
    fn ring(&self, channel: &str, doorbell: &Doorbell) -> Result<(), String>;
}

/// Why a worker stopped early.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The ledger (SQLite) failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The circuit breaker's state could not be read or written.
    #[error("circuit breaker: {0}")]
    Breaker(#[from] BreakerError),
    /// The drainers' bulkhead could not be read or written.
    #[error("drainer slots: {0}")]
    Bulkhead(#[from] BulkheadError),
    /// The key-value store failed.
    #[error("key-value store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> WorkerError {
    WorkerError::Store(Box::new(error))
}

/// What one invocation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainReport {
    /// Waves run.
    pub waves: u32,
    /// Jobs claimed.
    pub claimed: u32,
    /// Calls made to the validator.
    pub calls: u32,
    /// Orders this invocation moved to a final status.
    pub decided: u32,
    /// Results that found their order already decided (duplicates, late deliveries).
    pub duplicates: u32,
    /// Jobs deferred (open circuit) or held back (retry budget).
    pub deferred: u64,
    /// Jobs and messages dead-lettered.
    pub dead_lettered: u32,
    /// Circuit transitions this invocation won.
    pub transitions: Vec<Transition>,
}

impl DrainReport {
    fn absorb(&mut self, wave: DrainReport) {
        self.waves += wave.waves;
        self.claimed += wave.claimed;
        self.calls += wave.calls;
        self.decided += wave.decided;
        self.duplicates += wave.duplicates;
        self.deferred += wave.deferred;
        self.dead_lettered += wave.dead_lettered;
        self.transitions.extend(wave.transitions);
    }
}

/// What a worker is made of: the stores, the clock, the validator, the publisher.
pub struct WorkerParts<'a, S: Sql, K: KvStore, C: Clock, V: ValidatorClient, P: DoorbellPublisher> {
    /// Orders, jobs, events, dead letters.
    pub ledger: &'a Ledger<S>,
    /// Breaker state, budget and metrics.
    pub store: &'a K,
    /// The time.
    pub clock: &'a C,
    /// The external validator.
    pub validator: &'a V,
    /// Wakes other workers.
    pub publisher: &'a P,
    /// The settings.
    pub settings: &'a WorkerSettings,
}

/// Whether a new order's doorbell is needed: not while some worker drains (it will find the
/// order: a drainer looks for work once more after giving its slot back), and not while the
/// circuit refuses calls (a woken worker could only defer the job; the sweep defers due jobs
/// every second and sends the next probe once the circuit lets one through). Two reads.
pub fn doorbell_needed<K: KvStore, C: Clock>(
    store: &K,
    clock: &C,
    breaker: &BreakerPolicy,
) -> Result<bool, WorkerError> {
    if draining(store, clock, DRAINERS)? {
        return Ok(false);
    }
    let circuit = CircuitBreaker::new(store, clock, DEPENDENCY, breaker.clone());
    Ok(circuit.refuses_until()?.is_none())
}

/// Whether some worker holds a slot of bulkhead `name` now (it drains, and will look for work
/// again after leaving). One read.
pub fn draining<K: KvStore, C: Clock>(
    store: &K,
    clock: &C,
    name: &str,
) -> Result<bool, WorkerError> {
    // Counting live leases reads the stored slots only; the policy plays no part in it.
    let any = BulkheadPolicy {
        slots: 1,
        lease_ms: 1,
    };
    Ok(Bulkhead::new(store, clock, name, any).occupied()? > 0)
}

/// One worker invocation (a doorbell or a sweep).
pub struct ValidationWorker<'a, S, K, C, V, P, R>
where
    S: Sql,
    K: KvStore,
    C: Clock,
    V: ValidatorClient,
    P: DoorbellPublisher,
    R: Random,
{
    parts: WorkerParts<'a, S, K, C, V, P>,
    window: CallWindow<'a, K>,
    rng: R,
    id: String,
}

/// A claimed job sorted before any call is made.
enum Triage {
    Settled(JobResult),
    Call(ClaimedJob),
}

impl<'a, S, K, C, V, P, R> ValidationWorker<'a, S, K, C, V, P, R>
where
    S: Sql,
    K: KvStore,
    C: Clock,
    V: ValidatorClient,
    P: DoorbellPublisher,
    R: Random,
{
    /// A worker named `id` (unique per invocation: it owns the leases it takes).
    pub fn new(parts: WorkerParts<'a, S, K, C, V, P>, rng: R, id: String) -> Self {
        let window = CallWindow::new(
            parts.store,
            &format!("breaker/{DEPENDENCY}"),
            parts.settings.breaker.window_ms,
            parts.settings.breaker.buckets,
        );
        Self {
            parts,
            window,
            rng,
            id,
        }
    }

    fn breaker(&self) -> CircuitBreaker<'a, K, C> {
        CircuitBreaker::new(
            self.parts.store,
            self.parts.clock,
            DEPENDENCY,
            self.parts.settings.breaker.clone(),
        )
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.parts.clock.now_ms())
    }

    /// Handles one message from the jobs channel: a malformed message, or a doorbell about an
    /// order that does not exist, goes to the dead-letter queue; otherwise due jobs are drained.
    pub async fn on_message(
        &mut self,
        channel: &str,
        message: &[u8],
    ) -> Result<DrainReport, WorkerError> {
        let now = self.now();
        let doorbell = match Doorbell::parse(message) {
            Ok(doorbell) => doorbell,
            Err(error) => {
                let reason = format!("malformed doorbell: {error}");
                return self.dead_letter_message(channel, message, &reason);
            }
        };
        let probe = self
            .parts
            .ledger
            .probe_work(JOB_KIND, now, doorbell.order_id.as_ref())?;
        if probe.order_known == Some(false) {
            let reason = format!(
                "doorbell for order {}, which does not exist",
                doorbell.order_id.as_ref().map_or("?", |id| id.as_str())
            );
            return self.dead_letter_message(channel, message, &reason);
        }
        if !probe.due {
            return Ok(DrainReport::default());
        }
        self.drain_guarded().await
    }

    fn dead_letter_message(
        &self,
        channel: &str,
        message: &[u8],
        reason: &str,
    ) -> Result<DrainReport, WorkerError> {
        self.parts
            .ledger
            .dead_letter_message(self.now(), channel, message, reason)?;
        let tally = Tally {
            dead_letters: 1,
            ..Tally::default()
        };
        tally.save(self.parts.store).map_err(store_error)?;
        Ok(DrainReport {
            dead_lettered: 1,
            ..DrainReport::default()
        })
    }

    /// The periodic sweep: fails jobs whose deadline passed, drains due jobs (including those
    /// whose doorbell was lost), prunes expired keys now and then, and leaves a heartbeat.
    ///
    /// The sweep always drains, with a drainer slot if one is free and without one otherwise:
    /// slots live in the key-value store and outlive their holders, so after a crash every slot
    /// may look taken by workers that are gone (until their leases expire) while new orders,
    /// seeing them, ring no doorbell. The sweep is what keeps such orders moving.
    pub async fn sweep(&mut self) -> Result<DrainReport, WorkerError> {
        let mut report = self.expire()?;
        report.absorb(self.drain_looking_again(true).await?);
        self.housekeeping()?;
        let heartbeat = serde_json::json!({
            "at_ms": self.parts.clock.now_ms(),
            "worker": self.id,
            "claimed": report.claimed,
            "decided": report.decided,
        });
        self.parts
            .store
            .set(HEARTBEAT_KEY, heartbeat.to_string().as_bytes())
            .map_err(store_error)?;
        Ok(report)
    }

    fn drainers(&self) -> Bulkhead<'a, K, C> {
        Bulkhead::new(
            self.parts.store,
            self.parts.clock,
            DRAINERS,
            self.parts.settings.drainers.clone(),
        )
    }

    /// Drains if a drainer slot is free (at most `worker_drainers` workers drain at once,
    /// fleet-wide); a worker that finds every slot taken leaves the work to their holders.
    /// After giving its slot back, a worker looks once more: work that arrived while every slot
    /// was taken (its doorbell found no free slot) is drained then, so nothing waits for the
    /// sweep.
    pub async fn drain_guarded(&mut self) -> Result<DrainReport, WorkerError> {
        self.drain_looking_again(false).await
    }

    /// [`ValidationWorker::drain_guarded`], but with `without_slot` draining even when every
    /// drainer slot is taken (the sweep).
    async fn drain_looking_again(
        &mut self,
        without_slot: bool,
    ) -> Result<DrainReport, WorkerError> {
        let started = self.parts.clock.now_ms();
        let mut report = DrainReport::default();
        let drainers = self.drainers();
        loop {
            let permit = drainers.try_enter()?;
            if permit.is_none() && !without_slot {
                return Ok(report);
            }
            let drained = self.drain(&drainers, permit.as_ref()).await;
            if let Some(permit) = permit {
                drainers.leave(permit)?;
            }
            report.absorb(drained?);
            let now = self.now();
            if !self.parts.ledger.probe_work(JOB_KIND, now, None)?.due {
                return Ok(report);
            }
            if now.millis().saturating_sub(started) >= self.parts.settings.drain_ms {
                // Time is up with work left: hand it on rather than hold the handler.
                self.ring_backlog();
                return Ok(report);
            }
        }
    }

    /// Runs waves while they find work, for up to the drain time, renewing the drainer slot
    /// (if it holds one) each wave. The first full wave rings a doorbell so that another worker
    /// joins in.
    async fn drain(
        &mut self,
        drainers: &Bulkhead<'a, K, C>,
        permit: Option<&BulkheadPermit>,
    ) -> Result<DrainReport, WorkerError> {
        let started = self.parts.clock.now_ms();
        let mut report = DrainReport::default();
        let mut rang = false;
        loop {
            let (wave, more) = self.wave().await?;
            let claimed = wave.claimed;
            report.absorb(wave);
            if !more {
                return Ok(report);
            }
            if !rang && claimed >= self.parts.settings.wave_size {
                rang = true;
                self.ring_backlog();
            }
            if self.parts.clock.now_ms().saturating_sub(started) >= self.parts.settings.drain_ms {
                return Ok(report);
            }
            if let Some(permit) = permit
                && !drainers.renew(permit)?
            {
                return Ok(report);
            }
        }
    }

    /// Defers every due job to `until` (the circuit's next probe time), in chunks of
    /// [`DEFER_CHUNK`] so that no single write holds the database long; how many were
    /// deferred.
    fn defer_all_due(&self, now: Timestamp, until: Timestamp) -> Result<u64, WorkerError> {
        let detail = format!("circuit open; next probe at {until}");
        let mut total = 0;
        loop {
            let deferred =
                self.parts
                    .ledger
                    .defer_due(JOB_KIND, now, until, &detail, DEFER_CHUNK)?;
            total += deferred;
            if deferred < u64::from(DEFER_CHUNK) {
                return Ok(total);
            }
        }
    }

    /// Rings a doorbell about no order in particular on `channel`: more work waits there.
    fn ring_backlog_on(&self, channel: &str) {
        if let Err(error) = self.parts.publisher.ring(channel, &Doorbell::backlog()) {
            eprintln!("could not ring a backlog doorbell on {channel}: {error}");
        }
    }

    /// Rings a doorbell about no order in particular: more validation work waits.
    fn ring_backlog(&self) {
        self.ring_backlog_on(JOBS_CHANNEL);
    }

    /// One wave; `true` with it when the wave found work (more may be waiting) or a probe
    /// just closed the circuit.
    async fn wave(&mut self) -> Result<(DrainReport, bool), WorkerError> {
        let settings = self.parts.settings;
        let now = self.now();
        if !self.parts.ledger.probe_work(JOB_KIND, now, None)?.due {
            return Ok((DrainReport::default(), false));
        }
        let breaker = self.breaker();
        // An open circuit defers every due job in one statement, without claiming any.
        if let Some(until) = breaker.refuses_until()? {
            let deferred = self.defer_all_due(now, Timestamp(until))?;
            let tally = Tally {
                deferrals: deferred,
                ..Tally::default()
            };
            tally.save(self.parts.store).map_err(store_error)?;
            let report = DrainReport {
                deferred,
                ..DrainReport::default()
            };
            return Ok((report, false));
        }
        // Claim and sort first, then ask: a probe slot is only taken by a worker that holds a
        // job to probe with (others may defer every unclaimed job meanwhile).
        let lease_until = Timestamp(now.millis() + settings.lease_ms);
        let jobs =
            self.parts
                .ledger
                .claim(JOB_KIND, &self.id, now, lease_until, settings.wave_size)?;
        if jobs.is_empty() {
            return Ok((DrainReport::default(), false));
        }
        // Jobs are created with their order, so a job's creation is the order's acceptance.
        let accepted: Vec<(String, Timestamp)> = jobs
            .iter()
            .map(|job| (job.order_id.clone(), job.created_at))
            .collect();
        let mut tally = Tally::default();
        let mut results = Vec::new();
        let mut to_call = Vec::new();
        for job in jobs {
            match self.triage(job, now) {
                Triage::Settled(result) => results.push(result),
                Triage::Call(job) => to_call.push(job),
            }
        }
        // Jobs settled without a call never ask: a probe slot taken for them would stay
        // taken, unused, until the probe timed out, and every worker would defer meanwhile.
        let admission = if to_call.is_empty() {
            None
        } else {
            Some(breaker.admit()?)
        };
        match &admission {
            Some(Admission::Rejected { until_ms, .. }) => {
                let until = Timestamp(*until_ms);
                tally.deferrals += to_call.len() as u64;
                results.extend(to_call.drain(..).map(|job| {
                    let detail = format!("circuit open; next probe at {until}");
                    put_off(job, until, EventKind::Deferred, detail)
                }));
            }
            Some(Admission::Probe(_)) => {
                let others: Vec<i64> = to_call.drain(1..).map(|job| job.job_id).collect();
                if !others.is_empty() {
                    self.parts.ledger.release_jobs(&self.id, &others)?;
                }
            }
            Some(Admission::Closed { .. } | Admission::Disabled) | None => {}
        }
        let claimed = u32::try_from(results.len() + to_call.len()).unwrap_or(u32::MAX);
        let probing = matches!(admission, Some(Admission::Probe(_)));
        let refused = matches!(admission, Some(Admission::Rejected { .. }));
        // Retries spend the fleet's retry budget (a probe is limited by the breaker instead).
        let retries = to_call.iter().filter(|job| job.attempts > 0).count() as u32;
        let granted = if retries == 0 || probing {
            retries
        } else {
            RetryBudget::new(
                self.parts.store,
                self.parts.clock,
                &self.window,
                settings.budget.clone(),
            )
            .acquire(retries)
            .map_err(store_error)?
        };
        let mut over_budget = retries - granted;
        let mut calls = Vec::new();
        for job in to_call {
            if job.attempts > 0 && over_budget > 0 {
                over_budget -= 1;
                tally.budget_rejections += 1;
                let until = Timestamp(now.millis() + settings.budget_wait_ms);
                let detail = format!("retry budget exhausted; next try at {until}");
                results.push(put_off(job, until, EventKind::BudgetExhausted, detail));
            } else {
                if job.attempts > 0 {
                    tally.retries += 1;
                }
                calls.push(job);
            }
        }
        // No connection is held while the calls are out: they may take seconds.
        self.parts.ledger.release_connection();
        let answers = futures::future::join_all(calls.iter().map(|job| self.call(job))).await;
        let finished = self.now();
        let mut outcomes = Vec::with_capacity(answers.len());
        for (job, (result, latency_ms)) in calls.into_iter().zip(answers) {
            tally.call(&result, latency_ms);
            outcomes.push(CallOutcome {
                failed: result.is_failure(),
                latency_ms,
            });
            let facts = JobFacts {
                attempt: job.attempts + 1,
                poison_count: job.poison_count,
                deadline_at: job.deadline_at,
            };
            let next = next_step(facts, &result, finished, &settings.job, &mut self.rng);
            results.push(JobResult {
                job_id: job.job_id,
                order_id: job.order_id,
                attempt: Some(facts.attempt),
                outcome: Some(result.describe()),
                latency_ms: Some(latency_ms),
                recovered_from: job.previous_owner,
                next,
            });
        }
        let transition = match &admission {
            Some(admission) if !outcomes.is_empty() => {
                self.breaker().record(admission, &outcomes)?
            }
            _ => None,
        };
        let calls_made = outcomes.len() as u32;
        let mut report = DrainReport {
            waves: 1,
            claimed,
            calls: calls_made,
            ..DrainReport::default()
        };
        for result in &results {
            match result.next {
                NextStep::DeadLetter { .. } => {
                    tally.dead_letters += 1;
                    report.dead_lettered += 1;
                }
                NextStep::Defer { .. } => report.deferred += 1,
                _ => {}
            }
        }
        if !results.is_empty() {
            let applied = self.parts.ledger.apply(&self.id, finished, &results)?;
            report.decided = applied.decided.len() as u32;
            report.duplicates = applied.duplicates;
            observe_decisions(&mut tally, &applied, &accepted, finished);
            let validated = applied
                .decided
                .iter()
                .any(|(_, status)| *status == orders_core::OrderStatus::Validated);
            // Their fulfilment jobs were queued with the decisions: wake a fulfilment worker,
            // unless one is draining (it looks for work again before it stops).
            if validated && !draining(self.parts.store, self.parts.clock, FULFILMENT_DRAINERS)? {
                self.ring_backlog_on(FULFILMENT_CHANNEL);
            }
        }
        tally.save(self.parts.store).map_err(store_error)?;
        let closed_by_probe = probing
            && transition
                .as_ref()
                .is_some_and(|t| t.to == resilience::CircuitState::Closed);
        report.transitions.extend(transition);
        let more = claimed > 0 && !probing && !refused;
        Ok((report, more || closed_by_probe))
    }

    /// Settles a claimed job that needs no call (its order is missing or unreadable, or its
    /// deadline passed), or passes it on to be called.
    fn triage(&self, job: ClaimedJob, now: Timestamp) -> Triage {
        let settle = |job: ClaimedJob, next: NextStep| {
            Triage::Settled(JobResult {
                job_id: job.job_id,
                order_id: job.order_id,
                attempt: None,
                outcome: None,
                latency_ms: None,
                recovered_from: job.previous_owner,
                next,
            })
        };
        if job.order.is_none() {
            let reason = match &job.corrupt {
                Some(why) => format!("the order row is unreadable: {why}"),
                None => format!("order {} does not exist", job.order_id),
            };
            return settle(job, NextStep::DeadLetter { reason });
        }
        if now >= job.deadline_at {
            let next = deadline_passed(job.attempts, "the deadline passed while waiting");
            return settle(job, next);
        }
        Triage::Call(job)
    }

    /// Calls the validator about `job`; the result and how long it took.
    async fn call(&self, job: &ClaimedJob) -> (CallResult, u64) {
        let Some(order) = &job.order else {
            return (CallResult::Unreadable("no order".into()), 0);
        };
        let started = self.parts.clock.now_ms();
        let answer = self.parts.validator.validate(request_body(order)).await;
        let ended = self.parts.clock.now_ms();
        (
            interpret(answer, order.id.as_str(), ended),
            ended.saturating_sub(started),
        )
    }

    /// Fails the orders whose deadline passed while their job waited (deferred or backing off)
    /// or lay in the dead-letter queue (no operator replayed it in time).
    fn expire(&mut self) -> Result<DrainReport, WorkerError> {
        let now = self.now();
        let lease_until = Timestamp(now.millis() + self.parts.settings.lease_ms);
        let jobs =
            self.parts
                .ledger
                .claim_expired(JOB_KIND, &self.id, now, lease_until, SWEEP_LIMIT)?;
        if jobs.is_empty() {
            return Ok(DrainReport::default());
        }
        let claimed = jobs.len() as u32;
        let accepted: Vec<(String, Timestamp)> = jobs
            .iter()
            .map(|job| (job.order_id.clone(), job.created_at))
            .collect();
        let results: Vec<JobResult> = jobs
            .into_iter()
            .map(|job| JobResult {
                next: match &job.dead_lettered {
                    Some(reason) => dead_letter_expired(job.attempts, reason),
                    None => deadline_passed(job.attempts, "the deadline passed while waiting"),
                },
                job_id: job.job_id,
                order_id: job.order_id,
                attempt: None,
                outcome: None,
                latency_ms: None,
                recovered_from: job.previous_owner,
            })
            .collect();
        let applied = self.parts.ledger.apply(&self.id, now, &results)?;
        let mut tally = Tally::default();
        observe_decisions(&mut tally, &applied, &accepted, now);
        tally.save(self.parts.store).map_err(store_error)?;
        Ok(DrainReport {
            claimed,
            decided: applied.decided.len() as u32,
            duplicates: applied.duplicates,
            ..DrainReport::default()
        })
    }

    /// Once a minute (fleet-wide, roughly): drops expired idempotency keys (in chunks, up to
    /// [`PRUNE_CHUNKS`] of them; at the next sweep again while more are left) and old window
    /// counters.
    fn housekeeping(&self) -> Result<(), WorkerError> {
        let now = self.parts.clock.now_ms();
        let last = self
            .parts
            .store
            .get(HOUSEKEEPING_KEY)
            .map_err(store_error)?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(last) < HOUSEKEEPING_EVERY_MS {
            return Ok(());
        }
        self.parts
            .store
            .set(HOUSEKEEPING_KEY, now.to_string().as_bytes())
            .map_err(store_error)?;
        let expired_before = Timestamp(now.saturating_sub(self.parts.settings.key_ttl_ms));
        let mut keys_left = false;
        for _ in 0..PRUNE_CHUNKS {
            let cleared = self.parts.ledger.prune_keys(expired_before, SWEEP_LIMIT)?;
            keys_left = cleared >= u64::from(SWEEP_LIMIT);
            if !keys_left {
                break;
            }
        }
        if keys_left {
            // More expired keys than one pass clears: the next sweep goes on at once.
            let due_again = now.saturating_sub(HOUSEKEEPING_EVERY_MS);
            self.parts
                .store
                .set(HOUSEKEEPING_KEY, due_again.to_string().as_bytes())
                .map_err(store_error)?;
        }
        self.breaker().prune()?;
        Ok(())
    }
}

/// Observes how long each order `applied` decided at `at` took from its acceptance (`accepted`
/// holds the claimed jobs' orders and creation times).
fn observe_decisions(
    tally: &mut Tally,
    applied: &Applied,
    accepted: &[(String, Timestamp)],
    at: Timestamp,
) {
    for (order_id, _) in &applied.decided {
        if let Some((_, accepted_at)) = accepted.iter().find(|(id, _)| id == order_id) {
            tally
                .validation_latency
                .observe(at.millis().saturating_sub(accepted_at.millis()));
        }
    }
}

/// A claimed job put back in the queue until `until` without an attempt: the circuit refused
/// the call ([`EventKind::Deferred`]) or the retry budget did ([`EventKind::BudgetExhausted`]).
fn put_off(job: ClaimedJob, until: Timestamp, kind: EventKind, detail: String) -> JobResult {
    JobResult {
        job_id: job.job_id,
        order_id: job.order_id,
        attempt: None,
        outcome: None,
        latency_ms: None,
        recovered_from: job.previous_owner,
        next: NextStep::Defer {
            until,
            kind,
            detail,
        },
    }
}

#[cfg(test)]
mod tests;
