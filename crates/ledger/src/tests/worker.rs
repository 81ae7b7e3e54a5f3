use super::Fixture;
use crate::{Applied, ClaimedJob, EventKind, JobResult, NextStep, WorkProbe};
use orders_core::{OrderId, OrderStatus, Timestamp};

const KIND: &str = "validate";

fn id(text: &str) -> OrderId {
    OrderId::parse(text).unwrap()
}

fn claim(fixture: &Fixture, worker: &str, now: u64, lease_ms: u64, limit: u32) -> Vec<ClaimedJob> {
    fixture
        .ledger
        .claim(
            KIND,
            worker,
            Timestamp(now),
            Timestamp(now + lease_ms),
            limit,
        )
        .unwrap()
}

fn result(job: &ClaimedJob, next: NextStep) -> JobResult {
    JobResult {
        job_id: job.job_id,
        order_id: job.order_id.clone(),
        attempt: Some(job.attempts + 1),
        outcome: Some("http 503".into()),
        latency_ms: Some(40),
        recovered_from: job.previous_owner.clone(),
        next,
    }
}

fn decide(status: OrderStatus) -> NextStep {
    NextStep::Decide {
        status,
        reason: (status != OrderStatus::Validated).then(|| "unknown_product".into()),
        detail: None,
    }
}

fn retry(at: u64) -> NextStep {
    NextStep::Retry {
        at: Timestamp(at),
        error: "http 503".into(),
    }
}

fn kinds(fixture: &Fixture, order: &str) -> Vec<EventKind> {
    fixture
        .ledger
        .events(&id(order))
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

/// The job's (lease_owner, attempts, poison_count, due_at, deferrals, deferred_since).
fn job_row(fixture: &Fixture, order: &str) -> (Option<String>, i64, i64, i64, i64, Option<i64>) {
    fixture
        .inspect
        .query_row(
            "SELECT lease_owner, attempts, poison_count, due_at, deferrals, deferred_since
            FROM jobs WHERE order_id = ?1",
            [order],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            },
        )
        .unwrap()
}

#[test]
fn claims_take_due_jobs_oldest_first_and_respect_leases() {
    let fixture = Fixture::new();
    for (name, at) in [("c", 3), ("a", 1), ("b", 2), ("later", 1_000)] {
        fixture.accept(name, at);
    }
    let first = claim(&fixture, "w1", 10, 100, 2);
    let names: Vec<&str> = first.iter().map(|job| job.order_id.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(first.iter().all(|job| job.previous_owner.is_none()
        && job.attempts == 0
        && job.corrupt.is_none()
        && job.deadline_at == Timestamp(job.created_at.millis() + 60_000)));
    assert_eq!(first[0].order.as_ref().unwrap().id, id("a"));

    // Leased jobs are not claimed again; jobs not yet due are not claimed.
    let second = claim(&fixture, "w2", 20, 100, 10);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].order_id, "c");
    assert!(claim(&fixture, "w3", 30, 100, 10).is_empty());
    assert_eq!(
        fixture
            .ledger
            .probe_work(KIND, Timestamp(30), None)
            .unwrap(),
        WorkProbe {
            due: false,
            order_known: None
        }
    );
    assert_eq!(
        fixture
            .ledger
            .probe_work(KIND, Timestamp(1_000), Some(&id("a")))
            .unwrap(),
        WorkProbe {
            due: true,
            order_known: Some(true)
        }
    );
    assert_eq!(
        fixture
            .ledger
            .probe_work(KIND, Timestamp(1_000), Some(&id("zz")))
            .unwrap()
            .order_known,
        Some(false)
    );
    assert!(
        !fixture
            .ledger
            .probe_work("other", Timestamp(1_000), None)
            .unwrap()
            .due
    );
    assert!(claim(&fixture, "w3", 1_000, 100, 0).is_empty());
    let view = fixture.ledger.order(&id("a")).unwrap().unwrap();
    assert_eq!(view.job.unwrap().leased_until, Some(Timestamp(110)));
}

