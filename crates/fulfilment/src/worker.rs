//! The fulfilment worker: claims due sagas in batches and runs each as far as it goes now,
//! step by step, writing every step to the ledger before the next. A step whose service is
//! failing is retried later (with backoff, under that service's retry budget), one whose
//! circuit is open waits for the next probe, and one that needs a person goes to the
//! dead-letter queue. Nothing is held between invocations: a worker that dies mid-saga loses
//! nothing (its lease expires; the step it was making is made again, which is harmless).

use crate::requests::{OrderFacts, ServiceRequest, StepAnswer, interpret, request_for};
use crate::settings::FulfilmentSettings;
use ledger::{
    ClaimedJob, EventKind, FULFILMENT_JOB, JobResult, Ledger, LedgerError, NextStep, SagaProgress,
    Sql, StoredSaga,
};
use orders_core::{Order, Timestamp};
use pipeline::{Doorbell, DoorbellPublisher, EVENTS_CHANNEL, FULFILMENT_DRAINERS};
use resilience::{
    Admission, BreakerError, Bulkhead, BulkheadError, BulkheadPermit, CallFailure, CallOutcome,
    CallWindow, CircuitBreaker, Clock, FailureClass, HttpAnswer, KvStore, Random, RetryBudget,
    Transition, classify,
};
use saga::{Action, CancelError, Ending, GiveUp, Outcome, Phase, Saga, Service};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

/// Where the sweeper leaves its heartbeat (JSON, for the health monitor).
pub const FULFILMENT_HEARTBEAT_KEY: &str = "fulfilment/heartbeat";

/// The services, as the worker calls them.
pub trait ServiceClient {
    /// Sends `request` to its service; the answer read whole, or why there is none.
    fn send(
        &self,
        request: &ServiceRequest,
    ) -> impl Future<Output = Result<HttpAnswer, CallFailure>>;
}

/// What products cost.
pub trait PriceList {
    /// The unit price of `product` in cents, if it has one.
    fn unit_price_cents(&self, product: &str) -> Option<u64>;
}

/// The catalogue's unit prices.
impl PriceList for catalog::Catalog {
    fn unit_price_cents(&self, product: &str) -> Option<u64> {
        self.find(product).map(|found| found.price_cents)
    }
}

/// Why a worker stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FulfilmentError {
    /// The ledger (SQLite) failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A circuit breaker's state could not be read or written.
    #[error("circuit breaker: {0}")]
    Breaker(#[from] BreakerError),
    /// The drainers' bulkhead could not be read or written.
    #[error("drainer slots: {0}")]
    Bulkhead(#[from] BulkheadError),
    /// The key-value store failed.
    #[error("key-value store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> FulfilmentError {
    FulfilmentError::Store(Box::new(error))
}

/// What one invocation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FulfilmentReport {
    /// Sagas claimed.
    pub claimed: u32,
    /// Calls made to the services.
    pub calls: u32,
    /// Steps and compensations done.
    pub steps: u32,
    /// Sagas that ended confirmed.
    pub confirmed: u32,
    /// Sagas that ended cancelled.
    pub cancelled: u32,
    /// Sagas put off: a circuit was open or a retry budget spent.
    pub deferred: u32,
    /// Steps to be retried after a failure.
    pub retried: u32,
    /// Sagas and messages dead-lettered.
    pub dead_lettered: u32,
    /// Circuit transitions this invocation won.
    pub transitions: Vec<Transition>,
}

impl FulfilmentReport {
    fn absorb(&mut self, other: FulfilmentReport) {
        self.claimed += other.claimed;
        self.calls += other.calls;
        self.steps += other.steps;
        self.confirmed += other.confirmed;
        self.cancelled += other.cancelled;
        self.deferred += other.deferred;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.transitions.extend(other.transitions);
    }
}

/// What [`FulfilmentWorker::step_held`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum HeldStep {
    /// The service answered and the saga moved on (recorded): the saga now.
    Moved(Saga),
    /// No answer to act on; nothing was recorded for the saga.
    NoAnswer(NoAnswer),
}

