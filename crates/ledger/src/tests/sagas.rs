use super::Fixture;
use crate::{
    CancelOutcome, ClaimedJob, EventKind, FULFILMENT_JOB, JobResult, NextStep, ReplayOutcome,
    SagaProgress, StoredSaga, VALIDATION_JOB,
};
use orders_core::{OrderId, OrderStatus, Timestamp};

fn id(text: &str) -> OrderId {
    OrderId::parse(text).unwrap()
}

fn claim(fixture: &Fixture, kind: &str, worker: &str, now: u64) -> Vec<ClaimedJob> {
    fixture
        .ledger
        .claim(kind, worker, Timestamp(now), Timestamp(now + 30_000), 10)
        .unwrap()
}

/// What came of `job`'s first attempt (`outcome`, 5 ms), and what happens next.
fn first_attempt(job: &ClaimedJob, outcome: &str, next: NextStep) -> JobResult {
    JobResult {
        job_id: job.job_id,
        order_id: job.order_id.clone(),
        attempt: Some(1),
        outcome: Some(outcome.into()),
        latency_ms: Some(5),
        recovered_from: None,
        next,
    }
}

/// Validation decides `status` for every order given (all accepted at 1 s).
fn decide(fixture: &Fixture, status: OrderStatus, orders: &[&str]) {
    for order in orders {
        fixture.accept(order, 1_000);
    }
    let results: Vec<JobResult> = claim(fixture, VALIDATION_JOB, "v", 2_000)
        .into_iter()
        .map(|job| {
            let next = NextStep::Decide {
                status,
                reason: None,
                detail: None,
            };
            first_attempt(&job, "valid", next)
        })
        .collect();
    fixture
        .ledger
        .apply("v", Timestamp(2_000), &results)
        .unwrap();
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

fn status(fixture: &Fixture, order: &str) -> OrderStatus {
    fixture
        .ledger
        .order(&id(order))
        .unwrap()
        .unwrap()
        .order
        .status
}

fn fulfilment_jobs(fixture: &Fixture, order: &str) -> i64 {
    fixture.value(
        "SELECT count(*) FROM jobs WHERE kind = 'fulfil' AND order_id = ?1",
        [order],
    )
}

/// A step of `job`'s saga: the order moves to `status`.
fn progress<'a>(job: &'a ClaimedJob, status: OrderStatus, finished: bool) -> SagaProgress<'a> {
    SagaProgress {
        job_id: job.job_id,
        order_id: &job.order_id,
        state: r#"{"phase":"running","step":"authorize"}"#,
        status,
        reason: None,
        detail: None,
        event: EventKind::StepDone,
        event_outcome: Some("reserve"),
        event_detail: None,
        step_done: true,
        finished,
    }
}

#[test]
fn validating_an_order_queues_its_fulfilment_in_the_same_statement() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["a", "b"]);
    let jobs = claim(&fixture, FULFILMENT_JOB, "f", 2_000);
    let ids: Vec<&str> = jobs.iter().map(|job| job.order_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(jobs[0].created_at, Timestamp(2_000));
    assert_eq!(jobs[0].deadline_at, crate::NO_DEADLINE);
    assert_eq!(
        jobs[0].order.as_ref().unwrap().status,
        OrderStatus::Validated
    );
    // Nothing is stored for a saga until its first step.
    assert_eq!(fixture.ledger.sagas(&["a", "b"]).unwrap(), []);
}

#[test]
fn refused_orders_and_late_decisions_queue_no_fulfilment() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Rejected, &["r"]);
    assert_eq!(fulfilment_jobs(&fixture, "r"), 0);

    // A duplicate decision (the order was decided meanwhile) queues nothing either.
    fixture.accept("d", 1_000);
    let job = claim(&fixture, VALIDATION_JOB, "v", 2_000).remove(0);
    fixture
        .run("UPDATE orders SET status = 'rejected' WHERE id = 'd'; DELETE FROM jobs WHERE kind = 'validate'");
    fixture
        .ledger
        .apply(
            "v",
            Timestamp(2_000),
            &[first_attempt(
                &job,
                "valid",
                NextStep::Decide {
                    status: OrderStatus::Validated,
                    reason: None,
                    detail: None,
                },
            )],
        )
        .unwrap();
    assert_eq!(fulfilment_jobs(&fixture, "d"), 0);
}