#[test]
fn expired_leases_are_reclaimed_naming_the_previous_owner() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    let mine = claim(&fixture, "w1", 10, 100, 1);
    assert_eq!(mine.len(), 1);
    // At the lease's end it is expired.
    let taken = claim(&fixture, "w2", 110, 100, 1);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].job_id, mine[0].job_id);
    assert_eq!(taken[0].previous_owner.as_deref(), Some("w1"));

    let applied = fixture
        .ledger
        .apply(
            "w2",
            Timestamp(150),
            &[result(&taken[0], decide(OrderStatus::Validated))],
        )
        .unwrap();
    assert_eq!(
        applied,
        Applied {
            decided: vec![("a".into(), OrderStatus::Validated)],
            duplicates: 0
        }
    );
    assert_eq!(
        kinds(&fixture, "a"),
        [
            EventKind::Accepted,
            EventKind::LeaseExpired,
            EventKind::Attempt,
            EventKind::Validated
        ]
    );
    let events = fixture.ledger.events(&id("a")).unwrap();
    assert!(events[1].detail.as_deref().unwrap().contains("w1"));
    assert_eq!(events[2].attempt, Some(1));
    assert_eq!(events[2].latency_ms, Some(40));
    assert_eq!(fixture.ledger.order(&id("a")).unwrap().unwrap().job, None);
}

#[test]
fn a_worker_that_lost_its_lease_cannot_change_the_job() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    let stale = claim(&fixture, "w1", 10, 100, 1).remove(0);
    let current = claim(&fixture, "w2", 200, 100, 1).remove(0);

    for next in [
        retry(5_000),
        NextStep::Poison {
            at: Timestamp(5_000),
            error: "bad".into(),
        },
        NextStep::DeadLetter {
            reason: "gave up".into(),
        },
        NextStep::Defer {
            until: Timestamp(5_000),
            kind: EventKind::Deferred,
            detail: "open".into(),
        },
    ] {
        fixture
            .ledger
            .apply("w1", Timestamp(210), &[result(&stale, next)])
            .unwrap();
    }
    assert_eq!(
        job_row(&fixture, "a"),
        (Some("w2".into()), 0, 0, 1, 0, None)
    );
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM dead_letters", []),
        0
    );
    // Its calls happened, and are on the timeline; nothing else is.
    assert_eq!(
        kinds(&fixture, "a"),
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::Attempt,
            EventKind::Attempt,
            EventKind::Attempt
        ]
    );

    // A late decision still decides a processing order, but leaves the new owner's job.
    let applied = fixture
        .ledger
        .apply(
            "w1",
            Timestamp(220),
            &[result(&stale, decide(OrderStatus::Validated))],
        )
        .unwrap();
    assert_eq!(applied.decided, [("a".into(), OrderStatus::Validated)]);
    assert_eq!(job_row(&fixture, "a").0.as_deref(), Some("w2"));

    // The owner's own decision then changes nothing but finishes the job.
    let applied = fixture
        .ledger
        .apply(
            "w2",
            Timestamp(230),
            &[result(&current, decide(OrderStatus::Rejected))],
        )
        .unwrap();
    assert_eq!(
        applied,
        Applied {
            decided: vec![],
            duplicates: 1
        }
    );
    let view = fixture.ledger.order(&id("a")).unwrap().unwrap();
    assert_eq!(view.order.status, OrderStatus::Validated);
    assert_eq!(view.job, None);
    let events = fixture.ledger.events(&id("a")).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::DuplicateIgnored);
    assert_eq!(last.outcome.as_deref(), Some("rejected"));
    assert_eq!(
        last.detail.as_deref(),
        Some("the order was already validated")
    );
}

