//! Random interleavings of workers on separate connections to one file: claiming, applying
//! random steps, losing leases as time jumps, applying results again and replaying dead
//! letters never decide an order twice, never lose a job, and never let two workers hold
//! an unexpired lease on one job.

use super::Fixture;
use crate::{ClaimedJob, EventKind, JobResult, Ledger, NextStep, RusqliteSql};
use orders_core::{OrderStatus, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KIND: &str = "validate";
const LEASE_MS: u64 = 1_000;
const ORDERS: u64 = 4;

#[derive(Debug, Clone, Copy)]
enum Step {
    Validate,
    Reject,
    Fail,
    Retry,
    Poison,
    DeadLetter,
    Defer,
}

#[derive(Debug, Clone)]
enum Action {
    Claim {
        worker: usize,
        limit: u32,
    },
    ClaimExpired {
        worker: usize,
    },
    Apply {
        worker: usize,
        pick: usize,
        step: Step,
    },
    /// A result delivered again, by the worker that first applied it.
    ApplyAgain {
        worker: usize,
        pick: usize,
    },
    Release {
        worker: usize,
        pick: usize,
    },
    Wait {
        millis: u64,
    },
    DeferDue,
    Replay {
        pick: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Validate),
        Just(Step::Reject),
        Just(Step::Fail),
        Just(Step::Retry),
        Just(Step::Poison),
        Just(Step::DeadLetter),
        Just(Step::Defer),
    ]
}

fn action(workers: usize) -> impl Strategy<Value = Action> {
    let worker = 0..workers;
    prop_oneof![
        3 => (worker.clone(), 1..3u32).prop_map(|(worker, limit)| Action::Claim { worker, limit }),
        1 => worker.clone().prop_map(|worker| Action::ClaimExpired { worker }),
        4 => (worker.clone(), any::<usize>(), step())
            .prop_map(|(worker, pick, step)| Action::Apply { worker, pick, step }),
        2 => (worker.clone(), any::<usize>())
            .prop_map(|(worker, pick)| Action::ApplyAgain { worker, pick }),
        1 => (worker, any::<usize>()).prop_map(|(worker, pick)| Action::Release { worker, pick }),
        2 => (0..2_500u64).prop_map(|millis| Action::Wait { millis }),
        1 => Just(Action::DeferDue),
        1 => any::<usize>().prop_map(|pick| Action::Replay { pick }),
    ]
}

struct Worker {
    name: String,
    ledger: Ledger<RusqliteSql>,
    /// Jobs it claimed and has not handed back, with the end of its lease.
    held: Vec<(ClaimedJob, u64)>,
    /// Results it applied, for delivering again.
    applied: Vec<JobResult>,
}

struct World {
    fixture: Fixture,
    workers: Vec<Worker>,
    now: u64,
    /// How many times `apply` reported each order decided, and the status it reported.
    decided: BTreeMap<String, (u32, OrderStatus)>,
}

impl World {
    fn new(workers: usize) -> Self {
        let fixture = Fixture::new();
        for order in 0..ORDERS {
            fixture.accept(&format!("o{order}"), order);
        }
        let workers = (0..workers)
            .map(|index| Worker {
                name: format!("w{index}"),
                ledger: fixture.another_ledger(),
                held: Vec::new(),
                applied: Vec::new(),
            })
            .collect();
        Self {
            fixture,
            workers,
            now: 10,
            decided: BTreeMap::new(),
        }
    }