#[test]
fn progress_moves_the_order_and_records_the_saga_for_the_holder_only() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["a"]);
    let job = claim(&fixture, FULFILMENT_JOB, "f", 3_000).remove(0);
    fixture.run("UPDATE jobs SET attempts = 2 WHERE kind = 'fulfil'");

    // Someone else's write changes nothing.
    fixture
        .ledger
        .record_saga_progress(
            "other",
            Timestamp(3_500),
            &progress(&job, OrderStatus::Reserved, false),
        )
        .unwrap();
    assert_eq!(status(&fixture, "a"), OrderStatus::Validated);
    assert_eq!(fixture.ledger.sagas(&["a"]).unwrap(), []);

    fixture
        .ledger
        .record_saga_progress(
            "f",
            Timestamp(3_500),
            &progress(&job, OrderStatus::Reserved, false),
        )
        .unwrap();
    assert_eq!(status(&fixture, "a"), OrderStatus::Reserved);
    assert_eq!(
        fixture.ledger.sagas(&["a"]).unwrap(),
        [StoredSaga {
            order_id: "a".into(),
            state: Some(r#"{"phase":"running","step":"authorize"}"#.into()),
            cancel_requested: None,
        }]
    );
    let events = fixture.ledger.events(&id("a")).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::StepDone);
    assert_eq!(last.outcome.as_deref(), Some("reserve"));
    assert_eq!(last.at, Timestamp(3_500));
    // The next step starts with a fresh attempt count; the job stays leased.
    assert_eq!(
        fixture.value::<i64>("SELECT attempts FROM jobs WHERE kind = 'fulfil'", []),
        0
    );
    assert!(claim(&fixture, FULFILMENT_JOB, "g", 4_000).is_empty());

    // The last step deletes the job.
    let done = SagaProgress {
        state: r#"{"phase":"confirmed"}"#,
        event: EventKind::Confirmed,
        event_outcome: None,
        ..progress(&job, OrderStatus::Confirmed, true)
    };
    fixture
        .ledger
        .record_saga_progress("f", Timestamp(4_000), &done)
        .unwrap();
    assert_eq!(status(&fixture, "a"), OrderStatus::Confirmed);
    assert_eq!(fulfilment_jobs(&fixture, "a"), 0);
    assert_eq!(
        kinds(&fixture, "a").last(),
        Some(&EventKind::Confirmed),
        "{:?}",
        kinds(&fixture, "a")
    );
}

#[test]
fn a_lease_is_renewed_only_by_its_holder() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["a"]);
    let job = claim(&fixture, FULFILMENT_JOB, "f", 3_000).remove(0);
    assert!(
        fixture
            .ledger
            .renew_lease("f", job.job_id, Timestamp(90_000))
            .unwrap()
    );
    assert!(
        !fixture
            .ledger
            .renew_lease("g", job.job_id, Timestamp(99_000))
            .unwrap()
    );
    assert_eq!(
        fixture.value::<i64>("SELECT lease_until FROM jobs WHERE kind = 'fulfil'", []),
        90_000
    );
}

#[test]
fn an_order_still_being_validated_is_cancelled_at_once() {
    let fixture = Fixture::new();
    fixture.accept("p", 1_000);
    let outcome = fixture
        .ledger
        .request_cancel(&id("p"), Timestamp(1_500), "changed my mind")
        .unwrap();
    assert_eq!(outcome, CancelOutcome::Cancelled);
    let view = fixture.ledger.order(&id("p")).unwrap().unwrap();
    assert_eq!(view.order.status, OrderStatus::Cancelled);
    assert_eq!(view.order.reason.as_deref(), Some("cancelled_by_customer"));
    assert_eq!(view.job, None);
    assert_eq!(
        kinds(&fixture, "p"),
        [EventKind::Accepted, EventKind::Cancelled]
    );
    // Asking again is answered the same and records nothing more.
    assert_eq!(
        fixture
            .ledger
            .request_cancel(&id("p"), Timestamp(1_600), "again")
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(kinds(&fixture, "p").len(), 2);
}

#[test]
fn a_validated_order_has_its_saga_undo_what_it_did() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["v"]);
    fixture.run("UPDATE jobs SET due_at = 50000 WHERE kind = 'fulfil'");
    let outcome = fixture
        .ledger
        .request_cancel(&id("v"), Timestamp(3_000), "wrong size")
        .unwrap();
    assert_eq!(outcome, CancelOutcome::Cancelling);
    // The order keeps its status until the saga's worker acts; the job is due now.
    assert_eq!(status(&fixture, "v"), OrderStatus::Validated);
    assert_eq!(
        fixture.ledger.sagas(&["v"]).unwrap(),
        [StoredSaga {
            order_id: "v".into(),
            state: None,
            cancel_requested: Some("wrong size".into()),
        }]
    );
    assert_eq!(claim(&fixture, FULFILMENT_JOB, "f", 3_000).len(), 1);
    // The first note wins; a second request is answered the same.
    assert_eq!(
        fixture
            .ledger
            .request_cancel(&id("v"), Timestamp(3_100), "other")
            .unwrap(),
        CancelOutcome::Cancelling
    );
    assert_eq!(
        fixture.ledger.sagas(&["v"]).unwrap()[0]
            .cancel_requested
            .as_deref(),
        Some("wrong size")
    );
    let requested = kinds(&fixture, "v")
        .into_iter()
        .filter(|kind| *kind == EventKind::CancelRequested)
        .count();
    assert_eq!(requested, 1);
}