#[test]
fn decisions_move_an_order_once_even_within_one_batch() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    fixture.accept("b", 2);
    let jobs = claim(&fixture, "w", 10, 100, 2);
    let applied = fixture
        .ledger
        .apply(
            "w",
            Timestamp(20),
            &[
                result(&jobs[0], decide(OrderStatus::Rejected)),
                result(&jobs[0], decide(OrderStatus::Validated)),
                result(&jobs[1], decide(OrderStatus::Failed)),
            ],
        )
        .unwrap();
    assert_eq!(
        applied,
        Applied {
            decided: vec![
                ("a".into(), OrderStatus::Rejected),
                ("b".into(), OrderStatus::Failed)
            ],
            duplicates: 1
        }
    );
    let a = fixture.ledger.order(&id("a")).unwrap().unwrap().order;
    assert_eq!(a.status, OrderStatus::Rejected);
    assert_eq!(a.reason.as_deref(), Some("unknown_product"));
    assert_eq!(a.updated_at, Timestamp(20));
    assert_eq!(
        fixture.value::<i64>("SELECT decided_at FROM orders WHERE id = 'a'", []),
        20
    );
    let a_events = kinds(&fixture, "a");
    assert_eq!(
        a_events,
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::Rejected,
            EventKind::Attempt,
            EventKind::DuplicateIgnored
        ]
    );
    let rejected = &fixture.ledger.events(&id("a")).unwrap()[2];
    assert_eq!(rejected.outcome.as_deref(), Some("unknown_product"));
    // The read-back left nothing behind.
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM apply_outcomes", []),
        0
    );
    assert_eq!(fixture.value::<i64>("SELECT count(*) FROM jobs", []), 0);

    // A decision for an order that does not exist is neither a move nor a duplicate (its
    // call is still recorded).
    let ghost = JobResult {
        order_id: "ghost".into(),
        ..result(&jobs[0], decide(OrderStatus::Validated))
    };
    assert_eq!(
        fixture.ledger.apply("w", Timestamp(30), &[ghost]).unwrap(),
        Applied::default()
    );
    assert_eq!(kinds(&fixture, "ghost"), [EventKind::Attempt]);
    assert_eq!(
        fixture.ledger.apply("w", Timestamp(30), &[]).unwrap(),
        Applied::default()
    );
}

#[test]
fn a_processing_status_decides_nothing() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    let job = claim(&fixture, "w", 10, 100, 1).remove(0);
    let applied = fixture
        .ledger
        .apply(
            "w",
            Timestamp(20),
            &[result(&job, decide(OrderStatus::Processing))],
        )
        .unwrap();
    assert_eq!(applied, Applied::default());
    let view = fixture.ledger.order(&id("a")).unwrap().unwrap();
    assert_eq!(view.order.status, OrderStatus::Processing);
    assert!(view.job.is_some());
}