/// Why a held step got no answer to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum NoAnswer {
    /// Another worker took the job over (the lease had passed).
    LostLease,
    /// The service's circuit is open until `until`.
    CircuitOpen {
        /// The service.
        service: Service,
        /// When the next probe may go.
        until: Timestamp,
    },
    /// The call failed (connect error, timeout, 5xx, an answer no service gives).
    Failed {
        /// The service.
        service: Service,
        /// How it failed.
        failure: CallFailure,
    },
    /// A compensation was refused: the job went to the dead-letter queue for a person.
    Stuck,
}

/// One attempt at a saga's next action, before the worker writes what came of it.
enum Attempt {
    /// Another worker holds the job now.
    LostLease,
    /// No call: the order has no price to charge by.
    Unpriced(Outcome),
    /// No call now: the budget or the circuit puts the saga off.
    PutOff {
        until: Timestamp,
        kind: EventKind,
        detail: String,
    },
    /// The service was called.
    Called(Called),
}

/// A call made for one attempt.
struct Called {
    answer: StepAnswer,
    latency_ms: u64,
    ended_ms: u64,
    transitions: Vec<Transition>,
}

/// What a fulfilment worker is made of.
pub struct FulfilmentParts<
    'a,
    S: Sql,
    K: KvStore,
    C: Clock,
    V: ServiceClient,
    P: PriceList,
    D: DoorbellPublisher,
> {
    /// Orders, jobs, sagas, events, dead letters.
    pub ledger: &'a Ledger<S>,
    /// Breaker state and budgets.
    pub store: &'a K,
    /// The time.
    pub clock: &'a C,
    /// The services.
    pub services: &'a V,
    /// What products cost.
    pub prices: &'a P,
    /// Rings the notification service's doorbell when orders become final.
    pub publisher: &'a D,
    /// The settings.
    pub settings: &'a FulfilmentSettings,
}

/// One worker invocation (a doorbell or a sweep).
pub struct FulfilmentWorker<'a, S, K, C, V, P, D, R>
where
    S: Sql,
    K: KvStore,
    C: Clock,
    V: ServiceClient,
    P: PriceList,
    D: DoorbellPublisher,
    R: Random,
{
    parts: FulfilmentParts<'a, S, K, C, V, P, D>,
    rng: RefCell<R>,
    id: String,
}