#[test]
fn a_dead_lettered_saga_can_be_replayed_until_its_order_is_final() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["d", "f"]);
    let jobs = claim(&fixture, FULFILMENT_JOB, "f", 3_000);
    assert_eq!(jobs.len(), 2);
    let results: Vec<JobResult> = jobs
        .iter()
        .map(|job| {
            let next = NextStep::DeadLetter {
                reason: "stuck".into(),
            };
            first_attempt(job, "unexpected answer", next)
        })
        .collect();
    fixture
        .ledger
        .apply("f", Timestamp(3_100), &results)
        .unwrap();
    let letters = fixture.ledger.dead_letters(false, 10).unwrap();
    let letter = |order: &str| {
        letters
            .iter()
            .find(|letter| letter.order_id.as_deref() == Some(order))
            .unwrap()
            .id
    };
    // A validated order's saga goes back to the queue ...
    assert_eq!(
        fixture
            .ledger
            .replay(letter("d"), Timestamp(4_000))
            .unwrap(),
        ReplayOutcome::Job {
            order_id: "d".into()
        }
    );
    assert_eq!(claim(&fixture, FULFILMENT_JOB, "f", 4_000).len(), 1);
    // ... one whose order was settled meanwhile does not.
    fixture.run("UPDATE orders SET status = 'cancelled' WHERE id = 'f'");
    assert_eq!(
        fixture
            .ledger
            .replay(letter("f"), Timestamp(4_000))
            .unwrap(),
        ReplayOutcome::OrderSettled {
            order_id: "f".into()
        }
    );
}

#[test]
fn shipped_and_finished_orders_cannot_be_cancelled() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["s"]);
    fixture.run("UPDATE orders SET status = 'shipped' WHERE id = 's'");
    assert_eq!(
        fixture
            .ledger
            .request_cancel(&id("s"), Timestamp(3_000), "x")
            .unwrap(),
        CancelOutcome::Refused(OrderStatus::Shipped)
    );
    assert_eq!(fixture.ledger.sagas(&["s"]).unwrap(), []);
    decide(&fixture, OrderStatus::Rejected, &["r"]);
    assert_eq!(
        fixture
            .ledger
            .request_cancel(&id("r"), Timestamp(3_000), "x")
            .unwrap(),
        CancelOutcome::Refused(OrderStatus::Rejected)
    );
    assert_eq!(
        fixture
            .ledger
            .request_cancel(&id("nope"), Timestamp(3_000), "x")
            .unwrap(),
        CancelOutcome::NotFound
    );
}

#[test]
fn a_decision_arriving_after_a_cancellation_changes_nothing() {
    let fixture = Fixture::new();
    fixture.accept("c", 1_000);
    let job = claim(&fixture, VALIDATION_JOB, "v", 1_200).remove(0);
    fixture
        .ledger
        .request_cancel(&id("c"), Timestamp(1_500), "no")
        .unwrap();
    let applied = fixture
        .ledger
        .apply(
            "v",
            Timestamp(2_000),
            &[first_attempt(
                &job,
                "valid",
                NextStep::Decide {
                    status: OrderStatus::Validated,
                    reason: None,
                    detail: None,
                },
            )],
        )
        .unwrap();
    assert_eq!(applied.duplicates, 1);
    assert_eq!(status(&fixture, "c"), OrderStatus::Cancelled);
    assert_eq!(fulfilment_jobs(&fixture, "c"), 0);
}