#[test]
fn retries_poison_deferrals_and_dead_letters_update_the_job() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);

    let job = claim(&fixture, "w", 10, 100, 1).remove(0);
    fixture
        .ledger
        .apply("w", Timestamp(20), &[result(&job, retry(1_000))])
        .unwrap();
    assert_eq!(job_row(&fixture, "a"), (None, 1, 0, 1_000, 0, None));
    let view = fixture
        .ledger
        .order(&id("a"))
        .unwrap()
        .unwrap()
        .job
        .unwrap();
    assert_eq!(view.last_error.as_deref(), Some("http 503"));
    assert_eq!(view.last_attempt_at, Some(Timestamp(20)));
    assert_eq!(view.next_attempt_at, Timestamp(1_000));
    assert!(claim(&fixture, "w", 999, 100, 1).is_empty());

    let job = claim(&fixture, "w", 1_000, 100, 1).remove(0);
    assert_eq!(job.attempts, 1);
    fixture
        .ledger
        .apply(
            "w",
            Timestamp(1_010),
            &[result(
                &job,
                NextStep::Poison {
                    at: Timestamp(2_000),
                    error: "schema mismatch".into(),
                },
            )],
        )
        .unwrap();
    assert_eq!(job_row(&fixture, "a"), (None, 2, 1, 2_000, 0, None));

    // A deferral is not an attempt; it starts a streak that the next attempt ends.
    let job = claim(&fixture, "w", 2_000, 100, 1).remove(0);
    assert_eq!(job.poison_count, 1);
    let deferral = JobResult {
        attempt: None,
        outcome: None,
        latency_ms: None,
        ..result(
            &job,
            NextStep::Defer {
                until: Timestamp(3_000),
                kind: EventKind::BudgetExhausted,
                detail: "retry budget spent".into(),
            },
        )
    };
    fixture
        .ledger
        .apply("w", Timestamp(2_010), &[deferral])
        .unwrap();
    assert_eq!(job_row(&fixture, "a"), (None, 2, 1, 3_000, 1, Some(2_010)));
    let job = claim(&fixture, "w", 3_000, 100, 1).remove(0);
    fixture
        .ledger
        .apply("w", Timestamp(3_010), &[result(&job, retry(4_000))])
        .unwrap();
    assert_eq!(job_row(&fixture, "a"), (None, 3, 1, 4_000, 1, None));

    let job = claim(&fixture, "w", 4_000, 100, 1).remove(0);
    fixture
        .ledger
        .apply(
            "w",
            Timestamp(4_010),
            &[result(
                &job,
                NextStep::DeadLetter {
                    reason: "poisoned".into(),
                },
            )],
        )
        .unwrap();
    let view = fixture.ledger.order(&id("a")).unwrap().unwrap();
    assert_eq!(view.order.status, OrderStatus::Processing);
    let job_view = view.job.unwrap();
    assert!(job_view.dead_lettered);
    assert_eq!(job_view.attempts, 4);
    assert_eq!(job_view.leased_until, None);
    assert!(claim(&fixture, "w", 100_000, 100, 1).is_empty());
    let letters = fixture.ledger.dead_letters(false, 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].order_id.as_deref(), Some("a"));
    assert_eq!(letters[0].job_id, Some(job.job_id));
    assert_eq!(letters[0].attempts, 4);
    assert_eq!(letters[0].reason, "poisoned");

    assert_eq!(
        kinds(&fixture, "a"),
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::BudgetExhausted,
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::Attempt,
            EventKind::DeadLettered,
        ]
    );
    let events = fixture.ledger.events(&id("a")).unwrap();
    assert_eq!(
        events[2].detail.as_deref(),
        Some("http 503; next attempt at 1970-01-01T00:00:01.000Z")
    );
    assert_eq!(events[2].attempt, Some(1));
}

#[test]
fn released_jobs_can_be_claimed_at_once() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    fixture.accept("b", 2);
    let jobs = claim(&fixture, "w1", 10, 1_000, 2);
    // Only the holder's release counts.
    fixture
        .ledger
        .release_jobs("w2", &[jobs[0].job_id])
        .unwrap();
    assert!(claim(&fixture, "w2", 20, 1_000, 2).is_empty());
    fixture
        .ledger
        .release_jobs("w1", &[jobs[0].job_id])
        .unwrap();
    fixture.ledger.release_jobs("w1", &[]).unwrap();
    let again = claim(&fixture, "w2", 20, 1_000, 2);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job_id, jobs[0].job_id);
    assert_eq!(again[0].previous_owner, None);
    assert_eq!(again[0].attempts, 0);
}

#[test]
fn jobs_past_their_deadline_are_claimed_whatever_their_due_time() {
    let fixture = Fixture::new();
    fixture.accept("a", 0);
    fixture.accept("b", 10_000);
    fixture.accept("c", 0);
    // a is put off past its deadline; c is leased.
    fixture.run("UPDATE jobs SET due_at = 500000 WHERE order_id = 'a'");
    let c = claim(&fixture, "w1", 50_000, 20_000, 1);
    assert_eq!(c[0].order_id, "c");
    let expired = fixture
        .ledger
        .claim_expired(KIND, "w2", Timestamp(60_000), Timestamp(61_000), 10)
        .unwrap();
    let names: Vec<&str> = expired.iter().map(|job| job.order_id.as_str()).collect();
    assert_eq!(names, ["a"]);
    assert_eq!(expired[0].deadline_at, Timestamp(60_000));
    let failed = JobResult {
        attempt: None,
        outcome: None,
        latency_ms: None,
        ..result(
            &expired[0],
            NextStep::Decide {
                status: OrderStatus::Failed,
                reason: Some("deadline".into()),
                detail: Some("not validated in time".into()),
            },
        )
    };
    let applied = fixture
        .ledger
        .apply("w2", Timestamp(60_500), &[failed])
        .unwrap();
    assert_eq!(applied.decided, [("a".into(), OrderStatus::Failed)]);
    assert_eq!(
        kinds(&fixture, "a"),
        [EventKind::Accepted, EventKind::Failed]
    );
    let later = fixture
        .ledger
        .claim_expired(KIND, "w2", Timestamp(70_000), Timestamp(71_000), 10)
        .unwrap();
    let names: Vec<&str> = later.iter().map(|job| job.order_id.as_str()).collect();
    // By then a is decided, c's lease has expired, and b has reached its deadline.
    assert_eq!(names, ["c", "b"]);
}