    fn act(&mut self, action: &Action) {
        let now = Timestamp(self.now);
        match *action {
            Action::Claim { worker, limit } => {
                let lease_until = self.now + LEASE_MS;
                let claimed = self.workers[worker]
                    .ledger
                    .claim(
                        KIND,
                        &self.workers[worker].name,
                        now,
                        Timestamp(lease_until),
                        limit,
                    )
                    .unwrap();
                self.hold(worker, claimed, lease_until);
            }
            Action::ClaimExpired { worker } => {
                let lease_until = self.now + LEASE_MS;
                let claimed = self.workers[worker]
                    .ledger
                    .claim_expired(
                        KIND,
                        &self.workers[worker].name,
                        now,
                        Timestamp(lease_until),
                        2,
                    )
                    .unwrap();
                self.hold(worker, claimed, lease_until);
            }
            Action::Apply { worker, pick, step } => {
                let held = &mut self.workers[worker].held;
                if held.is_empty() {
                    return;
                }
                let (job, _) = held.remove(pick % held.len());
                let result = self.result(&job, step);
                self.apply(worker, result.clone());
                self.workers[worker].applied.push(result);
            }
            Action::ApplyAgain { worker, pick } => {
                let applied = &self.workers[worker].applied;
                if applied.is_empty() {
                    return;
                }
                let result = applied[pick % applied.len()].clone();
                // If it holds the job again, delivering this gives its lease up.
                self.workers[worker]
                    .held
                    .retain(|(job, _)| job.job_id != result.job_id);
                self.apply(worker, result);
            }
            Action::Release { worker, pick } => {
                let state = &mut self.workers[worker];
                if state.held.is_empty() {
                    return;
                }
                let (job, _) = state.held.remove(pick % state.held.len());
                state
                    .ledger
                    .release_jobs(&state.name, &[job.job_id])
                    .unwrap();
            }
            Action::Wait { millis } => self.now += millis,
            Action::DeferDue => {
                self.fixture
                    .ledger
                    .defer_due(KIND, now, Timestamp(self.now + 700), "circuit open", 1_000)
                    .unwrap();
            }
            Action::Replay { pick } => {
                let letters = self.fixture.ledger.dead_letters(true, 100).unwrap();
                if !letters.is_empty() {
                    let letter = &letters[pick % letters.len()];
                    self.fixture.ledger.replay(letter.id, now).unwrap();
                }
            }
        }
    }

    fn hold(&mut self, worker: usize, claimed: Vec<ClaimedJob>, lease_until: u64) {
        let held = &mut self.workers[worker].held;
        for job in claimed {
            held.retain(|(other, _)| other.job_id != job.job_id);
            held.push((job, lease_until));
        }
    }

    fn result(&self, job: &ClaimedJob, step: Step) -> JobResult {
        let at = Timestamp(self.now + 500);
        let decide = |status| NextStep::Decide {
            status,
            reason: None,
            detail: None,
        };
        let next = match step {
            Step::Validate => decide(OrderStatus::Validated),
            Step::Reject => decide(OrderStatus::Rejected),
            Step::Fail => decide(OrderStatus::Failed),
            Step::Retry => NextStep::Retry {
                at,
                error: "http 503".into(),
            },
            Step::Poison => NextStep::Poison {
                at,
                error: "http 400".into(),
            },
            Step::DeadLetter => NextStep::DeadLetter {
                reason: "gave up".into(),
            },
            Step::Defer => NextStep::Defer {
                until: at,
                kind: EventKind::BudgetExhausted,
                detail: "budget spent".into(),
            },
        };
        JobResult {
            job_id: job.job_id,
            order_id: job.order_id.clone(),
            attempt: (!matches!(step, Step::Defer)).then_some(job.attempts + 1),
            outcome: Some("outcome".into()),
            latency_ms: Some(1),
            recovered_from: job.previous_owner.clone(),
            next,
        }
    }

    fn apply(&mut self, worker: usize, result: JobResult) {
        let state = &self.workers[worker];
        let applied = state
            .ledger
            .apply(&state.name, Timestamp(self.now), &[result])
            .unwrap();
        for (order_id, status) in applied.decided {
            let entry = self.decided.entry(order_id).or_insert((0, status));
            entry.0 += 1;
        }
    }