impl<'a, S, K, C, V, P, D, R> FulfilmentWorker<'a, S, K, C, V, P, D, R>
where
    S: Sql,
    K: KvStore,
    C: Clock,
    V: ServiceClient,
    P: PriceList,
    D: DoorbellPublisher,
    R: Random,
{
    /// A worker named `id` (unique per invocation: it owns the leases it takes).
    pub fn new(parts: FulfilmentParts<'a, S, K, C, V, P, D>, rng: R, id: String) -> Self {
        Self {
            parts,
            rng: RefCell::new(rng),
            id,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.parts.clock.now_ms())
    }

    /// Handles one message from the fulfilment channel: a malformed message goes to the
    /// dead-letter queue; otherwise due sagas are run if a drainer slot is free
    /// ([`FulfilmentWorker::drain_guarded`]).
    pub async fn on_message(
        &self,
        channel: &str,
        message: &[u8],
    ) -> Result<FulfilmentReport, FulfilmentError> {
        if let Err(error) = Doorbell::parse(message) {
            let reason = format!("malformed doorbell: {error}");
            self.parts
                .ledger
                .dead_letter_message(self.now(), channel, message, &reason)?;
            return Ok(FulfilmentReport {
                dead_lettered: 1,
                ..FulfilmentReport::default()
            });
        }
        self.drain_guarded().await
    }

    /// The periodic sweep: runs due sagas (including those whose doorbell was lost, and those
    /// a dead worker held) and leaves a heartbeat.
    pub async fn sweep(&self) -> Result<FulfilmentReport, FulfilmentError> {
        let report = self.drain().await?;
        let heartbeat = serde_json::json!({
            "at_ms": self.parts.clock.now_ms(),
            "worker": self.id,
            "claimed": report.claimed,
            "confirmed": report.confirmed,
            "cancelled": report.cancelled,
        });
        self.parts
            .store
            .set(FULFILMENT_HEARTBEAT_KEY, heartbeat.to_string().as_bytes())
            .map_err(store_error)?;
        Ok(report)
    }

    /// Runs batches of due sagas until none is due or the drain time is up (the sweep: it
    /// needs no drainer slot).
    pub async fn drain(&self) -> Result<FulfilmentReport, FulfilmentError> {
        self.drain_holding(None).await
    }

    /// Runs due sagas holding a drainer slot: at most `fulfilment_drainers` doorbell-started
    /// workers do at once, fleet-wide, so a flood of doorbells cannot take every Redis handler
    /// slot of the host. A worker that finds every slot taken leaves the work to their
    /// holders; one that gives its slot back looks once more, so work that arrived meanwhile
    /// (whose doorbell found no slot) does not wait for the sweep.
    pub async fn drain_guarded(&self) -> Result<FulfilmentReport, FulfilmentError> {
        let started = self.parts.clock.now_ms();
        let drainers = Bulkhead::new(
            self.parts.store,
            self.parts.clock,
            FULFILMENT_DRAINERS,
            self.parts.settings.drainers.clone(),
        );
        let mut report = FulfilmentReport::default();
        loop {
            let Some(permit) = drainers.try_enter()? else {
                return Ok(report);
            };
            let drained = self.drain_holding(Some((&drainers, &permit))).await;
            drainers.leave(permit)?;
            report.absorb(drained?);
            let now = self.now();
            let elapsed = now.millis().saturating_sub(started);
            if !self.parts.ledger.probe_work(FULFILMENT_JOB, now, None)?.due
                || elapsed >= self.parts.settings.drain_ms
            {
                return Ok(report);
            }
        }
    }

    /// Runs batches of due sagas until none is due, the drain time is up, or the drainer slot
    /// it holds (if any) can no longer be renewed.
    async fn drain_holding(
        &self,
        slot: Option<(&Bulkhead<'a, K, C>, &BulkheadPermit)>,
    ) -> Result<FulfilmentReport, FulfilmentError> {
        let started = self.parts.clock.now_ms();
        let mut report = FulfilmentReport::default();
        loop {
            let batch = self.batch().await?;
            let claimed = batch.claimed;
            report.absorb(batch);
            let elapsed = self.parts.clock.now_ms().saturating_sub(started);
            if claimed == 0 || elapsed >= self.parts.settings.drain_ms {
                return Ok(report);
            }
            if let Some((drainers, permit)) = slot
                && !drainers.renew(permit)?
            {
                return Ok(report);
            }
        }
    }

    /// Claims up to a batch of due sagas and runs them concurrently; when some ended, rings
    /// the notification service's doorbell (a lost one waits for its sweep).
    async fn batch(&self) -> Result<FulfilmentReport, FulfilmentError> {
        let now = self.now();
        let lease_until = Timestamp(now.millis() + self.parts.settings.lease_ms);
        let jobs = self.parts.ledger.claim(
            FULFILMENT_JOB,
            &self.id,
            now,
            lease_until,
            self.parts.settings.batch,
        )?;
        if jobs.is_empty() {
            return Ok(FulfilmentReport::default());
        }
        let ids: Vec<&str> = jobs.iter().map(|job| job.order_id.as_str()).collect();
        let mut stored: HashMap<String, StoredSaga> = self
            .parts
            .ledger
            .sagas(&ids)?
            .into_iter()
            .map(|saga| (saga.order_id.clone(), saga))
            .collect();
        let mut report = FulfilmentReport {
            claimed: jobs.len() as u32,
            ..FulfilmentReport::default()
        };
        let runs = jobs.into_iter().map(|job| {
            let saga = stored.remove(&job.order_id);
            self.run(job, saga)
        });
        for run in futures::future::join_all(runs).await {
            report.absorb(run?);
        }
        self.ring_if_ended(&report);
        Ok(report)
    }

    /// Rings the notification service's doorbell when `report` counts sagas that ended (a
    /// lost ring is caught up by its sweep).
    fn ring_if_ended(&self, report: &FulfilmentReport) {
        if report.confirmed + report.cancelled > 0 {
            let rung = self
                .parts
                .publisher
                .ring(EVENTS_CHANNEL, &Doorbell::backlog());
            if let Err(error) = rung {
                eprintln!("could not ring the doorbell on {EVENTS_CHANNEL}: {error}");
            }
        }
    }

    /// Runs one saga as far as it goes now.
    async fn run(
        &self,
        job: ClaimedJob,
        stored: Option<StoredSaga>,
    ) -> Result<FulfilmentReport, FulfilmentError> {
        let mut report = FulfilmentReport::default();
        let Some(order) = job.order.clone() else {
            let reason = match &job.corrupt {
                Some(why) => format!("the order row is unreadable: {why}"),
                None => format!("order {} does not exist", job.order_id),
            };
            self.dead_letter(&job, None, reason, &mut report)?;
            return Ok(report);
        };
        let mut saga = match stored.as_ref().and_then(|saga| saga.state.as_deref()) {
            None => Saga::new(),
            Some(json) => match serde_json::from_str::<Saga>(json) {
                Ok(saga) => saga,
                Err(error) => {
                    let reason = format!("the saga's stored state is unreadable: {error}");
                    self.dead_letter(&job, None, reason, &mut report)?;
                    return Ok(report);
                }
            },
        };
        if let Some(note) = stored
            .as_ref()
            .and_then(|saga| saga.cancel_requested.clone())
        {
            saga = self.stop(&job, &saga, EventKind::CancelRequested, |saga| {
                saga.cancel(note)
            })?;
        }
        let deadline = job.created_at.millis() + self.parts.settings.deadline_ms;
        if self.now().millis() >= deadline {
            let detail = format!(
                "not fulfilled within {} s of validation",
                self.parts.settings.deadline_ms / 1_000
            );
            saga = self.stop(&job, &saga, EventKind::StepRefused, |saga| {
                saga.give_up(GiveUp::DeadlinePassed, detail)
            })?;
        }
        let mut attempts = job.attempts;
        loop {
            let action = saga.next_action();
            let Some(service) = action.service() else {
                return Ok(report);
            };
            match self
                .step(&job, &order, &saga, action, service, attempts, &mut report)
                .await?
            {
                Some(next) => {
                    saga = next;
                    attempts = 0;
                }
                None => return Ok(report),
            }
            // A cancellation asked for while the step was out is honoured before the next.
            if matches!(saga.phase(), Phase::Running { .. })
                && let Some(note) = self.cancel_request(&job)?
            {
                saga = self.stop(&job, &saga, EventKind::CancelRequested, |saga| {
                    saga.cancel(note)
                })?;
            }
        }
    }

    /// The customer's cancellation note for `job`'s order, if one was asked for.
    fn cancel_request(&self, job: &ClaimedJob) -> Result<Option<String>, FulfilmentError> {
        let stored = self.parts.ledger.sagas(&[job.order_id.as_str()])?;
        Ok(stored
            .into_iter()
            .next()
            .and_then(|saga| saga.cancel_requested))
    }

    /// Stops a running saga with `stop` (a cancellation or the deadline) and records it as
    /// `event`; a saga that cannot stop (its charge is captured) or has stopped already is
    /// left as it is.
    fn stop(
        &self,
        job: &ClaimedJob,
        saga: &Saga,
        event: EventKind,
        stop: impl FnOnce(&Saga) -> Result<Saga, CancelError>,
    ) -> Result<Saga, FulfilmentError> {
        if !matches!(saga.phase(), Phase::Running { .. }) {
            return Ok(saga.clone());
        }
        let Ok(stopped) = stop(saga) else {
            return Ok(saga.clone());
        };
        if let (Phase::Compensating { reached, .. }, Some(cancellation)) =
            (stopped.phase(), stopped.cancellation())
        {
            let detail = format!(
                "{}; undoing what was done up to {reached}",
                cancellation.detail
            );
            self.record(job, &stopped, event, None, &detail, false)?;
        }
        Ok(stopped)
    }

    /// Makes one step: asks the service's breaker and budget, calls, and records the answer.
    /// The saga after the step if it moved on; `None` when this run stops (the saga waits for
    /// a retry, the circuit, the budget or a person, or another worker holds it now).
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        job: &ClaimedJob,
        order: &Order,
        saga: &Saga,
        action: Action,
        service: Service,
        attempts: u32,
        report: &mut FulfilmentReport,
    ) -> Result<Option<Saga>, FulfilmentError> {
        let settings = self.parts.settings;
        match self.attempt(job, order, action, service, attempts).await? {
            Attempt::LostLease => Ok(None),
            Attempt::Unpriced(outcome) => self.answered(job, saga, action, outcome, report),
            Attempt::PutOff {
                until,
                kind,
                detail,
            } => {
                self.put_off(job, until, kind, detail, report)?;
                Ok(None)
            }
            Attempt::Called(call) => {
                report.calls += 1;
                report.transitions.extend(call.transitions);
                let attempt = attempts + 1;
                let described = format!("{}: {}", action_name(action), call.answer.describe());
                match call.answer {
                    StepAnswer::Done => self.answered(job, saga, action, Outcome::Done, report),
                    StepAnswer::Refused(detail) => {
                        self.answered(job, saga, action, Outcome::Refused { detail }, report)
                    }
                    StepAnswer::Failed(failure) => {
                        let wait = match classify(&failure) {
                            FailureClass::Retryable { not_before_ms } => settings
                                .retry
                                .backoff_ms(attempt, &mut *self.rng.borrow_mut())
                                .max(not_before_ms.unwrap_or(0)),
                            FailureClass::Permanent => settings.retry.max_delay_ms,
                        };
                        let at = Timestamp(call.ended_ms.saturating_add(wait));
                        report.retried += 1;
                        let result = JobResult {
                            job_id: job.job_id,
                            order_id: job.order_id.clone(),
                            attempt: Some(attempt),
                            outcome: Some(described.clone()),
                            latency_ms: Some(call.latency_ms),
                            recovered_from: job.previous_owner.clone(),
                            next: NextStep::Retry {
                                at,
                                error: described,
                            },
                        };
                        self.parts
                            .ledger
                            .apply(&self.id, Timestamp(call.ended_ms), &[result])?;
                        Ok(None)
                    }
                    StepAnswer::Unexpected(_) => {
                        let reason = format!("{described}; a person has to look");
                        self.dead_letter(job, Some((attempt, call.latency_ms)), reason, report)?;
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Runs the next action of the saga of `job` (a fulfilment job this worker holds) once,
    /// for a caller that waits on it (the synchronous order path): the service's breaker is
    /// asked (no retry budget: this is a first try) and the service called. A service's answer
    /// is recorded as a worker records it ([`HeldStep::Moved`]); when there is none, nothing is
    /// written and the job stays held ([`HeldStep::NoAnswer`]), for the caller to decide.
    pub async fn step_held(
        &self,
        job: &ClaimedJob,
        order: &Order,
        saga: &Saga,
    ) -> Result<HeldStep, FulfilmentError> {
        let action = saga.next_action();
        let Some(service) = action.service() else {
            return Ok(HeldStep::Moved(saga.clone()));
        };
        let mut report = FulfilmentReport::default();
        let outcome = match self.attempt(job, order, action, service, 0).await? {
            Attempt::LostLease => return Ok(HeldStep::NoAnswer(NoAnswer::LostLease)),
            Attempt::Unpriced(outcome) => outcome,
            Attempt::PutOff { until, .. } => {
                return Ok(HeldStep::NoAnswer(NoAnswer::CircuitOpen { service, until }));
            }
            Attempt::Called(call) => match call.answer {
                StepAnswer::Done => Outcome::Done,
                StepAnswer::Refused(detail) => Outcome::Refused { detail },
                StepAnswer::Failed(failure) => {
                    return Ok(HeldStep::NoAnswer(NoAnswer::Failed { service, failure }));
                }
                StepAnswer::Unexpected(detail) => {
                    let failure = CallFailure::Other(format!("unexpected answer: {detail}"));
                    return Ok(HeldStep::NoAnswer(NoAnswer::Failed { service, failure }));
                }
            },
        };
        let moved = self.answered(job, saga, action, outcome, &mut report)?;
        self.ring_if_ended(&report);
        Ok(match moved {
            Some(next) => HeldStep::Moved(next),
            None => HeldStep::NoAnswer(NoAnswer::Stuck),
        })
    }

    /// Stops the saga of `job` (a fulfilment job this worker holds) because its caller could
    /// not wait for it (`detail` says why), as a passed deadline stops it: a running saga
    /// starts undoing what it did, recorded with a `step_refused` event. A saga that cannot
    /// stop any more is returned as it is.
    pub fn abandon_held(
        &self,
        job: &ClaimedJob,
        saga: &Saga,
        why: GiveUp,
        detail: &str,
    ) -> Result<Saga, FulfilmentError> {
        self.stop(job, saga, EventKind::StepRefused, |saga| {
            saga.give_up(why, detail)
        })
    }

    /// Asks the service's budget (for a retry) and breaker, then calls it for `action`;
    /// nothing is written but the breaker's and budget's counts and the job's lease.
    async fn attempt(
        &self,
        job: &ClaimedJob,
        order: &Order,
        action: Action,
        service: Service,
        attempts: u32,
    ) -> Result<Attempt, FulfilmentError> {
        let settings = self.parts.settings;
        let now = self.now();
        let renewed = self.parts.ledger.renew_lease(
            &self.id,
            job.job_id,
            Timestamp(now.millis() + settings.lease_ms),
        )?;
        if !renewed {
            return Ok(Attempt::LostLease);
        }
        let amount_cents = match self.amount_cents(order) {
            Ok(amount) => amount,
            Err(missing) if action == Action::Call(saga::Step::Authorize) => {
                // Nothing to charge by: the payment cannot be asked for.
                return Ok(Attempt::Unpriced(Outcome::Refused {
                    detail: format!("no price for {missing}"),
                }));
            }
            Err(_) => 0,
        };
        let name = format!("service-{service}");
        let window = CallWindow::new(
            self.parts.store,
            &format!("breaker/{name}"),
            settings.breaker.window_ms,
            settings.breaker.buckets,
        );
        if attempts > 0 {
            let budget = RetryBudget::new(
                self.parts.store,
                self.parts.clock,
                &window,
                settings.budget.clone(),
            );
            if budget.acquire(1).map_err(store_error)? == 0 {
                let until = Timestamp(now.millis() + settings.budget_wait_ms);
                let detail = format!("{service} retry budget exhausted; next try at {until}");
                return Ok(Attempt::PutOff {
                    until,
                    kind: EventKind::BudgetExhausted,
                    detail,
                });
            }
        }
        let breaker = CircuitBreaker::new(
            self.parts.store,
            self.parts.clock,
            &name,
            settings.breaker.clone(),
        );
        let admission = breaker.admit()?;
        if let Admission::Rejected { until_ms, .. } = admission {
            let until = Timestamp(until_ms);
            let detail = format!("{service} circuit open; next probe at {until}");
            return Ok(Attempt::PutOff {
                until,
                kind: EventKind::Deferred,
                detail,
            });
        }
        let facts = OrderFacts {
            order,
            amount_cents,
        };
        let Some(request) = request_for(action, facts) else {
            return Ok(Attempt::LostLease);
        };
        // No connection is held while the call is out.
        self.parts.ledger.release_connection();
        let started = self.parts.clock.now_ms();
        let answer = self.parts.services.send(&request).await;
        let ended_ms = self.parts.clock.now_ms();
        let latency_ms = ended_ms.saturating_sub(started);
        let answer = interpret(answer, ended_ms);
        let outcome = CallOutcome {
            failed: answer.is_failure(),
            latency_ms,
        };
        let transitions = breaker
            .record(&admission, &[outcome])?
            .into_iter()
            .collect();
        Ok(Attempt::Called(Called {
            answer,
            latency_ms,
            ended_ms,
            transitions,
        }))
    }

    /// Records the service's answer to `action`: the saga moves on (the new saga), or it is
    /// stuck and dead-lettered (`None`).
    fn answered(
        &self,
        job: &ClaimedJob,
        saga: &Saga,
        action: Action,
        outcome: Outcome,
        report: &mut FulfilmentReport,
    ) -> Result<Option<Saga>, FulfilmentError> {
        let refused = match &outcome {
            Outcome::Refused { detail } => Some(detail.clone()),
            Outcome::Done => None,
        };
        let next = match saga.record(outcome) {
            Ok(next) => next,
            Err(stuck) => {
                self.dead_letter(job, None, stuck.to_string(), report)?;
                return Ok(None);
            }
        };
        report.steps += u32::from(refused.is_none());
        let name = action_name(action);
        let (event, detail) = match (next.next_action(), refused) {
            (Action::Finished(Ending::Confirmed), _) => {
                report.confirmed += 1;
                (EventKind::Confirmed, format!("{name} done: fulfilled"))
            }
            (Action::Finished(Ending::Cancelled), _) => {
                report.cancelled += 1;
                (
                    EventKind::Cancelled,
                    format!("{name} done: everything undone"),
                )
            }
            (_, Some(detail)) => (EventKind::StepRefused, detail),
            (_, None) => match action {
                Action::Compensate(_) => (EventKind::Compensated, format!("{name} done")),
                _ => (EventKind::StepDone, format!("{name} done")),
            },
        };
        self.record(job, &next, event, Some(name), &detail, true)?;
        Ok(Some(next))
    }

    /// Writes `saga` (and its order's status) with one event.
    fn record(
        &self,
        job: &ClaimedJob,
        saga: &Saga,
        event: EventKind,
        outcome: Option<&str>,
        detail: &str,
        step_done: bool,
    ) -> Result<(), FulfilmentError> {
        let state = serde_json::to_string(saga).unwrap_or_default();
        let cancellation = saga.cancellation();
        let reason = cancellation.map(|cancellation| cancellation.reason());
        let event_outcome = match event {
            EventKind::Cancelled => reason.as_deref().or(outcome),
            _ => outcome,
        };
        self.parts.ledger.record_saga_progress(
            &self.id,
            self.now(),
            &SagaProgress {
                job_id: job.job_id,
                order_id: &job.order_id,
                state: &state,
                status: saga.status(),
                reason: reason.as_deref(),
                detail: cancellation.map(|cancellation| cancellation.detail.as_str()),
                event,
                event_outcome,
                event_detail: Some(detail),
                step_done,
                finished: matches!(saga.next_action(), Action::Finished(_)),
            },
        )?;
        Ok(())
    }

    /// Puts the saga off until `until` without an attempt.
    fn put_off(
        &self,
        job: &ClaimedJob,
        until: Timestamp,
        kind: EventKind,
        detail: String,
        report: &mut FulfilmentReport,
    ) -> Result<(), FulfilmentError> {
        report.deferred += 1;
        let result = JobResult {
            job_id: job.job_id,
            order_id: job.order_id.clone(),
            attempt: None,
            outcome: None,
            latency_ms: None,
            recovered_from: job.previous_owner.clone(),
            next: NextStep::Defer {
                until,
                kind,
                detail,
            },
        };
        self.parts.ledger.apply(&self.id, self.now(), &[result])?;
        Ok(())
    }

    /// Moves the saga's job to the dead-letter queue (with the attempt that led there, if a
    /// call was made).
    fn dead_letter(
        &self,
        job: &ClaimedJob,
        attempt: Option<(u32, u64)>,
        reason: String,
        report: &mut FulfilmentReport,
    ) -> Result<(), FulfilmentError> {
        report.dead_lettered += 1;
        let result = JobResult {
            job_id: job.job_id,
            order_id: job.order_id.clone(),
            attempt: attempt.map(|(attempt, _)| attempt),
            outcome: attempt.map(|_| reason.clone()),
            latency_ms: attempt.map(|(_, latency)| latency),
            recovered_from: job.previous_owner.clone(),
            next: NextStep::DeadLetter { reason },
        };
        self.parts.ledger.apply(&self.id, self.now(), &[result])?;
        Ok(())
    }

    /// What `order` costs, or the first product without a price.
    fn amount_cents(&self, order: &Order) -> Result<u64, String> {
        order.items.iter().try_fold(0_u64, |total, item| {
            let product = item.product.as_str();
            let price = self
                .parts
                .prices
                .unit_price_cents(product)
                .ok_or_else(|| product.to_owned())?;
            Ok(total.saturating_add(price.saturating_mul(u64::from(item.quantity.get()))))
        })
    }
}

/// The action's name, as events show it.
fn action_name(action: Action) -> &'static str {
    match action {
        Action::Call(step) => step.as_str(),
        Action::Compensate(compensation) => compensation.as_str(),
        Action::Finished(Ending::Confirmed) => "confirmed",
        Action::Finished(Ending::Cancelled) => "cancelled",
    }
}

#[cfg(test)]
mod tests;