#[test]
fn bulk_deferral_goes_in_chunks_oldest_due_first() {
    let fixture = Fixture::new();
    for (name, at) in [("a", 3), ("b", 1), ("c", 2)] {
        fixture.accept(name, at);
    }
    let defer = |limit| {
        fixture
            .ledger
            .defer_due(
                KIND,
                Timestamp(100),
                Timestamp(1_000),
                "circuit open",
                limit,
            )
            .unwrap()
    };
    assert_eq!(defer(2), 2);
    assert_eq!(job_row(&fixture, "b").3, 1_000);
    assert_eq!(job_row(&fixture, "c").3, 1_000);
    assert_eq!(
        job_row(&fixture, "a").3,
        3,
        "the newest waits for the next chunk"
    );
    assert_eq!(defer(2), 1);
    assert_eq!(defer(2), 0);
}

#[test]
fn bulk_deferral_records_only_the_start_of_a_streak() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    fixture.accept("b", 2);
    fixture.accept("c", 5_000);
    let leased = claim(&fixture, "w", 3, 10_000, 1);
    assert_eq!(leased[0].order_id, "a");

    // b is due; c is not yet; a is leased.
    assert_eq!(
        fixture
            .ledger
            .defer_due(
                KIND,
                Timestamp(100),
                Timestamp(1_000),
                "circuit open",
                1_000
            )
            .unwrap(),
        1
    );
    assert_eq!(job_row(&fixture, "b"), (None, 0, 0, 1_000, 1, Some(100)));
    // Again and again during the outage: counted, but no more events.
    for now in [1_000, 2_000, 3_000] {
        fixture
            .ledger
            .defer_due(
                KIND,
                Timestamp(now),
                Timestamp(now + 1_000),
                "circuit open",
                1_000,
            )
            .unwrap();
    }
    assert_eq!(job_row(&fixture, "b"), (None, 0, 0, 4_000, 4, Some(100)));
    assert_eq!(
        kinds(&fixture, "b"),
        [EventKind::Accepted, EventKind::Deferred]
    );
    let event = fixture.ledger.events(&id("b")).unwrap().pop().unwrap();
    assert_eq!(
        event.detail.as_deref(),
        Some("circuit open; due again at 1970-01-01T00:00:01.000Z")
    );
    // c joins a streak once it is due; a, leased, never does.
    assert_eq!(job_row(&fixture, "c").5, None);
    assert_eq!(
        fixture
            .ledger
            .defer_due(
                KIND,
                Timestamp(5_000),
                Timestamp(6_000),
                "circuit open",
                1_000
            )
            .unwrap(),
        2
    );
    assert_eq!(job_row(&fixture, "c").5, Some(5_000));
    assert_eq!(kinds(&fixture, "a"), [EventKind::Accepted]);
    let stats = fixture.ledger.stats(Timestamp(5_000)).unwrap();
    assert_eq!(stats.jobs_deferred, 2);

    // An attempt ends the streak; the next deferral starts a new one.
    let job = claim(&fixture, "w", 6_000, 100, 10)
        .into_iter()
        .find(|job| job.order_id == "b")
        .unwrap();
    fixture
        .ledger
        .apply("w", Timestamp(6_010), &[result(&job, retry(6_020))])
        .unwrap();
    assert_eq!(job_row(&fixture, "b").5, None);
    fixture
        .ledger
        .defer_due(
            KIND,
            Timestamp(7_000),
            Timestamp(8_000),
            "circuit open",
            1_000,
        )
        .unwrap();
    assert_eq!(
        kinds(&fixture, "b"),
        [
            EventKind::Accepted,
            EventKind::Deferred,
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::Deferred
        ]
    );
}