#[test]
fn a_version_1_database_upgrades_on_its_first_decision() {
    let fixture = Fixture::new();
    for statement in crate::schema::VERSION_1 {
        fixture.run(statement);
    }
    fixture.run("INSERT INTO ledger_schema (version) VALUES (1)");
    decide(&fixture, OrderStatus::Validated, &["u"]);
    assert_eq!(fulfilment_jobs(&fixture, "u"), 1);
    assert_eq!(
        fixture.value::<i64>("SELECT max(version) FROM ledger_schema", []),
        crate::schema::SCHEMA_VERSION
    );
}

/// The ids in `final_orders` after `after`, in outbox order, with their status.
fn final_after(fixture: &Fixture, after: u64) -> Vec<(String, OrderStatus)> {
    fixture
        .ledger
        .final_orders(after, 10)
        .unwrap()
        .into_iter()
        .map(|found| (found.order.id.as_str().to_owned(), found.order.status))
        .collect()
}

#[test]
fn the_statements_that_finalise_orders_enter_them_in_the_outbox_once() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["done", "undone"]);
    fixture.accept("early", 2_500);
    let jobs = claim(&fixture, FULFILMENT_JOB, "f", 3_000);
    let step = |job: &ClaimedJob, status: OrderStatus, finished: bool, now: u64| {
        fixture
            .ledger
            .record_saga_progress("f", Timestamp(now), &progress(job, status, finished))
            .unwrap();
    };
    step(&jobs[0], OrderStatus::Reserved, false, 3_100);
    assert_eq!(final_after(&fixture, 0), []);
    // A customer's cancellation of an order still being validated finalises it at once.
    fixture
        .ledger
        .request_cancel(&id("early"), Timestamp(3_200), "changed my mind")
        .unwrap();
    step(&jobs[1], OrderStatus::Cancelled, true, 3_300);
    // The saga's last step: the job goes, so a repeat by the same worker changes nothing; a
    // finished order written again (as a replayed step would) is not entered twice.
    step(&jobs[0], OrderStatus::Confirmed, false, 3_400);
    step(&jobs[0], OrderStatus::Confirmed, true, 3_500);
    let expected = [
        ("early".to_owned(), OrderStatus::Cancelled),
        ("undone".to_owned(), OrderStatus::Cancelled),
        ("done".to_owned(), OrderStatus::Confirmed),
    ];
    assert_eq!(final_after(&fixture, 0), expected);
    let found = fixture.ledger.final_orders(0, 10).unwrap();
    assert_eq!(found[0].at, Timestamp(3_200));
    assert_eq!(found[2].at, Timestamp(3_400));
    assert_eq!(
        found[0].order.detail.as_deref(),
        Some("changed my mind"),
        "the order comes whole"
    );
    // A cursor reads what came after it, a page at a time.
    assert_eq!(final_after(&fixture, found[0].seq), expected[1..]);
    assert_eq!(
        fixture.ledger.final_orders(found[0].seq, 1).unwrap().len(),
        1
    );
    // A reset empties the outbox, and later orders come after every cursor handed out.
    fixture.ledger.clear_all().unwrap();
    assert_eq!(final_after(&fixture, 0), []);
    fixture.accept("later", 4_000);
    fixture
        .ledger
        .request_cancel(&id("later"), Timestamp(4_100), "no")
        .unwrap();
    assert_eq!(
        final_after(&fixture, found[2].seq),
        [("later".to_owned(), OrderStatus::Cancelled)]
    );
}

#[test]
fn orders_final_before_the_outbox_existed_are_entered_by_its_migration() {
    let fixture = Fixture::new();
    for statement in crate::schema::VERSION_1
        .iter()
        .chain(crate::schema::VERSION_2)
    {
        fixture.run(statement);
    }
    fixture.run(
        "INSERT INTO ledger_schema (version) VALUES (1), (2);
        INSERT INTO orders (id, items, status, created_at, updated_at) VALUES
            ('old-done', '[{\"product\":\"Medicine A\",\"quantity\":1}]', 'confirmed', 1, 30),
            ('old-gone', '[{\"product\":\"Medicine A\",\"quantity\":1}]', 'cancelled', 2, 20),
            ('old-open', '[{\"product\":\"Medicine A\",\"quantity\":1}]', 'paid', 3, 10);",
    );
    assert_eq!(
        final_after(&fixture, 0),
        [
            ("old-gone".to_owned(), OrderStatus::Cancelled),
            ("old-done".to_owned(), OrderStatus::Confirmed),
        ]
    );
}

