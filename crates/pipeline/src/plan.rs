//! What happens to a job after one attempt: the order's decision, a retry at a later time, or
//! the dead-letter queue. Pure rules over the attempt's result, the job's history, time and a
//! random source.

use crate::answer::{CallResult, ValidatorVerdict};
use ledger::NextStep;
use orders_core::{OrderStatus, Timestamp};
use resilience::{FailureClass, Random, RetryPolicy, classify};

/// The rules for one job's attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPolicy {
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// How many unreadable answers a job may get before it is dead-lettered.
    pub poison_limit: u32,
}

/// What is known about a job when its attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFacts {
    /// The number of this attempt, from 1.
    pub attempt: u32,
    /// Unreadable answers before this one.
    pub poison_count: u32,
    /// When its retry deadline passes.
    pub deadline_at: Timestamp,
}

/// The reason code of an order that failed because its deadline passed.
pub const DEADLINE_PASSED: &str = "deadline_passed";
/// The reason code of an order the validator refused to judge (a 4xx other than 429).
pub const VALIDATOR_REFUSED: &str = "validator_refused";

/// The next step after an attempt that came to `result` at `now`.
pub fn next_step(
    facts: JobFacts,
    result: &CallResult,
    now: Timestamp,
    policy: &JobPolicy,
    rng: &mut impl Random,
) -> NextStep {
    match result {
        CallResult::Verdict(ValidatorVerdict::Valid) => NextStep::Decide {
            status: OrderStatus::Validated,
            reason: None,
            detail: None,
        },
        CallResult::Verdict(ValidatorVerdict::Rejected { reason, detail }) => NextStep::Decide {
            status: OrderStatus::Rejected,
            reason: Some(reason.clone()),
            detail: detail.clone(),
        },
        CallResult::Failed(failure) => match classify(failure) {
            FailureClass::Permanent => NextStep::Decide {
                status: OrderStatus::Failed,
                reason: Some(VALIDATOR_REFUSED.into()),
                detail: Some(format!(
                    "the validator refused the request ({}); retrying cannot help",
                    result.describe()
                )),
            },
            FailureClass::Retryable { not_before_ms } => {
                let wait = policy
                    .retry
                    .backoff_ms(facts.attempt, rng)
                    .max(not_before_ms.unwrap_or(0));
                let at = Timestamp(now.millis().saturating_add(wait));
                if at > facts.deadline_at {
                    deadline_passed(facts.attempt, &result.describe())
                } else {
                    NextStep::Retry {
                        at,
                        error: result.describe(),
                    }
                }
            }
        },
        CallResult::Unreadable(_) => {
            let unreadable = facts.poison_count + 1;
            if unreadable >= policy.poison_limit {
                NextStep::DeadLetter {
                    reason: format!(
                        "the validator's answer was unreadable {unreadable} times; last: {}",
                        result.describe()
                    ),
                }
            } else {
                let wait = policy.retry.backoff_ms(unreadable, rng);
                NextStep::Poison {
                    at: Timestamp(now.millis().saturating_add(wait)),
                    error: result.describe(),
                }
            }
        }
    }
}

/// The decision for an order whose retry deadline passed after `attempts` attempts.
pub fn deadline_passed(attempts: u32, last_error: &str) -> NextStep {
    NextStep::Decide {
        status: OrderStatus::Failed,
        reason: Some(DEADLINE_PASSED.into()),
        detail: Some(format!(
            "no verdict before the retry deadline after {attempts} attempt(s); last error: {last_error}"
        )),
    }
}

/// The decision for an order whose job lay in the dead-letter queue (dead-lettered for
/// `reason` after `attempts` attempts) until its deadline passed: nobody replayed it in time.
pub(crate) fn dead_letter_expired(attempts: u32, reason: &str) -> NextStep {
    NextStep::Decide {
        status: OrderStatus::Failed,
        reason: Some(DEADLINE_PASSED.into()),
        detail: Some(format!(
            "no verdict before the retry deadline: the job was dead-lettered after {attempts} attempt(s) ({reason}) and not replayed in time"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilience::{CallFailure, SplitMix64};

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                base_ms: 100,
                max_delay_ms: 1_000,
            },
            poison_limit: 3,
        }
    }

    fn facts(attempt: u32, poison_count: u32) -> JobFacts {
        JobFacts {
            attempt,
            poison_count,
            deadline_at: Timestamp(60_000),
        }
    }

    fn step(facts: JobFacts, result: CallResult) -> NextStep {
        next_step(
            facts,
            &result,
            Timestamp(1_000),
            &policy(),
            &mut SplitMix64::new(7),
        )
    }

    #[test]
    fn verdicts_decide_the_order() {
        assert!(matches!(
            step(facts(1, 0), CallResult::Verdict(ValidatorVerdict::Valid)),
            NextStep::Decide {
                status: OrderStatus::Validated,
                ..
            }
        ));
        let rejected = step(
            facts(1, 0),
            CallResult::Verdict(ValidatorVerdict::Rejected {
                reason: "unknown_product".into(),
                detail: None,
            }),
        );
        assert!(matches!(
            rejected,
            NextStep::Decide { status: OrderStatus::Rejected, reason: Some(ref r), .. } if r == "unknown_product"
        ));
    }

    #[test]
    fn retryable_failures_are_retried_within_the_backoff_and_after_retry_after() {
        match step(
            facts(3, 0),
            CallResult::Failed(CallFailure::Status {
                code: 503,
                retry_after_ms: None,
            }),
        ) {
            NextStep::Retry { at, error } => {
                assert!((1_000..=1_400).contains(&at.millis()), "{at:?}");
                assert_eq!(error, "HTTP 503");
            }
            other => panic!("{other:?}"),
        }
        match step(
            facts(1, 0),
            CallResult::Failed(CallFailure::Status {
                code: 429,
                retry_after_ms: Some(5_000),
            }),
        ) {
            NextStep::Retry { at, .. } => assert_eq!(at, Timestamp(6_000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_failures_and_passed_deadlines_fail_the_order() {
        assert!(matches!(
            step(
                facts(1, 0),
                CallResult::Failed(CallFailure::Status {
                    code: 400,
                    retry_after_ms: None
                })
            ),
            NextStep::Decide { status: OrderStatus::Failed, reason: Some(ref r), .. } if r == VALIDATOR_REFUSED
        ));
        let late = JobFacts {
            deadline_at: Timestamp(999),
            ..facts(5, 0)
        };
        assert!(matches!(
            step(late, CallResult::Failed(CallFailure::Timeout("first byte".into()))),
            NextStep::Decide { status: OrderStatus::Failed, reason: Some(ref r), .. } if r == DEADLINE_PASSED
        ));
        assert!(matches!(
            step(
                facts(1, 0),
                CallResult::Failed(CallFailure::Status {
                    code: 429,
                    retry_after_ms: Some(3_600_000)
                })
            ),
            NextStep::Decide {
                status: OrderStatus::Failed,
                ..
            }
        ));
    }

    #[test]
    fn unreadable_answers_are_retried_then_dead_lettered() {
        let unreadable = || CallResult::Unreadable("not JSON".into());
        assert!(matches!(
            step(facts(1, 0), unreadable()),
            NextStep::Poison { .. }
        ));
        assert!(matches!(
            step(facts(2, 1), unreadable()),
            NextStep::Poison { .. }
        ));
        assert!(matches!(
            step(facts(3, 2), unreadable()),
            NextStep::DeadLetter { .. }
        ));
    }
}
