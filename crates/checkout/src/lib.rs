//! Orderly's synchronous order path (`POST /orders?mode=sync`): an order accepted through the
//! ledger's intake is validated, its stock reserved and its payment authorized while the
//! caller waits, and the caller gets the cascaded answer. Every step goes through the ledger
//! exactly as the asynchronous workers write it: the path claims the order's validation job
//! and then its fulfilment job under a lease (no worker races it), records the validator's
//! decision and each saga step, and once the order is `paid` hands the fulfilment job back to
//! the workers, who ship, capture and commit. When it cannot end in `paid` (a refusal, a
//! failing or slow dependency), what it did is undone before it answers, or, if undoing has
//! to wait for a failing service, left to the fulfilment worker: the order ends `cancelled`
//! (or `rejected`) and no stock stays reserved for a caller that gave up.
//!
//! Plain Rust over the workers' traits; a component adapts Spin and calls [`CheckoutParts::run`].

mod deadline;
mod reply;

pub use deadline::{DEFAULT_SYNC_DEADLINE_MS, deadline_ms};
pub use reply::{Reply, replay, reply};

use fulfilment::{
    FulfilmentParts, FulfilmentSettings, FulfilmentWorker, HeldStep, NoAnswer, PriceList,
    ServiceClient, StepAnswer,
};
use ledger::{
    ClaimedJob, FULFILMENT_JOB, JobResult, Ledger, LedgerError, NextStep, Sql, VALIDATION_JOB,
};
use orders_core::{Order, OrderId, OrderStatus, Timestamp};
use pipeline::{CallResult, DoorbellPublisher, JobFacts, ValidatorClient, WorkerSettings};
use resilience::{
    Admission, BreakerError, CallFailure, CallOutcome, CircuitBreaker, Clock, KvStore, SplitMix64,
};
use saga::{Action, GiveUp, Phase, Saga, Step};

/// The reason an order shows when the synchronous path gave up on a dependency that failed.
pub const DEPENDENCY_FAILED: &str = "dependency_failed";
/// The reason an order shows when the synchronous path's deadline passed during validation
/// (in fulfilment the saga's own `<step>_deadline_passed` says it).
pub const VALIDATE_DEADLINE_PASSED: &str = "validate_deadline_passed";

/// What the synchronous path is made of.
pub struct CheckoutParts<'a, S, K, C, V, F, P, D>
where
    S: Sql,
    K: KvStore,
    C: Clock,
    V: ValidatorClient,
    F: ServiceClient,
    P: PriceList,
    D: DoorbellPublisher,
{
    /// Orders, jobs, sagas, events.
    pub ledger: &'a Ledger<S>,
    /// The circuit breakers' state.
    pub store: &'a K,
    /// The time.
    pub clock: &'a C,
    /// The validator.
    pub validator: &'a V,
    /// Inventory, payment and shipping (their calls must end by the deadline).
    pub services: &'a F,
    /// What products cost.
    pub prices: &'a P,
    /// The validation worker's settings (its breaker, lease and retry rules).
    pub validation: &'a WorkerSettings,
    /// The fulfilment worker's settings (its breakers and lease).
    pub fulfilment: &'a FulfilmentSettings,
    /// Rings the notification service's doorbell when an order ends here.
    pub publisher: &'a D,
}

/// How the synchronous path ended, for the caller's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    /// Validated, reserved and paid (201); the fulfilment worker ships and captures it.
    Paid,
    /// Another worker holds one of the order's jobs: the order goes on asynchronously (202).
    Continuing,
    /// The validator rejected the order (422), or refused to judge it.
    Rejected {
        /// The order's status (`rejected`, or `failed` when the validator refused the call).
        status: OrderStatus,
        /// The reason code.
        reason: Option<String>,
        /// The explanation.
        detail: Option<String>,
    },
    /// A service refused a step for good (409 out of stock, 402 declined); what was done is
    /// undone.
    Refused {
        /// The refused step.
        step: Step,
        /// The service's explanation.
        detail: String,
    },
    /// A dependency failed or its circuit is open (503); what was done is undone.
    Unavailable {
        /// What failed.
        detail: String,
    },
    /// The deadline passed before the path could finish (504); what was done is undone.
    TimedOut {
        /// Where it was.
        detail: String,
    },
}