#[test]
fn claims_report_missing_and_unreadable_orders() {
    let fixture = Fixture::new();
    fixture.accept("gone", 1);
    fixture.accept("broken", 2);
    fixture.run(
        "DELETE FROM orders WHERE id = 'gone';
        UPDATE orders SET customer = '   ' WHERE id = 'broken';",
    );
    let jobs = claim(&fixture, "w", 10, 100, 10);
    assert_eq!(jobs.len(), 2);
    let gone = jobs.iter().find(|job| job.order_id == "gone").unwrap();
    assert_eq!((&gone.order, &gone.corrupt), (&None, &None));
    let broken = jobs.iter().find(|job| job.order_id == "broken").unwrap();
    assert_eq!(broken.order, None);
    let reason = broken.corrupt.as_deref().unwrap();
    assert!(
        reason.starts_with(r#"order "broken" is unreadable: customer:"#),
        "{reason}"
    );
}

#[test]
fn applies_sharing_a_batch_id_never_read_each_others_outcomes() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    let job = claim(&fixture, "w", 10, 100, 1).remove(0);
    // Another call with the same batch id is between its two statements.
    fixture.run(
        "INSERT INTO apply_outcomes (batch, slot, order_id, status, moved, written_at)
        VALUES ('w/20/1', 0, 'x', 'validated', 1, 20), ('w/20/1', 1, 'y', 'rejected', 0, 20)",
    );
    let applied = fixture
        .ledger
        .apply(
            "w",
            Timestamp(20),
            &[result(&job, decide(OrderStatus::Validated))],
        )
        .unwrap();
    assert_eq!(
        applied,
        Applied {
            decided: vec![("a".into(), OrderStatus::Validated)],
            duplicates: 0
        }
    );
    assert_eq!(
        fixture.value::<i64>(
            "SELECT count(*) FROM apply_outcomes WHERE batch = 'w/20/1'",
            []
        ),
        2
    );
    // The failed first try left no trace: one attempt, one decision.
    assert_eq!(
        kinds(&fixture, "a"),
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::Validated
        ]
    );

    // Outcomes left behind by a caller that died are cleared an hour later.
    fixture.accept("b", 30);
    let job = claim(&fixture, "w", 3_600_020, 100, 1).remove(0);
    fixture
        .ledger
        .apply(
            "w",
            Timestamp(3_600_021),
            &[result(&job, decide(OrderStatus::Validated))],
        )
        .unwrap();
    assert_eq!(
        fixture.value::<i64>("SELECT count(*) FROM apply_outcomes", []),
        0
    );
}

#[test]
fn a_released_job_still_names_the_owner_whose_lease_expired() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    claim(&fixture, "w1", 10, 100, 1);
    // w1 dies; w2 takes the job over, then gives it back untouched (the probe path).
    let taken = claim(&fixture, "w2", 110, 100, 1).remove(0);
    assert_eq!(taken.previous_owner.as_deref(), Some("w1"));
    fixture.ledger.release_jobs("w2", &[taken.job_id]).unwrap();
    // The next claim still reports w1, and its results record it once.
    let job = claim(&fixture, "w3", 120, 100, 1).remove(0);
    assert_eq!(job.previous_owner.as_deref(), Some("w1"));
    fixture
        .ledger
        .apply("w3", Timestamp(130), &[result(&job, retry(200))])
        .unwrap();
    assert_eq!(
        kinds(&fixture, "a"),
        [
            EventKind::Accepted,
            EventKind::LeaseExpired,
            EventKind::Attempt,
            EventKind::RetryScheduled
        ]
    );
    let events = fixture.ledger.events(&id("a")).unwrap();
    assert!(events[1].detail.as_deref().unwrap().contains("w1"));
    // Reported: later claims of the job name nobody.
    let again = claim(&fixture, "w4", 200, 100, 1).remove(0);
    assert_eq!(again.previous_owner, None);
    fixture.ledger.release_jobs("w4", &[again.job_id]).unwrap();
    assert_eq!(claim(&fixture, "w5", 200, 100, 1)[0].previous_owner, None);
}