    fn check(&self) {
        let mut rows = self
            .fixture
            .inspect
            .prepare(
                "SELECT o.id, o.status,
                    (SELECT count(*) FROM order_events AS e WHERE e.order_id = o.id
                        AND e.kind IN ('validated', 'rejected', 'failed')),
                    (SELECT count(*) FROM jobs AS j WHERE j.order_id = o.id
                        AND j.kind = 'validate' AND j.state IN ('queued', 'dead'))
                FROM orders AS o",
            )
            .unwrap();
        let orders: Vec<(String, String, u32, u32)> = rows
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(orders.len() as u64, ORDERS);
        for (id, status, decisions, jobs) in orders {
            let reported = self.decided.get(&id);
            if status == "processing" {
                assert_eq!(decisions, 0, "{id} is processing but was decided");
                assert_eq!(jobs, 1, "{id} is processing but has {jobs} jobs");
                assert_eq!(reported, None, "{id} was reported decided");
            } else {
                assert_eq!(decisions, 1, "{id} ({status}) has {decisions} decisions");
                let (times, reported_status) = reported.expect("every decision is reported");
                assert_eq!(*times, 1, "{id} was reported decided {times} times");
                assert_eq!(reported_status.as_str(), status);
            }
        }
        // No two workers believe they hold an unexpired lease on one job, and the job's row
        // says the believer holds it.
        let mut holders: BTreeMap<i64, &str> = BTreeMap::new();
        for worker in &self.workers {
            for (job, lease_until) in &worker.held {
                if *lease_until <= self.now {
                    continue;
                }
                if let Some(other) = holders.insert(job.job_id, &worker.name) {
                    panic!("{other} and {} both hold job {}", worker.name, job.job_id);
                }
                let lease: (Option<String>, Option<u64>) = self
                    .fixture
                    .inspect
                    .query_row(
                        "SELECT lease_owner, lease_until FROM jobs WHERE id = ?1",
                        [job.job_id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .unwrap();
                assert_eq!(
                    lease,
                    (Some(worker.name.clone()), Some(*lease_until)),
                    "job {} is not held as {} believes",
                    job.job_id,
                    worker.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn workers_never_decide_twice_lose_jobs_or_share_leases(
        workers in 2..=3usize,
        actions in proptest::collection::vec(action(3), 1..60),
    ) {
        let mut world = World::new(workers);
        for action in &actions {
            let action = match action.clone() {
                Action::Claim { worker, limit } => Action::Claim { worker: worker % workers, limit },
                Action::ClaimExpired { worker } => Action::ClaimExpired { worker: worker % workers },
                Action::Apply { worker, pick, step } => Action::Apply { worker: worker % workers, pick, step },
                Action::ApplyAgain { worker, pick } => Action::ApplyAgain { worker: worker % workers, pick },
                Action::Release { worker, pick } => Action::Release { worker: worker % workers, pick },
                other => other,
            };
            world.act(&action);
            world.check();
        }
    }
}

/// Threads sharing one worker name (so their `apply` calls may share batch ids) and one clock
/// decide every order, each decision also delivered twice: every order is reported decided
/// exactly once, every repeat as a duplicate.
#[test]
fn concurrent_applies_report_each_decision_once() {
    const ORDERS: usize = 30;
    let fixture = Fixture::new();
    for order in 0..ORDERS {
        fixture.accept(&format!("c{order}"), 0);
    }
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let ledger = fixture.another_ledger();
            std::thread::spawn(move || {
                let now = Timestamp(1_000);
                let mut decided = Vec::new();
                let mut duplicates = 0;
                loop {
                    let claimed = ledger
                        .claim(KIND, "w", now, Timestamp(1_000_000), 2)
                        .unwrap();
                    if claimed.is_empty() {
                        break;
                    }
                    let results: Vec<JobResult> = claimed
                        .iter()
                        .flat_map(|job| {
                            let result = JobResult {
                                job_id: job.job_id,
                                order_id: job.order_id.clone(),
                                attempt: Some(1),
                                outcome: Some("valid".into()),
                                latency_ms: Some(1),
                                recovered_from: None,
                                next: NextStep::Decide {
                                    status: OrderStatus::Validated,
                                    reason: None,
                                    detail: None,
                                },
                            };
                            [result.clone(), result]
                        })
                        .collect();
                    let applied = ledger.apply("w", now, &results).unwrap();
                    decided.extend(applied.decided);
                    duplicates += applied.duplicates;
                }
                (decided, duplicates)
            })
        })
        .collect();
    let mut decided = Vec::new();
    let mut duplicates = 0;
    for thread in threads {
        let (mine, repeats) = thread.join().unwrap();
        decided.extend(mine);
        duplicates += repeats;
    }
    assert!(
        decided
            .iter()
            .all(|(_, status)| *status == OrderStatus::Validated)
    );
    let mut decided: Vec<String> = decided.into_iter().map(|(order_id, _)| order_id).collect();
    decided.sort();
    let mut expected: Vec<String> = (0..ORDERS).map(|order| format!("c{order}")).collect();
    expected.sort();
    assert_eq!(decided, expected);
    assert_eq!(duplicates as usize, ORDERS);
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM apply_outcomes", []),
        0
    );
    // Each validated order's validation job is gone, and it has exactly one fulfilment job.
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM jobs WHERE kind = 'validate'", []),
        0
    );
    assert_eq!(
        fixture.value::<i64>(
            "SELECT count(DISTINCT order_id) FROM jobs WHERE kind = 'fulfil'",
            []
        ),
        ORDERS as i64
    );
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM jobs WHERE kind = 'fulfil'", []),
        ORDERS as i64
    );
}