#[test]
fn an_order_s_own_job_is_claimed_only_while_no_lease_holds_it() {
    let fixture = Fixture::new();
    fixture.accept("mine", 1_000);
    fixture.accept("other", 1_000);
    let claim_mine = |worker: &str, now: u64| {
        fixture
            .ledger
            .claim_order(
                VALIDATION_JOB,
                &id("mine"),
                worker,
                Timestamp(now),
                Timestamp(now + 5_000),
            )
            .unwrap()
    };
    let job = claim_mine("sync", 1_000).expect("the order's job is free");
    assert_eq!(job.order_id, "mine");
    assert!(job.order.is_some());
    // Held: neither another claim of the order nor a worker's batch takes it; the other
    // order's job is still there for the workers.
    assert_eq!(claim_mine("late", 2_000), None);
    let batch = claim(&fixture, VALIDATION_JOB, "v", 2_000);
    assert_eq!(
        batch
            .iter()
            .map(|job| job.order_id.as_str())
            .collect::<Vec<_>>(),
        ["other"]
    );
    // Once the lease passes it can be claimed again, naming the holder that let it lapse.
    let again = claim_mine("late", 6_001).expect("the lease expired");
    assert_eq!(again.previous_owner.as_deref(), Some("sync"));
    // No fulfilment job exists for an order still being validated.
    let none = fixture
        .ledger
        .claim_order(
            FULFILMENT_JOB,
            &id("mine"),
            "sync",
            Timestamp(7_000),
            Timestamp(8_000),
        )
        .unwrap();
    assert_eq!(none, None);
}

#[test]
fn the_sync_path_holds_its_order_s_jobs_from_the_moment_they_exist() {
    let fixture = Fixture::new();
    let order = super::order("mine", 1_000);
    let mut intake = super::intake(&order, "key-mine");
    intake.hold = Some(crate::JobHold {
        worker: "sync",
        until: Timestamp(6_000),
    });
    assert_eq!(
        fixture.ledger.accept(&intake).unwrap(),
        crate::IntakeOutcome::Created
    );
    fixture.accept("other", 1_000);
    // Due at once, yet no worker's batch takes the held job; its holder claims it again.
    let batch = claim(&fixture, VALIDATION_JOB, "v", 1_000);
    let claimed: Vec<&str> = batch.iter().map(|job| job.order_id.as_str()).collect();
    assert_eq!(claimed, ["other"]);
    let claim_mine = |kind: &str, worker: &str, now: u64| {
        fixture
            .ledger
            .claim_order(
                kind,
                &id("mine"),
                worker,
                Timestamp(now),
                Timestamp(now + 5_000),
            )
            .unwrap()
    };
    assert_eq!(claim_mine(VALIDATION_JOB, "late", 2_000), None);
    let job = claim_mine(VALIDATION_JOB, "sync", 2_000).expect("its holder claims it");
    assert_eq!(job.previous_owner, None, "not taken over from anyone");

    // Validated with the follow-up held: the fulfilment job exists, but only its holder
    // gets it until the hold passes.
    let decision = NextStep::Decide {
        status: OrderStatus::Validated,
        reason: None,
        detail: None,
    };
    let result = first_attempt(&job, "valid", decision);
    fixture
        .ledger
        .apply_holding_follow_up("sync", Timestamp(2_100), &[result], Timestamp(9_000))
        .unwrap();
    assert!(claim(&fixture, FULFILMENT_JOB, "f", 2_200).is_empty());
    assert_eq!(claim_mine(FULFILMENT_JOB, "late", 2_200), None);
    assert!(claim_mine(FULFILMENT_JOB, "sync", 2_200).is_some());
    // A hold that passes lets the workers in, as any expired lease does.
    let taken = claim(&fixture, FULFILMENT_JOB, "f", 7_201);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].previous_owner.as_deref(), Some("sync"));
}

#[test]
fn a_follow_up_queued_without_a_hold_is_free_for_any_worker() {
    let fixture = Fixture::new();
    decide(&fixture, OrderStatus::Validated, &["free"]);
    let taken = claim(&fixture, FULFILMENT_JOB, "f", 2_000);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].previous_owner, None);
}