#[test]
fn repeated_budget_deferrals_record_one_event_per_streak() {
    let fixture = Fixture::new();
    fixture.accept("a", 1);
    let held_back = |job: &ClaimedJob, until: u64| JobResult {
        attempt: None,
        outcome: None,
        latency_ms: None,
        ..result(
            job,
            NextStep::Defer {
                until: Timestamp(until),
                kind: EventKind::BudgetExhausted,
                detail: "retry budget exhausted".into(),
            },
        )
    };
    let job = claim(&fixture, "w", 10, 100, 1).remove(0);
    fixture
        .ledger
        .apply("w", Timestamp(20), &[result(&job, retry(1_000))])
        .unwrap();
    // The retry is held back by the budget, again and again.
    for now in [1_000, 2_000, 3_000, 4_000] {
        let job = claim(&fixture, "w", now, 100, 1).remove(0);
        fixture
            .ledger
            .apply("w", Timestamp(now + 5), &[held_back(&job, now + 1_000)])
            .unwrap();
    }
    assert_eq!(job_row(&fixture, "a"), (None, 1, 0, 5_000, 4, Some(1_005)));
    // A circuit deferral in the same streak adds nothing either.
    fixture
        .ledger
        .defer_due(KIND, Timestamp(5_000), Timestamp(6_000), "circuit open", 10)
        .unwrap();
    assert_eq!(
        kinds(&fixture, "a"),
        [
            EventKind::Accepted,
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::BudgetExhausted
        ]
    );
    // An attempt ends the streak; the next deferral starts a new one, with its event.
    let job = claim(&fixture, "w", 6_000, 100, 1).remove(0);
    fixture
        .ledger
        .apply("w", Timestamp(6_010), &[result(&job, retry(7_000))])
        .unwrap();
    for now in [7_000, 8_000] {
        let job = claim(&fixture, "w", now, 100, 1).remove(0);
        fixture
            .ledger
            .apply("w", Timestamp(now + 5), &[held_back(&job, now + 1_000)])
            .unwrap();
    }
    assert_eq!(
        kinds(&fixture, "a")[4..],
        [
            EventKind::Attempt,
            EventKind::RetryScheduled,
            EventKind::BudgetExhausted
        ]
    );
    assert_eq!(job_row(&fixture, "a").5, Some(7_005));
    // A worker that lost the lease records nothing.
    let stale = claim(&fixture, "w", 9_000, 100, 1).remove(0);
    claim(&fixture, "other", 9_100, 100, 1);
    fixture
        .ledger
        .apply("w", Timestamp(9_150), &[held_back(&stale, 10_000)])
        .unwrap();
    assert_eq!(kinds(&fixture, "a").len(), 7);
}

#[test]
fn dead_jobs_are_claimed_as_expired_once_their_deadline_passed() {
    let fixture = Fixture::new();
    fixture.accept("a", 0);
    fixture.accept("b", 0);
    let jobs = claim(&fixture, "w", 10, 100, 2);
    let dead = |job: &ClaimedJob| {
        result(
            job,
            NextStep::DeadLetter {
                reason: "unreadable 3 times".into(),
            },
        )
    };
    fixture
        .ledger
        .apply(
            "w",
            Timestamp(20),
            &[dead(&jobs[0]), result(&jobs[1], retry(500_000))],
        )
        .unwrap();
    // Neither is due; both reach their deadline at 60 s.
    assert!(claim(&fixture, "w", 100_000, 100, 10).is_empty());
    let expire = |now: u64| {
        fixture
            .ledger
            .claim_expired(KIND, "sweep", Timestamp(now), Timestamp(now + 100), 10)
            .unwrap()
    };
    assert!(expire(59_999).is_empty());
    let expired = expire(60_000);
    let found: Vec<(&str, Option<&str>)> = expired
        .iter()
        .map(|job| (job.order_id.as_str(), job.dead_lettered.as_deref()))
        .collect();
    assert_eq!(
        found,
        [("a", Some("unreadable 3 times")), ("b", None)],
        "the dead job with its reason, the queued one without"
    );
    // Claimed: not again while the sweep's lease lasts.
    assert!(expire(60_050).is_empty());
}