/// Why the path stopped without an answer for the caller.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The ledger (SQLite) failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A circuit breaker's state could not be read or written.
    #[error("circuit breaker: {0}")]
    Breaker(#[from] BreakerError),
    /// The fulfilment step failed to write or read its state.
    #[error("fulfilment: {0}")]
    Fulfilment(#[from] fulfilment::FulfilmentError),
}

/// The synchronous path's steps, over its parts.
impl<S, K, C, V, F, P, D> CheckoutParts<'_, S, K, C, V, F, P, D>
where
    S: Sql,
    K: KvStore,
    C: Clock,
    V: ValidatorClient,
    F: ServiceClient,
    P: PriceList,
    D: DoorbellPublisher,
{
    /// Runs `order_id` (accepted, its validation job queued, best held by `worker` from intake
    /// on: see [`ledger::JobHold`]) synchronously, as worker `worker` (unique per request: it
    /// owns the leases it takes), to end by `deadline_ms` (wall-clock milliseconds). See the
    /// crate's documentation.
    pub async fn run(
        &self,
        order_id: &OrderId,
        worker: &str,
        deadline_ms: u64,
    ) -> Result<Checkout, CheckoutError> {
        let now = self.clock.now_ms();
        let lease = Timestamp(now.max(deadline_ms) + self.validation.lease_ms);
        let claimed =
            self.ledger
                .claim_order(VALIDATION_JOB, order_id, worker, Timestamp(now), lease)?;
        let Some(job) = claimed else {
            return Ok(Checkout::Continuing);
        };
        let Some(order) = job.order.clone() else {
            // A validation job without a readable order: the validation worker dead-letters it.
            self.ledger.release_jobs(worker, &[job.job_id])?;
            return Ok(Checkout::Continuing);
        };
        if let Some(stopped) = self.validate(&job, &order, worker, deadline_ms).await? {
            return Ok(stopped);
        }
        let now = self.clock.now_ms();
        let lease = Timestamp(now.max(deadline_ms) + self.fulfilment.lease_ms);
        let claimed =
            self.ledger
                .claim_order(FULFILMENT_JOB, order_id, worker, Timestamp(now), lease)?;
        let Some(job) = claimed else {
            return Ok(Checkout::Continuing);
        };
        self.fulfil(&job, &order, worker, deadline_ms).await
    }

    /// Validates the order whose validation job `job` is held, and records the decision as the
    /// validation worker does (a validated order gets its fulfilment job). `None` when validated.
    async fn validate(
        &self,
        job: &ClaimedJob,
        order: &Order,
        worker: &str,
        deadline_ms: u64,
    ) -> Result<Option<Checkout>, CheckoutError> {
        let breaker = CircuitBreaker::new(
            self.store,
            self.clock,
            pipeline::DEPENDENCY,
            self.validation.breaker.clone(),
        );
        let admission = breaker.admit()?;
        if let Admission::Rejected { until_ms, .. } = admission {
            let detail = format!(
                "the validator's circuit is open until {}",
                Timestamp(until_ms)
            );
            let now = Timestamp(self.clock.now_ms());
            self.give_up(job, worker, now, None, DEPENDENCY_FAILED, &detail)?;
            return Ok(Some(Checkout::Unavailable { detail }));
        }
        // No connection is held while the call is out.
        self.ledger.release_connection();
        let started = self.clock.now_ms();
        let answer = self.validator.validate(pipeline::request_body(order)).await;
        let ended = self.clock.now_ms();
        let latency_ms = ended.saturating_sub(started);
        let result = pipeline::interpret(answer, order.id.as_str(), ended);
        breaker.record(
            &admission,
            &[CallOutcome {
                failed: result.is_failure(),
                latency_ms,
            }],
        )?;
        let attempt = Some((job.attempts + 1, result.describe(), latency_ms));
        let timed_out = matches!(result, CallResult::Failed(CallFailure::Timeout(_)));
        if timed_out || ended >= deadline_ms {
            let detail = format!(
                "no verdict within the request's deadline ({})",
                result.describe()
            );
            self.give_up(
                job,
                worker,
                Timestamp(ended),
                attempt,
                VALIDATE_DEADLINE_PASSED,
                &detail,
            )?;
            return Ok(Some(Checkout::TimedOut { detail }));
        }
        let facts = JobFacts {
            attempt: job.attempts + 1,
            poison_count: job.poison_count,
            deadline_at: job.deadline_at,
        };
        // The workers' rules decide; only a retry (which the caller cannot wait for) differs.
        let next = pipeline::next_step(
            facts,
            &result,
            Timestamp(ended),
            &self.validation.job,
            &mut SplitMix64::new(ended),
        );
        let NextStep::Decide {
            status,
            reason,
            detail,
        } = next
        else {
            let detail = format!("the validator failed: {}", result.describe());
            self.give_up(
                job,
                worker,
                Timestamp(ended),
                attempt,
                DEPENDENCY_FAILED,
                &detail,
            )?;
            return Ok(Some(Checkout::Unavailable { detail }));
        };
        let decision = NextStep::Decide {
            status,
            reason: reason.clone(),
            detail: detail.clone(),
        };
        self.apply(job, worker, Timestamp(ended), attempt, decision)?;
        Ok(match status {
            OrderStatus::Validated => None,
            _ => Some(Checkout::Rejected {
                status,
                reason,
                detail,
            }),
        })
    }

    /// Cancels the order of validation job `job` (still processing) with `reason` and `detail`.
    fn give_up(
        &self,
        job: &ClaimedJob,
        worker: &str,
        now: Timestamp,
        attempt: Option<(u32, String, u64)>,
        reason: &str,
        detail: &str,
    ) -> Result<(), CheckoutError> {
        let next = NextStep::Decide {
            status: OrderStatus::Cancelled,
            reason: Some(reason.to_owned()),
            detail: Some(detail.to_owned()),
        };
        self.apply(job, worker, now, attempt, next)
    }

    /// Writes what came of validation job `job` as the validation worker writes it.
    fn apply(
        &self,
        job: &ClaimedJob,
        worker: &str,
        now: Timestamp,
        attempt: Option<(u32, String, u64)>,
        next: NextStep,
    ) -> Result<(), CheckoutError> {
        let (attempt, outcome, latency_ms) = match attempt {
            Some((number, outcome, latency)) => (Some(number), Some(outcome), Some(latency)),
            None => (None, None, None),
        };
        let result = JobResult {
            job_id: job.job_id,
            order_id: job.order_id.clone(),
            attempt,
            outcome,
            latency_ms,
            recovered_from: job.previous_owner.clone(),
            next,
        };
        // A validated order's fulfilment job is created held by this request, which claims it
        // next: no fulfilment worker takes it in between.
        let hold_until = Timestamp(now.millis() + self.fulfilment.lease_ms);
        self.ledger
            .apply_holding_follow_up(worker, now, &[result], hold_until)?;
        Ok(())
    }

    /// Reserves and pays for the order of fulfilment job `job` (held) with the fulfilment
    /// worker's own steps; hands the job back once paid, or undoes what was done.
    async fn fulfil(
        &self,
        job: &ClaimedJob,
        order: &Order,
        worker: &str,
        deadline_ms: u64,
    ) -> Result<Checkout, CheckoutError> {
        let stepper = FulfilmentWorker::new(
            FulfilmentParts {
                ledger: self.ledger,
                store: self.store,
                clock: self.clock,
                services: self.services,
                prices: self.prices,
                publisher: self.publisher,
                settings: self.fulfilment,
            },
            SplitMix64::new(deadline_ms),
            worker.to_owned(),
        );
        let mut saga = Saga::new();
        let ending = loop {
            match saga.phase() {
                Phase::Running { step: Step::Ship } => {
                    // Paid: the fulfilment worker goes on with shipping.
                    self.ledger.release_jobs(worker, &[job.job_id])?;
                    return Ok(Checkout::Paid);
                }
                Phase::Running { step } => {
                    if self.clock.now_ms() >= deadline_ms {
                        let detail = format!("the request's deadline passed before {step}");
                        break Checkout::TimedOut { detail };
                    }
                    match stepper.step_held(job, order, &saga).await? {
                        HeldStep::Moved(next) => {
                            if let (Phase::Compensating { .. }, Some(cancellation)) =
                                (next.phase(), next.cancellation())
                            {
                                let refused = Checkout::Refused {
                                    step,
                                    detail: cancellation.detail.clone(),
                                };
                                saga = next;
                                break refused;
                            }
                            saga = next;
                        }
                        HeldStep::NoAnswer(NoAnswer::LostLease) => return Ok(Checkout::Continuing),
                        HeldStep::NoAnswer(NoAnswer::Failed {
                            service,
                            failure: CallFailure::Timeout(detail),
                        }) => {
                            let detail = format!("{service} did not answer in time ({detail})");
                            break Checkout::TimedOut { detail };
                        }
                        HeldStep::NoAnswer(no_answer) => {
                            break Checkout::Unavailable {
                                detail: describe(&no_answer, step),
                            };
                        }
                    }
                }
                // Confirmed or being undone already: nothing here can happen before `paid`.
                _ => return Ok(Checkout::Continuing),
            }
        };
        let abandoned = match &ending {
            Checkout::TimedOut { detail } => Some((GiveUp::DeadlinePassed, detail)),
            Checkout::Unavailable { detail } => Some((GiveUp::Unavailable, detail)),
            _ => None,
        };
        if let Some((why, detail)) = abandoned {
            let detail = format!("synchronous order abandoned: {detail}");
            saga = stepper.abandon_held(job, &saga, why, &detail)?;
        }
        // Undo now while there is time and the services answer; else the worker undoes it.
        while matches!(saga.next_action(), Action::Compensate(_))
            && self.clock.now_ms() < deadline_ms
        {
            match stepper.step_held(job, order, &saga).await? {
                HeldStep::Moved(next) => saga = next,
                HeldStep::NoAnswer(_) => break,
            }
        }
        if matches!(saga.next_action(), Action::Compensate(_)) {
            self.ledger.release_jobs(worker, &[job.job_id])?;
        }
        Ok(ending)
    }
}

/// What a step without an answer tells the caller.
fn describe(no_answer: &NoAnswer, step: Step) -> String {
    match no_answer {
        NoAnswer::CircuitOpen { service, until } => {
            format!("{service} circuit open until {until} ({step})")
        }
        NoAnswer::Failed { service, failure } => {
            let described = StepAnswer::Failed(failure.clone()).describe();
            format!("{service} failed ({step}): {described}")
        }
        NoAnswer::LostLease => format!("another worker took the order over ({step})"),
        NoAnswer::Stuck => format!("{step} is stuck; a person has to look"),
    }
}

#[cfg(test)]
mod tests;
